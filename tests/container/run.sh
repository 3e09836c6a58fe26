#!/usr/bin/env bash
# Builds both images (local base image, random-weights test build), runs a training job in the training
# image with `multimodal local-train --image` on a small dataset, then a Line-split batch transform through
# `serve` in the inference image with `multimodal local-transform --image` on the packed model.tar.gz,
# checks the two targets, one output line per input line, prints how long the SIGTERM stop took, and removes
# the images.
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
  docker rmi -f "multimodal-training:$tag" "multimodal-inference:$tag" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

command -v podman > /dev/null || { echo "needs podman: run $tools/install-podman.sh first" >&2; exit 1; }
mkdir -p /var/lib/containers
free_gb=$(df -Pk /var/lib/containers | awk 'NR==2 {print int($4 / 1048576)}')
if [ "${free_gb:-0}" -lt 30 ]; then echo "need 30 GB free for two image builds; ${free_gb:-?} GB free" >&2; exit 1; fi
"$tools/local-base-image.sh"
# --layers=false: podman's vfs driver here copies the whole filesystem for every layer it keeps.
args=(--layers=false --build-arg BASE_IMAGE=localhost/python-base:3.11 --build-arg IMAGE_WEIGHTS=random)
t0=$(date +%s)
docker build -f docker/Dockerfile --target training "${args[@]}" -t "multimodal-training:$tag" . > "$work/build-train.log" 2>&1 \
  || { tail -30 "$work/build-train.log"; exit 1; }
t1=$(date +%s)
docker build -f docker/Dockerfile --target inference "${args[@]}" -t "multimodal-inference:$tag" . > "$work/build-serve.log" 2>&1 \
  || { tail -30 "$work/build-serve.log"; exit 1; }
t2=$(date +%s)
echo "built training image in $((t1 - t0)) s, inference image in $((t2 - t1)) s"
docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep ":$tag"
# The two targets of the one Dockerfile: the training image runs `train`, the inference image `serve` and
# carries SageMaker's bind-to-port label; neither carries the sagemaker-training toolkit or a compiler.
cmd_train=$(docker image inspect --format '{{json .Config.Cmd}}' "multimodal-training:$tag")
cmd_serve=$(docker image inspect --format '{{json .Config.Cmd}}' "multimodal-inference:$tag")
label=$(docker image inspect --format '{{index .Config.Labels "com.amazonaws.sagemaker.capabilities.accept-bind-to-port"}}' \
  "multimodal-inference:$tag")
[ "$cmd_train" = '["train"]' ] && [ "$cmd_serve" = '["serve"]' ] && [ "$label" = true ] \
  || { echo "image targets: training CMD $cmd_train, inference CMD $cmd_serve, bind-to-port label '$label'"; exit 1; }
docker run --rm "multimodal-training:$tag" sh -c '! command -v gcc && ! python -c "import sagemaker_training"' \
  > /dev/null 2>&1 || { echo "the image has gcc or sagemaker_training"; exit 1; }
echo "targets: training CMD $cmd_train, inference CMD $cmd_serve with the bind-to-port label; no gcc, no toolkit"

# The training job in the training image, as `multimodal local-train --image` runs it (a /opt/ml tree
# mounted at /opt/ml, `docker run IMAGE train`, then model.tar.gz and output.tar.gz packed).
export MULTIMODAL_DOCKER=docker
head -n 91 data/demo/train.csv > "$work/train.csv"
"$root/.venv/bin/multimodal" local-train --train "$work/train.csv" --image "multimodal-training:$tag" \
  --hp quality=toy --hp n_mins=2 --hp num_folds=2 --hp n_epochs=30 --output "$work/job" > "$work/train.log" 2>&1 \
  || { tail -30 "$work/train.log"; exit 1; }
tar -tzf "$work/job/model.tar.gz" > "$work/model-members.txt"   # not piped into grep -q: SIGPIPE under pipefail
grep -qx "model_config.json" "$work/model-members.txt" || { echo "model.tar.gz lacks model_config.json"; exit 1; }
t3=$(date +%s)
echo "local-train in the training image: $((t3 - t2)) s"

# A Line-split batch transform through `serve` in the inference image (`multimodal local-transform --image`).
mkdir -p "$work/in"
python3 - "$work/in/batch.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open("data/demo/test.csv")))[1:31]
csv.writer(open(sys.argv[1], "w"), lineterminator="\n").writerows(r[:-1] for r in rows)
PY
"$root/.venv/bin/multimodal" local-transform --model "$work/job/model.tar.gz" --input "$work/in" \
  --output "$work/out" --image "multimodal-inference:$tag" > "$work/transform.log" 2>&1 \
  || { tail -30 "$work/transform.log"; exit 1; }
grep -E "answered /ping|stopped" "$work/transform.log" | sed 's/^.*INFO [a-z.]*: //'
lines=$(wc -l < "$work/out/batch.csv.out")
[ "$lines" -eq 30 ] || { echo "30 lines in, $lines out"; exit 1; }
echo "local-transform through the inference image: 30 lines in, $lines out, in $(( $(date +%s) - t3 )) s"
echo "container test passed in $(( $(date +%s) - started )) s"
