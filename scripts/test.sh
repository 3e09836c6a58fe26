#!/usr/bin/env bash
# The test suite (real AutoGluon, TensorFlow, torch on small data). Extra arguments go to pytest,
# e.g. `scripts/test.sh -m slow` for the long tests.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup-venv.sh"
cd "$root"
export HF_HUB_OFFLINE=1
exec "$root/.venv/bin/python" -m pytest "$@"
