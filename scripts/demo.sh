#!/usr/bin/env bash
# The demo: train on the bundled dataset (data/demo), predict its held-back rows, print accuracy.
# Extra arguments go to `multimodal demo` (e.g. --quality very_light --minutes 5).
# Real ResNet50 ImageNet weights cannot be downloaded here, so the demo asks for random ones explicitly
# unless MULTIMODAL_IMAGE_WEIGHTS says otherwise.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup-venv.sh"
cd "$root"
export MULTIMODAL_IMAGE_WEIGHTS="${MULTIMODAL_IMAGE_WEIGHTS:-random}" HF_HUB_OFFLINE=1
exec "$root/.venv/bin/multimodal" demo "$@"
