"""``serve``: gunicorn (threaded workers) serving the Flask app on 0.0.0.0:$SAGEMAKER_BIND_TO_PORT.

The master process stays light (no torch, TensorFlow or AutoGluon); each worker loads the model once,
in the background, right after it starts. The master checks the model directory before forking, so
a missing or foreign model fails at once instead of answering /ping and failing later.
"""
from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import time
from pathlib import Path

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from multimodal.classifier.model_config import ModelConfig
from multimodal.sagemaker.paths import SageMakerPaths
from multimodal.sagemaker.serving.settings import ServerSettings

logger = logging.getLogger(__name__)


class _GunicornApplication(BaseApplication):
    def __init__(self, options: dict, factory):
        self._options = options
        self._factory = factory
        super().__init__()

    def load_config(self):
        for name, value in self._options.items():
            self.cfg.set(name, value)

    def load(self):
        return self._factory()


def load_model(directory: Path):
    """The fitted model in ``directory`` (image weights and precision: $MULTIMODAL_IMAGE_WEIGHTS and
    $MULTIMODAL_IMAGE_PRECISION when set, else as recorded at training), warmed up before it is said ready."""
    from multimodal.classifier.estimator import MultimodalClassifier
    from multimodal.classifier.gpu import report_this_machine
    from multimodal.sagemaker import environment

    report_this_machine()
    model = MultimodalClassifier.load(directory, image_weights=environment.image_weights(),
                                      image_precision=environment.image_precision())
    started = time.monotonic()
    try:
        model.warm_up()
        logger.info("model in %s warmed up in %.1f s (two made-up rows)", directory, time.monotonic() - started)
    except Exception as error:  # noqa: BLE001 - made-up rows, not the caller's: serving goes on without warm-up
        logger.warning("model in %s: the warm-up prediction failed (%s: %s); the first request pays the set-up",
                       directory, type(error).__name__, error, exc_info=True)
    return model


def _stop_serving(error: BaseException) -> None:
    """A worker that cannot load the model ends with gunicorn's boot-error code: the master then stops
    and ``serve`` exits non-zero, instead of answering /ping with errors forever."""
    logger.error("stopping serve: the model cannot be loaded (%s: %s)", type(error).__name__, error)
    logging.shutdown()
    os._exit(Arbiter.WORKER_BOOT_ERROR)


def build_app(paths: SageMakerPaths, settings: ServerSettings):
    """The Flask app for one worker: the model of the model directory, loading in the background; on a
    multi-model endpoint, the models SageMaker loads through /models."""
    from multimodal.sagemaker.serving.app import ModelHolder, create_app, create_multi_model_app
    from multimodal.sagemaker.serving.registry import ModelRegistry

    if settings.multi_model:
        return create_multi_model_app(ModelRegistry(load_model), settings)
    return create_app(ModelHolder(lambda: load_model(paths.model_dir), on_failure=_stop_serving), settings)


_M_ARENA_MAX = -8       # glibc's mallopt parameter (malloc.h)
MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> str:
    """Cap glibc's malloc arenas for this process and the workers it forks; returns what is in effect.

    glibc gives threads that allocate at the same time their own heaps (up to 8 per core): under
    concurrent requests a worker's RSS grew by 5-13 % a minute (2.0 -> 2.3 GB) and stayed there; with 2
    arenas it stays flat and 360 MB lower at the same throughput. $MALLOC_ARENA_MAX, when set, wins.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return f"MALLOC_ARENA_MAX={os.environ['MALLOC_ARENA_MAX']} (from the environment)"
    try:
        applied = ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, arenas) == 1
    except (OSError, AttributeError):
        applied = False
    return f"{arenas} malloc arenas" if applied else "malloc arenas unchanged (not glibc)"


def run_server(paths: SageMakerPaths, settings: ServerSettings) -> None:
    """Check the model directory, then run gunicorn until SIGTERM (graceful stop within the grace period)."""
    arenas = limit_malloc_arenas()
    if settings.multi_model:
        if settings.workers > 1:
            logger.warning("serve: a multi-model endpoint runs 1 worker (the loaded models live in it); "
                           "MODEL_SERVER_WORKERS=%d is ignored", settings.workers)
            settings = dataclasses.replace(settings, workers=1)
        where = "multi-model endpoint (SAGEMAKER_MULTI_MODEL=true): models load through POST /models"
    else:
        config = ModelConfig.read(paths.model_dir)
        where = f"model in {paths.model_dir} ({len(config.classes)} classes, columns {config.schema['columns']})"
    logger.info("serve: %s; %d worker(s) x %d threads on port %d, timeout %d s, MaxPayloadInMB %d, %s", where,
                settings.workers, settings.threads, settings.port, settings.timeout, settings.max_payload_mb, arenas)
    options = {
        "bind": f"0.0.0.0:{settings.port}",
        "workers": settings.workers,
        "worker_class": "gthread",
        "threads": settings.threads,
        "timeout": settings.timeout,
        "graceful_timeout": settings.graceful_timeout,
        "keepalive": 5,
        "preload_app": False,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "multimodal-serve",
    }
    _GunicornApplication(options, lambda: build_app(paths, settings)).run()
