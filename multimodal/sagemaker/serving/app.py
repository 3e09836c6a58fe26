"""The Flask app of the inference server: ``/ping``, ``/execution-parameters``, ``/invocations``; on a
multi-model endpoint, ``/models`` and ``/models/<name>/invoke`` instead of ``/invocations``.

``create_app(holder, settings)`` starts loading the model in a background thread, so ``/ping`` answers
at once (503 until the model is ready, then 200) and keeps answering while ``/invocations`` run.
``create_multi_model_app(registry, settings)`` loads models when SageMaker asks (``POST /models``).
Status codes follow the error class, mapped in one place (``HTTP_STATUS``): the caller's mistakes 4xx (with
the line and the column), the model still loading 503, the model's or the environment's failures 500.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable

import numpy as np
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from multimodal.classifier.schema import ID_COLUMN
from multimodal.errors import MultimodalError, PlatformError, RowsWithoutData, UserError
from multimodal.sagemaker.serving.batching import PredictionBatcher, model_batcher
from multimodal.sagemaker.serving.payloads import PayloadError, PayloadTooLarge, UnsupportedContentType, parse_payload
from multimodal.sagemaker.serving.registry import (BadModelRequest, InsufficientMemory, ModelAlreadyLoaded,
                                                   ModelNotLoaded, ModelRegistry)
from multimodal.sagemaker.serving.responses import (CUSTOM_ATTRIBUTES_HEADER, NotAcceptable, encode_results,
                                                    response_spec)
from multimodal.sagemaker.serving.settings import ServerSettings

logger = logging.getLogger(__name__)


class ModelLoading(MultimodalError):
    """A request that came before the model finished loading."""


class ModelLoadFailed(PlatformError):
    """The model could not be loaded; every request says why."""


# The one mapping from error classes to HTTP statuses, looked up along an error's class hierarchy (the
# nearest listed ancestor wins). Anything else (an error the code did not expect) is a 500.
HTTP_STATUS: dict[type, int] = {
    ModelNotLoaded: 404,
    ModelAlreadyLoaded: 409,
    InsufficientMemory: 507,
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
    """Loads the model once, in the background; its predictions run one batch at a time (``batcher``:
    concurrent requests share a call)."""

    def __init__(self, loader: Callable[[], object], on_failure: Callable[[BaseException], None] | None = None):
        self._loader = loader
        self._on_failure = on_failure
        self.model = None
        self.batcher: PredictionBatcher | None = None
        self.error: BaseException | None = None
        self.ready = threading.Event()

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
            model = self._loader()
            self.batcher = model_batcher(model)
            self.model = model
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


def explained(model, frame) -> tuple[np.ndarray, list[dict]]:
    """The probabilities of ``frame``'s rows and, per row, the explanation of its predicted label's
    probability: ``{"baseline": .., "<modality>": ..}`` (``MultimodalClassifier.explain``)."""
    every = model.explain(frame, all_classes=True, require_data=True)
    proba = every["probability"].to_numpy().reshape(len(frame), len(model.classes_))
    picked = every.iloc[np.arange(len(frame)) * len(model.classes_) + proba.argmax(axis=1)]
    columns = [c for c in every.columns if c not in ("predicted", "probability")]
    return proba, [dict(zip(columns, map(float, values))) for values in picked[columns].itertuples(index=False)]


def _invoke(model, batcher: PredictionBatcher, settings: ServerSettings) -> Response:
    """Answer the current request's records with ``model``'s predictions (``/invocations``, and
    ``/models/<name>/invoke`` on a multi-model endpoint)."""
    started = time.monotonic()
    parsed = None
    try:
        body = read_body(request.stream, request.content_length, settings.max_payload_bytes)
        if body is None:
            raise PayloadTooLarge(f"payload over MaxPayloadInMB ({settings.max_payload_mb} MB); send smaller "
                                  "mini-batches or raise SAGEMAKER_MAX_PAYLOAD_IN_MB.")
        spec = response_spec(request.headers.get("Accept"), request.headers.get(CUSTOM_ATTRIBUTES_HEADER),
                             settings.inference_output, settings.probabilities, model.schema_.has_id,
                             settings.explanations)
        parsed = parse_payload(body, request.headers.get("Content-Type"), model.schema_)
        explanations = None
        if spec.explain:
            proba, explanations = batcher.exclusive(lambda: explained(model, parsed.frame))
        else:
            proba = batcher.predict(parsed.frame)
        labels = model.predict_from_proba(proba).tolist()
        ids = parsed.frame[ID_COLUMN].tolist() if model.schema_.has_id else None
        body = encode_results(spec, ids, labels, proba, model.classes_, explanations)
    except MultimodalError as error:
        status, message = error_status(error), _message(error, parsed)
        logger.warning("%s %d: %s", request.path, status, message)
        return _text(message, status)
    logger.info("%s: %d records in %.2f s", request.path, len(labels), time.monotonic() - started)
    return Response(body, status=200, mimetype=spec.kind)


def _base_app(routes: str, settings: ServerSettings) -> Flask:
    """A Flask app whose every error reply is this server's own plain text (``routes``: what it answers), with
    ``/execution-parameters``."""
    app = Flask("multimodal")

    @app.errorhandler(404)
    def not_found(_error):
        return _text(f"not found: this server answers {routes}", 404)

    @app.errorhandler(405)
    def wrong_method(_error):
        return _text(f"method not allowed: this server answers {routes}", 405)

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

    @app.get("/execution-parameters")
    def execution_parameters():
        return Response(json.dumps(settings.execution_parameters()), status=200, mimetype="application/json")

    return app


def create_app(holder: ModelHolder, settings: ServerSettings) -> Flask:
    """The Flask app over a ``ModelHolder`` (loading starts here)."""
    app = _base_app("GET /ping, GET /execution-parameters and POST /invocations", settings)
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

    @app.post("/invocations")
    def invocations():
        try:
            model = holder.get()
        except MultimodalError as error:
            logger.warning("/invocations %d: %s", error_status(error), error)
            return _text(str(error), error_status(error))
        return _invoke(model, holder.batcher, settings)

    return app


TARGET_MODEL_HEADER = "X-Amzn-SageMaker-Target-Model"


def _json(data, status: int = 200) -> Response:
    return Response(json.dumps(data) + "\n", status=status, mimetype="application/json")


def _json_error(error: MultimodalError) -> Response:
    status = error_status(error)
    logger.warning("%s %s %d: %s", request.method, request.path, status, error)
    return _json({"code": status, "type": type(error).__name__, "message": str(error)}, status)


def create_multi_model_app(registry: ModelRegistry, settings: ServerSettings) -> Flask:
    """The Flask app of a multi-model endpoint (SageMaker's contract for bring-your-own containers): ``/ping``
    (200 with or without models), ``POST /models``, ``GET /models``, ``GET /models/<name>``,
    ``DELETE /models/<name>``, ``POST /models/<name>/invoke``. The management answers are JSON (errors too:
    ``{"code", "type", "message"}``); an invocation answers as ``/invocations`` does."""
    app = _base_app("GET /ping, POST /models, GET /models, GET|DELETE /models/<name>, POST /models/<name>/invoke",
                    settings)

    @app.get("/ping")
    def ping():
        return Response(status=200)

    @app.post("/models")
    def load_model():
        try:
            try:
                body = json.loads(request.get_data(cache=False) or b"null")
            except (ValueError, RecursionError):
                raise BadModelRequest("the body must be a JSON object {\"model_name\": ..., \"url\": ...}.") from None
            if not isinstance(body, dict):
                raise BadModelRequest("the body must be a JSON object {\"model_name\": ..., \"url\": ...}.")
            loaded = registry.load(body.get("model_name"), body.get("url"))
        except MultimodalError as error:
            return _json_error(error)
        target = request.headers.get(TARGET_MODEL_HEADER)
        logger.info("loaded %r%s", loaded.name, f" (target model {target})" if target else "")
        return _json({"status": f"model {loaded.name!r} loaded in {loaded.load_seconds:.1f} s"})

    @app.get("/models")
    def list_models():
        try:
            models, token = registry.page(request.args.get("next_page_token"))
        except MultimodalError as error:
            return _json_error(error)
        answer = {"models": [m.description() for m in models]}
        if token is not None:
            answer["nextPageToken"] = token
        return _json(answer)

    @app.get("/models/<name>")
    def describe_model(name):
        try:
            return _json(registry.get(name).description())
        except MultimodalError as error:
            return _json_error(error)

    @app.delete("/models/<name>")
    def unload_model(name):
        try:
            registry.unload(name)
        except MultimodalError as error:
            return _json_error(error)
        return _json({"status": f"model {name!r} unloaded"})

    @app.post("/models/<name>/invoke")
    def invoke(name):
        try:
            loaded = registry.get(name)
        except MultimodalError as error:
            logger.warning("%s %d: %s", request.path, error_status(error), error)
            return _text(str(error), error_status(error))
        return _invoke(loaded.model, loaded.batcher, settings)

    @app.post("/invocations")
    def invocations():
        return _text("this is a multi-model endpoint: invoke POST /models/<name>/invoke (SageMaker does, for "
                     "InvokeEndpoint with TargetModel).", 404)

    return app
