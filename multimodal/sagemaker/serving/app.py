"""The Flask app of the inference server: ``/ping``, ``/execution-parameters``, ``/invocations``.

``create_app(loader, settings)`` starts loading the model in a background thread, so ``/ping`` answers
at once (503 until the model is ready, then 200) and keeps answering while ``/invocations`` run.
Status codes follow the error class, mapped in one place (``HTTP_STATUS``): the caller's mistakes 4xx (with
the line and the column), the model still loading 503, the model's or the environment's failures 500.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from multimodal.classifier.schema import ID_COLUMN
from multimodal.errors import MultimodalError, PlatformError, RowsWithoutData, UserError
from multimodal.sagemaker.serving.payloads import (NotAcceptable, PayloadError, PayloadTooLarge,
                                                   UnsupportedContentType, parse_payload)
from multimodal.sagemaker.serving.responses import CUSTOM_ATTRIBUTES_HEADER, encode_results, response_spec
from multimodal.sagemaker.serving.settings import ServerSettings

logger = logging.getLogger(__name__)


class ModelLoading(MultimodalError):
    """A request that came before the model finished loading."""


class ModelLoadFailed(PlatformError):
    """The model could not be loaded; every request says why."""


# The one mapping from error classes to HTTP statuses, looked up along an error's class hierarchy (the
# nearest listed ancestor wins). Anything else (an error the code did not expect) is a 500.
HTTP_STATUS: dict[type, int] = {
    UnsupportedContentType: 415,
    NotAcceptable: 406,
    PayloadTooLarge: 413,
    UserError: 400,          # the caller's data: PayloadError, RowsWithoutData, a bad cell value
    ModelLoading: 503,
    MultimodalError: 500,    # PlatformError, AlgorithmError, ModelLoadFailed
}


def error_status(error: BaseException) -> int:
    """The HTTP status that answers ``error`` (``HTTP_STATUS``; Werkzeug's own errors keep their code)."""
    if isinstance(error, HTTPException):
        return error.code or 500
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


class ModelHolder:
    """Loads the model once, in the background, and serialises predictions on it."""

    def __init__(self, loader: Callable[[], object], on_failure: Callable[[BaseException], None] | None = None):
        self._loader = loader
        self._on_failure = on_failure
        self.model = None
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self.predict_lock = threading.Lock()

    def start(self) -> None:
        """Begin loading in a daemon thread."""
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()

    def get(self):
        """The model; ``ModelLoading`` while it loads, ``ModelLoadFailed`` when it could not be loaded."""
        if self.model is not None:
            return self.model
        if self.error is not None:
            raise ModelLoadFailed(f"model failed to load: {type(self.error).__name__}: {self.error}")
        raise ModelLoading("the model is still loading; retry after /ping answers 200")

    def _load(self) -> None:
        started = time.monotonic()
        try:
            self.model = self._loader()
            logger.info("model loaded in %.1f s; ready for /invocations", time.monotonic() - started)
        except BaseException as error:  # noqa: BLE001 - reported by /ping and /invocations
            self.error = error
            logger.error("model failed to load: %s: %s", type(error).__name__, error)
            if self._on_failure is not None:
                self._on_failure(error)
        finally:
            self.ready.set()


DRAIN_LIMIT_BYTES = 256 * 1024 * 1024  # an oversized body is read and dropped up to this, so the client gets the 413


def read_body(stream, declared_length: int | None, limit: int) -> bytes | None:
    """The request body, or None when it is over ``limit`` bytes; the size is checked before anything is
    parsed or kept. An oversized body is read and dropped (up to ``DRAIN_LIMIT_BYTES``) so that the client,
    still sending, receives the 413 instead of a reset connection."""
    if declared_length is not None and declared_length > limit:
        _drain(stream)
        return None
    body = stream.read(limit + 1)
    if len(body) > limit:
        _drain(stream)
        return None
    return body


def _message(error: MultimodalError, parsed) -> str:
    """The one-line answer to a request that failed on purpose."""
    if isinstance(error, RowsWithoutData) and parsed is not None:
        return (f"{parsed.place(error.positions[0])}: every feature is missing or undecodable "
                f"({len(error.positions)} such record(s)); images that cannot be decoded count as missing "
                "(the log names them).")
    if isinstance(error, (PayloadError, ModelLoading, ModelLoadFailed)):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _drain(stream) -> None:
    drained = 0
    while drained < DRAIN_LIMIT_BYTES:
        chunk = stream.read(1024 * 1024)
        if not chunk:
            return
        drained += len(chunk)


def _text(body: str, status: int) -> Response:
    return Response(body.rstrip("\n") + "\n", status=status, mimetype="text/plain")


def create_app(holder: ModelHolder, settings: ServerSettings) -> Flask:
    """The Flask app over a ``ModelHolder`` (loading starts here)."""
    app = Flask("multimodal")
    holder.start()

    @app.get("/ping")
    def ping():
        try:
            holder.get()
        except ModelLoading as error:
            return _text("loading the model", error_status(error))
        except MultimodalError as error:
            return _text(str(error), error_status(error))
        return Response(status=200)

    @app.get("/execution-parameters")
    def execution_parameters():
        return Response(json.dumps(settings.execution_parameters()), status=200, mimetype="application/json")

    @app.post("/invocations")
    def invocations():
        started = time.monotonic()
        parsed = None
        try:
            model = holder.get()
            body = read_body(request.stream, request.content_length, settings.max_payload_bytes)
            if body is None:
                raise PayloadTooLarge(f"payload over MaxPayloadInMB ({settings.max_payload_mb} MB); send smaller "
                                      "mini-batches or raise SAGEMAKER_MAX_PAYLOAD_IN_MB.")
            spec = response_spec(request.headers.get("Accept"), request.headers.get(CUSTOM_ATTRIBUTES_HEADER),
                                 settings.inference_output, settings.probabilities, model.schema_.has_id)
            parsed = parse_payload(body, request.headers.get("Content-Type"), model.schema_)
            with holder.predict_lock:
                proba = model.predict_proba(parsed.frame, require_data=True).to_numpy()
            labels = model.predict_from_proba(proba).tolist()
            ids = parsed.frame[ID_COLUMN].tolist() if model.schema_.has_id else None
            body = encode_results(spec, ids, labels, proba, model.classes_)
        except MultimodalError as error:
            status, message = error_status(error), _message(error, parsed)
            logger.warning("/invocations %d: %s", status, message)
            return _text(message, status)
        logger.info("/invocations: %d records in %.2f s", len(labels), time.monotonic() - started)
        return Response(body, status=200, mimetype=spec.kind)

    @app.errorhandler(404)
    def not_found(_error):
        return _text("not found: this server answers GET /ping, GET /execution-parameters and POST /invocations", 404)

    @app.errorhandler(405)
    def wrong_method(_error):
        return _text("method not allowed: GET /ping, GET /execution-parameters, POST /invocations", 405)

    @app.errorhandler(HTTPException)
    def http_error(error):
        return _text(f"{error.code} {error.name}: {error.description}", error_status(error))

    @app.errorhandler(Exception)
    def unexpected(error):
        # One request's failure, never the worker's: the reply is one line, the traceback goes to the log.
        logger.error("%s %s 500: unexpected %s: %s", request.method, request.path, type(error).__name__, error,
                     exc_info=error)
        reason = str(error).replace("\n", " ")[:300]
        return _text(f"500 internal error: {type(error).__name__}: {reason}", error_status(error))

    return app
