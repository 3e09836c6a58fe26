"""The models of a multi-model endpoint (``SAGEMAKER_MULTI_MODEL=true``), by the ``model_name`` SageMaker gives.

SageMaker loads a model (``POST /models``) before its first request, unloads it (``DELETE``) under memory
pressure, and asks which are loaded (``GET``); it never assumes a model stays. Each loaded model has its own
batcher (its predictions run one batch at a time, beside other models'); models trained with the same image
weights share one ResNet50 (``ImageEmbedder.shared``), so each model after the first costs about its members.
Before loading, the model's memory is estimated from its size on disk; when that would leave less than
``MEMORY_RESERVE_BYTES`` free, the load is refused with 507 so that SageMaker unloads another model first.
"""
from __future__ import annotations

import ctypes
import gc
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil

from multimodal.classifier.tabular import directory_bytes
from multimodal.errors import MultimodalError, PlatformError, UserError
from multimodal.sagemaker.serving.batching import PredictionBatcher, model_batcher

logger = logging.getLogger(__name__)

# A loaded model's resident memory per byte of its directory on disk, estimated high on purpose: AutoGluon's
# pickled models unpickle to about their size; bench/endpoint.py --multi-model measured 3-5 MB more per model
# of 10-19 MB beside a first one (the first pays for the libraries and the ResNet50).
MEMORY_PER_DISK_BYTE = 2.0
MEMORY_RESERVE_BYTES = 512 * 1024 * 1024   # left free for requests in flight
PAGE_SIZE = 100


class ModelAlreadyLoaded(UserError):
    """POST /models for a model_name that is loaded (or loading)."""


class ModelNotLoaded(UserError):
    """A model_name that is not loaded."""


class BadModelRequest(UserError):
    """A load request without a usable model_name and url, or whose url is not a model of this algorithm."""


class ModelLoadError(PlatformError):
    """A model directory of this algorithm that fails to load (a damaged file, a missing library)."""


class InsufficientMemory(PlatformError):
    """Loading the model would leave too little memory; SageMaker answers it by unloading another model."""


@dataclass
class LoadedModel:
    """One loaded model: its name and directory, the model, its batcher, how long it took to load."""

    name: str
    url: str
    model: object
    batcher: PredictionBatcher
    load_seconds: float

    def description(self) -> dict:
        """The model's entry in GET /models and GET /models/<name> (the contract's two keys)."""
        return {"modelName": self.name, "modelUrl": self.url}


def available_memory() -> int:
    """Bytes this process may still use: the container's cgroup limit less its use where one is set (a
    container sees the host's memory in /proc/meminfo), else what the machine has available."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            return min(int(limit) - used, psutil.virtual_memory().available)
    except (OSError, ValueError):
        pass
    return psutil.virtual_memory().available


def release_freed_memory() -> None:
    """Hand memory that Python freed back to the system (glibc keeps freed heap pages otherwise), so that the
    next load's memory check sees it."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class ModelRegistry:
    """Load, find, list and unload models by name; ``loader(directory)`` returns a ready model (warmed up)."""

    def __init__(self, loader: Callable[[Path], object], available_bytes: Callable[[], int] | None = None):
        self._loader = loader
        self._available_bytes = available_bytes or available_memory
        self._lock = threading.Lock()
        self._models: dict[str, LoadedModel] = {}
        self._loading: set[str] = set()
        self._reserved = 0   # the estimated bytes of the loads in flight

    def load(self, name, url) -> LoadedModel:
        """Load the model in directory ``url`` as ``name``; ``ModelAlreadyLoaded`` (409), ``InsufficientMemory``
        (507), ``BadModelRequest`` (400) for a name, url or directory that cannot be one."""
        if not isinstance(name, str) or not name.strip() or "/" in name:
            raise BadModelRequest(f"model_name must be a non-empty string without '/'; got {name!r}.")
        if not isinstance(url, str) or not url:
            raise BadModelRequest(f"url must be the path of the model's directory; got {url!r}.")
        directory = Path(url)
        if not (directory / "model_config.json").is_file():
            raise BadModelRequest(f"{url}: no model_config.json; url must be the directory that model.tar.gz "
                                  "(a model trained by this algorithm) was extracted to.")
        needed = int(MEMORY_PER_DISK_BYTE * directory_bytes(directory))
        with self._lock:
            if name in self._models or name in self._loading:
                raise ModelAlreadyLoaded(f"model {name!r} is already loaded.")
            # Loads in flight count against the memory too: two at once must not both fit the same free space.
            available = self._available_bytes() - self._reserved
            if needed > available - MEMORY_RESERVE_BYTES:
                raise InsufficientMemory(f"model {name!r} needs about {needed / 1e6:.0f} MB and {available / 1e6:.0f} "
                                         f"MB are available ({MEMORY_RESERVE_BYTES / 2**20:.0f} MB are kept free); "
                                         "unload a model first.")
            self._loading.add(name)
            self._reserved += needed
        try:
            started = time.monotonic()
            try:
                model = self._loader(directory)
            except MemoryError as error:
                raise InsufficientMemory(f"model {name!r} ran out of memory while loading.", caused_by=error) from None
            except MultimodalError as error:
                if isinstance(error, InsufficientMemory):
                    raise
                raise BadModelRequest(f"{url}: the model cannot be loaded: {error}") from error
            except Exception as error:  # noqa: BLE001 - a damaged file, a library's own error: this load fails
                raise ModelLoadError(f"{url}: the model cannot be loaded ({type(error).__name__}: "
                                     f"{str(error)[:300]})") from error
            loaded = LoadedModel(name, url, model, model_batcher(model), time.monotonic() - started)
            with self._lock:
                embedder = _embedder(model)
                sharing = sum(1 for other in self._models.values() if embedder is not None
                              and _embedder(other.model) is embedder)
                self._models[name] = loaded
                count = len(self._models)
            shared = f"; shares its ResNet50 with {sharing} loaded model(s)" if sharing else ""
            logger.info("model %r loaded from %s in %.1f s (%d loaded)%s", name, url, loaded.load_seconds, count,
                        shared)
            return loaded
        finally:
            with self._lock:
                self._loading.discard(name)
                self._reserved -= needed

    def get(self, name: str) -> LoadedModel:
        """The loaded model ``name``; ``ModelNotLoaded`` (404) otherwise."""
        with self._lock:
            loaded = self._models.get(name)
        if loaded is None:
            raise ModelNotLoaded(f"model {name!r} is not loaded; load it with POST /models.")
        return loaded

    def unload(self, name: str) -> None:
        """Forget model ``name`` and free its memory before returning; ``ModelNotLoaded`` (404) otherwise."""
        with self._lock:
            loaded = self._models.pop(name, None)
        if loaded is None:
            raise ModelNotLoaded(f"model {name!r} is not loaded.")
        del loaded
        gc.collect()
        release_freed_memory()
        logger.info("model %r unloaded (%d loaded)", name, len(self._models))

    def page(self, token: str | None, limit: int = PAGE_SIZE) -> tuple[list[LoadedModel], str | None]:
        """One page of the loaded models in name order from ``token`` (None: the first page), and the token of
        the next page (None after the last)."""
        try:
            start = int(token) if token not in (None, "") else 0
        except ValueError:
            raise BadModelRequest(f"next_page_token {token!r} is not a token this server gave.") from None
        if start < 0:
            raise BadModelRequest(f"next_page_token {token!r} is not a token this server gave.")
        with self._lock:
            models = [self._models[name] for name in sorted(self._models)]
        chunk = models[start:start + limit]
        return chunk, (str(start + limit) if start + limit < len(models) else None)


def _embedder(model):
    """The image embedder a loaded model uses (None without image columns)."""
    learner = getattr(model, "learner_", None)
    return getattr(learner, "embedder", None)
