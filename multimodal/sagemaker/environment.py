"""The environment variables of the images that choose how the classifier runs (not what it learns): read
here, by the entrypoints' side, and passed to the classifier as values. The Dockerfile sets
``MULTIMODAL_IMAGE_WEIGHTS`` to the weights it baked in; an operator may set either on a job or a model."""
from __future__ import annotations

import os
from typing import Mapping

IMAGE_WEIGHTS_ENV = "MULTIMODAL_IMAGE_WEIGHTS"      # imagenet (default), random, or a weights file path
IMAGE_PRECISION_ENV = "MULTIMODAL_IMAGE_PRECISION"  # auto (default), bf16 or fp32


def image_weights(environ: Mapping[str, str] | None = None) -> str | None:
    """``$MULTIMODAL_IMAGE_WEIGHTS`` when set and not empty, else None (the classifier's own default)."""
    return _value(IMAGE_WEIGHTS_ENV, environ)


def image_precision(environ: Mapping[str, str] | None = None) -> str | None:
    """``$MULTIMODAL_IMAGE_PRECISION`` when set and not empty, else None (the classifier's own default)."""
    return _value(IMAGE_PRECISION_ENV, environ)


def _value(name: str, environ: Mapping[str, str] | None) -> str | None:
    value = (os.environ if environ is None else environ).get(name, "").strip()
    return value or None
