"""Inference-server settings from the environment, read once by ``serve``."""
from __future__ import annotations

import os
from dataclasses import dataclass

from multimodal.errors import UserError
from multimodal.sagemaker.serving.responses import TRUE, output_keys



def _number(environ, name: str, default, kind=int, minimum=1, maximum=None):
    raw = environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise UserError(f"environment variable {name}={raw!r} is not a number.") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise UserError(f"environment variable {name}={raw!r} must be from {minimum} to {maximum or 'any'}.")
    return value


@dataclass(frozen=True)
class ServerSettings:
    """Port, gunicorn workers/threads/timeouts, payload limit, batch strategy and output options."""

    port: int = 8080
    workers: int = 1
    # Predictions run one batch at a time per worker (requests that wait are predicted together in the next
    # batch); the spare threads answer /ping (under 2 s).
    threads: int = 16
    timeout: int = 600
    graceful_timeout: int = 5
    max_payload_mb: int = 6
    batch_strategy: str = "MultiRecord"
    probabilities: bool = False
    explanations: bool = False    # each record's per-modality explanation (MULTIMODAL_OUTPUT_EXPLANATIONS)
    # SageMaker's selectable output keys (SAGEMAKER_INFERENCE_OUTPUT); None: this algorithm's default form.
    inference_output: tuple[str, ...] | None = None
    multi_model: bool = False     # SAGEMAKER_MULTI_MODEL=true: models load through /models
    sdk_local_mode: bool = False

    @property
    def max_payload_bytes(self) -> int:
        """The request size limit: MaxPayloadInMB (plus slack for headers of multipart clients)."""
        return self.max_payload_mb * 1024 * 1024

    @classmethod
    def from_environment(cls, environ: dict | None = None) -> "ServerSettings":
        """Read SAGEMAKER_BIND_TO_PORT, MODEL_SERVER_WORKERS, MODEL_SERVER_THREADS, MODEL_SERVER_TIMEOUT,
        SAGEMAKER_MAX_PAYLOAD_IN_MB, SAGEMAKER_BATCH_STRATEGY, MULTIMODAL_OUTPUT_PROBABILITIES,
        MULTIMODAL_OUTPUT_EXPLANATIONS, SAGEMAKER_INFERENCE_OUTPUT and SAGEMAKER_MULTI_MODEL."""
        environ = os.environ if environ is None else environ
        strategy = (environ.get("SAGEMAKER_BATCH_STRATEGY") or "MultiRecord").replace("_", "").lower()
        return cls(
            port=_number(environ, "SAGEMAKER_BIND_TO_PORT", 8080, maximum=65535),
            workers=_number(environ, "MODEL_SERVER_WORKERS", 1, maximum=64),
            threads=_number(environ, "MODEL_SERVER_THREADS", 16, minimum=2, maximum=128),
            timeout=_number(environ, "MODEL_SERVER_TIMEOUT", 600, maximum=3600),
            graceful_timeout=_number(environ, "MODEL_SERVER_GRACEFUL_TIMEOUT", 5, maximum=120),
            max_payload_mb=_number(environ, "SAGEMAKER_MAX_PAYLOAD_IN_MB", 6, maximum=100),
            batch_strategy="SingleRecord" if strategy == "singlerecord" else "MultiRecord",
            probabilities=(environ.get("MULTIMODAL_OUTPUT_PROBABILITIES") or "").lower() in TRUE,
            explanations=(environ.get("MULTIMODAL_OUTPUT_EXPLANATIONS") or "").lower() in TRUE,
            inference_output=(output_keys(environ["SAGEMAKER_INFERENCE_OUTPUT"], "environment variable "
                                          "SAGEMAKER_INFERENCE_OUTPUT")
                              if (environ.get("SAGEMAKER_INFERENCE_OUTPUT") or "").strip() else None),
            multi_model=(environ.get("SAGEMAKER_MULTI_MODEL") or "").strip().lower() == "true",
            # The SDK's local mode sets SAGEMAKER_BATCH="True"; the service documents "true".
            sdk_local_mode=environ.get("SAGEMAKER_BATCH") == "True",
        )

    def execution_parameters(self) -> dict:
        """The ``/execution-parameters`` answer.

        The service documents ``MULTI_RECORD``/``SINGLE_RECORD``; the SageMaker SDK's local mode copies the
        value verbatim and accepts only the API spelling ``MultiRecord``/``SingleRecord``, so that spelling
        is given when the SDK's local mode started the container. SageMaker takes values from the
        CreateTransformJob request first either way.
        """
        strategy = self.batch_strategy
        if not self.sdk_local_mode:
            strategy = {"MultiRecord": "MULTI_RECORD", "SingleRecord": "SINGLE_RECORD"}[strategy]
        return {"MaxConcurrentTransforms": self.workers, "BatchStrategy": strategy,
                "MaxPayloadInMB": self.max_payload_mb}
