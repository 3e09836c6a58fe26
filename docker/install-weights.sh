#!/usr/bin/env sh
# Bakes ResNet50 weights into the image at build time (jobs run with network isolation).
#   IMAGE_WEIGHTS=imagenet  torchvision's ImageNet file (resnet50-11ad3fa6.pth) into $TORCH_HOME: downloaded,
#                           or copied from docker/weights/ when placed there; torchvision checks its sha256.
#   IMAGE_WEIGHTS=random    a TEST image: seeded random weights, said loudly in the build log.
# A build that cannot get the ImageNet weights fails.
set -eu
case "$IMAGE_WEIGHTS" in
  random)
    echo "WARNING: building a TEST image with RANDOM ResNet50 weights (IMAGE_WEIGHTS=random); not for real use" ;;
  imagenet)
    checkpoints="$TORCH_HOME/hub/checkpoints"
    mkdir -p "$checkpoints"
    if [ -f /opt/program/docker/weights/resnet50-11ad3fa6.pth ]; then
      mv /opt/program/docker/weights/resnet50-11ad3fa6.pth "$checkpoints/"
    fi
    python -c "from multimodal.classifier.images import build_backbone; print('baked ResNet50 weights:', build_backbone('imagenet')[1])" ;;
  *)
    echo "IMAGE_WEIGHTS must be imagenet or random; got '$IMAGE_WEIGHTS'" >&2; exit 2 ;;
esac
