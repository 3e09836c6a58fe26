#!/usr/bin/env bash
# Builds both images (local base image, random-weights test build), runs `train` in the training image
# against a mounted /opt/ml tree with a small dataset, then `serve` in the inference image on that model,
# drives a small Line-split batch through it (the project's batch-transform driver, aimed at the
# container), checks one output line per input line, and removes the images.
# Needs podman (../shared/tools/install-podman.sh); takes a while: the images are several GB.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tools="${TOOLS:-$root/../shared/tools}"
export PATH="$tools:$PATH"
cd "$root"
tag="container-test-$$"
work="$(mktemp -d)"
started=$(date +%s)
cleanup() {
  docker rm -f "mm-serve-$tag" >/dev/null 2>&1 || true
  docker rmi -f "multimodal-training:$tag" "multimodal-inference:$tag" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

free_gb=$(df -Pk /var/lib/containers 2>/dev/null | awk 'NR==2 {print int($4 / 1048576)}')
if [ "${free_gb:-0}" -lt 30 ]; then echo "need 30 GB free for two image builds; ${free_gb:-?} GB free" >&2; exit 1; fi
"$tools/local-base-image.sh"
# --layers=false: podman's vfs driver here copies the whole filesystem for every layer it keeps.
args=(--layers=false --build-arg BASE_IMAGE=localhost/python-base:3.11 --build-arg IMAGE_WEIGHTS=random)
t0=$(date +%s)
docker build -f docker/Dockerfile.train "${args[@]}" -t "multimodal-training:$tag" . > "$work/build-train.log" 2>&1 \
  || { tail -30 "$work/build-train.log"; exit 1; }
t1=$(date +%s)
docker build -f docker/Dockerfile.serve "${args[@]}" -t "multimodal-inference:$tag" . > "$work/build-serve.log" 2>&1 \
  || { tail -30 "$work/build-serve.log"; exit 1; }
t2=$(date +%s)
echo "built training image in $((t1 - t0)) s, inference image in $((t2 - t1)) s"
docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep ":$tag"

# A SageMaker training tree with a small slice of the demo data.
ml="$work/opt_ml"
mkdir -p "$ml/input/config" "$ml/input/data/train" "$ml/model" "$ml/output"
head -n 91 data/demo/train.csv > "$ml/input/data/train/train.csv"
echo '{"quality": "toy", "n_mins": "2", "num_folds": "2", "n_epochs": "30"}' > "$ml/input/config/hyperparameters.json"
echo '{"train": {"ContentType": "text/csv", "TrainingInputMode": "File"}}' > "$ml/input/config/inputdataconfig.json"
docker run --rm -v "$ml:/opt/ml" "multimodal-training:$tag" train > "$work/train.log" 2>&1 \
  || { tail -30 "$work/train.log"; cat "$ml/output/failure" 2>/dev/null; exit 1; }
test -f "$ml/model/model_config.json" || { echo "no model written"; exit 1; }
t3=$(date +%s)
echo "train in the container: $((t3 - t2)) s"

# serve in the inference image on that model, then a Line-split batch through it.
port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
docker run -d --name "mm-serve-$tag" -p "$port:8080" -v "$ml:/opt/ml" "multimodal-inference:$tag" serve >/dev/null
mkdir -p "$work/in" "$work/out"
python3 - "$work/in/batch.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open("data/demo/test.csv")))[1:31]
csv.writer(open(sys.argv[1], "w"), lineterminator="\n").writerows(r[:-1] for r in rows)
PY
"$root/.venv/bin/python" - "$port" "$work" <<'PY'
import sys
from pathlib import Path
from multimodal.transform import ServerClient, run_transform

server = ServerClient(f"http://127.0.0.1:{sys.argv[1]}")
print(f"serve in the container answered /ping after {server.wait_ready(timeout=300):.1f} s")
work = Path(sys.argv[2])
result = run_transform(server, work / "in", work / "out")
assert not result.failures, result.failures
lines = (work / "out" / "batch.csv.out").read_text().splitlines()
assert len(lines) == 30, len(lines)
print(f"batch transform through the container: 30 lines in, {len(lines)} lines out")
PY
start_stop=$(date +%s%N)
docker stop -t 30 "mm-serve-$tag" >/dev/null
echo "serve container stopped (SIGTERM) in $(( ($(date +%s%N) - start_stop) / 1000000 )) ms"
echo "container test passed in $(( $(date +%s) - started )) s"
