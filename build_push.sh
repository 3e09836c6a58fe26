#!/usr/bin/env bash
# Builds the training and inference images for linux/amd64, pushes them to ECR and prints their URIs;
# optionally registers the SageMaker algorithm.
#
#   build_push.sh [--tag TAG] [--account ID] [--region REGION] [--gpu] [--no-push]
#                 [--create-algorithm NAME] [--dry-run]
#
# --account / --region default to the AWS CLI's identity and configuration (no hard-coded region).
# The standard images use a GPU only where the host mounts an NVIDIA driver R580+ (the pinned torch wheel
#   carries CUDA 13; SageMaker's default GPU drivers are older), so the algorithm lists CPU instance types
#   only. --gpu builds on the CUDA base image named by $BASE_IMAGE_GPU instead (it must provide Python 3.11
#   and CUDA forward-compatibility libraries for the hosts' drivers), tags TAG-gpu, and lists GPU instance
#   types in the algorithm too.
# --create-algorithm NAME writes build/create-algorithm.json (hyperparameters, metrics, tuning objectives,
#   channels, instance types, content types: all from the project's own declarations) and calls
#   `aws sagemaker create-algorithm`.
# --dry-run prints every docker and aws command instead of running it, and still writes the request.
# Extra docker build arguments: BUILD_ARGS="--build-arg IMAGE_WEIGHTS=random" (a test image).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
tag="$(python3 -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")"
account="" region="" gpu=0 push=1 algorithm="" dry=0
BASE_IMAGE_GPU="${BASE_IMAGE_GPU:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag="$2"; shift 2 ;;
    --account) account="$2"; shift 2 ;;
    --region) region="$2"; shift 2 ;;
    --gpu) gpu=1; shift ;;
    --no-push) push=0; shift ;;
    --create-algorithm) algorithm="$2"; shift 2 ;;
    --dry-run) dry=1; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "build_push.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
run() { if [ "$dry" = 1 ]; then printf '+'; printf ' %q' "$@"; printf '\n'; else "$@"; fi; }

if [ -z "$region" ]; then
  region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
  [ -n "$region" ] || region="$(aws configure get region 2>/dev/null || true)"
  [ -n "$region" ] || { [ "$dry" = 1 ] && region="REGION"; } || { echo "no region: pass --region or configure the AWS CLI" >&2; exit 2; }
fi
if [ -z "$account" ]; then
  if [ "$dry" = 1 ]; then account="ACCOUNT"
  else account="$(aws sts get-caller-identity --query Account --output text)"; fi
fi
registry="$account.dkr.ecr.$region.amazonaws.com"
build_args=(${BUILD_ARGS:-})
if [ "$gpu" = 1 ]; then
  # NVIDIA's CUDA images ship Python 3.10 (Ubuntu 22.04) or 3.12 (24.04); the pins need 3.11.
  [ -n "$BASE_IMAGE_GPU" ] || { echo "--gpu: set BASE_IMAGE_GPU to a CUDA base image with Python 3.11" >&2; exit 2; }
  tag="$tag-gpu"; build_args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE_GPU")
fi

uris=()
for target in training inference; do
  name="multimodal-$target"
  uri="$registry/$name:$tag"
  run docker build --platform linux/amd64 -f docker/Dockerfile --target "$target" "${build_args[@]}" \
    -t "$name:$tag" -t "$uri" .
  if [ "$push" = 1 ]; then
    if [ "$dry" = 1 ] || ! aws ecr describe-repositories --region "$region" --repository-names "$name" >/dev/null 2>&1; then
      run aws ecr create-repository --region "$region" --repository-name "$name"
    fi
  fi
  uris+=("$uri")
done
if [ "$push" = 1 ]; then
  if [ "$dry" = 1 ]; then
    echo "+ aws ecr get-login-password --region $region | docker login --username AWS --password-stdin $registry"
  else
    aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry"
  fi
  for uri in "${uris[@]}"; do run docker push "$uri"; done
fi
echo "training image:  ${uris[0]}"
echo "inference image: ${uris[1]}"

if [ -n "$algorithm" ]; then
  python="${PYTHON:-$root/.venv/bin/python}"
  [ -x "$python" ] || python=python3
  "$python" -m multimodal.sagemaker.algorithm_spec --name "$algorithm" --training-image "${uris[0]}" \
    --inference-image "${uris[1]}" --output build/create-algorithm.json $([ "$gpu" = 1 ] && echo --gpu)
  echo "request: build/create-algorithm.json"
  run aws sagemaker create-algorithm --region "$region" --cli-input-json "file://build/create-algorithm.json"
fi
