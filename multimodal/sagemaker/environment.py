"""The environment variables of the images that choose how the classifier runs (not what it learns): read
here, by the entrypoints' side, and passed to the classifier as values. The Dockerfile sets
``MULTIMODAL_IMAGE_WEIGHTS`` to the weights it baked in; an operator may set either on a job or a model."""
from __future__ import annotations

import os
from typing import Mapping

from multimodal.errors import UserError

IMAGE_WEIGHTS_ENV = "MULTIMODAL_IMAGE_WEIGHTS"      # imagenet (default), random, or a weights file path
IMAGE_PRECISION_ENV = "MULTIMODAL_IMAGE_PRECISION"  # auto (default), bf16 or fp32
HOST_WAIT_ENV = "MULTIMODAL_HOST_WAIT_SECONDS"      # how long the hosts of a job wait for each other


def image_weights(environ: Mapping[str, str] | None = None) -> str | None:
    """``$MULTIMODAL_IMAGE_WEIGHTS`` when set and not empty, else None (the classifier's own default)."""
    return _value(IMAGE_WEIGHTS_ENV, environ)


def image_precision(environ: Mapping[str, str] | None = None) -> str | None:
    """``$MULTIMODAL_IMAGE_PRECISION`` when set and not empty, else None (the classifier's own default)."""
    return _value(IMAGE_PRECISION_ENV, environ)


def host_wait_seconds(environ: Mapping[str, str] | None = None) -> float | None:
    """``$MULTIMODAL_HOST_WAIT_SECONDS`` as a positive number of seconds when set, else None (the defaults: a
    worker waits 300 s for the leader, the leader 10 % of the budget, 30-120 s, for the workers)."""
    value = _value(HOST_WAIT_ENV, environ)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < 86400:
        raise UserError(f"{HOST_WAIT_ENV} must be a number of seconds above 0; got {value!r}.")
    return seconds


def _value(name: str, environ: Mapping[str, str] | None) -> str | None:
    value = (os.environ if environ is None else environ).get(name, "").strip()
    return value or None
