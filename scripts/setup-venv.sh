#!/usr/bin/env bash
# Creates the project environment in .venv/ at the repository root when it is missing or out of date,
# installing the project (editable) with every dependency pinned by requirements.lock.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
python="${PYTHON:-$(command -v python3.11 || command -v python3)}"
stamp="$venv/.installed-$(cat "$root/pyproject.toml" "$root/requirements.lock" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setting up $venv (first run: several minutes, about 8 GB)" >&2
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -c "$root/requirements.lock" -e "$root[test]" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
  "$venv/bin/python" -c "import torch, torchvision, tensorflow, autogluon.tabular, flask, gunicorn, multimodal" >/dev/null 2>&1 \
    || { echo "setup failed: the environment in $venv does not import" >&2; exit 1; }
  # Ray installs console scripts named `serve` and `tune`: the project's `serve` must be the one in bin/.
  grep -q "serve_main" "$venv/bin/serve" \
    || "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --force-reinstall -e "$root" >&2
  grep -q "serve_main" "$venv/bin/serve" || { echo "setup failed: $venv/bin/serve is not the project's" >&2; exit 1; }
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi
