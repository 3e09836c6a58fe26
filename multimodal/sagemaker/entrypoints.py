"""The SageMaker entrypoints ``train`` and ``serve`` (the scripts in train/ and serve/ call these): logging
for CloudWatch, the one top-level handler of a training job (failure file, exit codes) and the server."""
from __future__ import annotations

import logging
import os
import signal
import sys
import traceback

from multimodal.errors import AlgorithmError, MultimodalError, UserError

logger = logging.getLogger("multimodal")


def configure_logging(level: int = logging.INFO) -> None:
    """One stdout handler with timestamps, for people reading the log (CloudWatch or a terminal)."""
    logging.basicConfig(level=level, stream=sys.stdout, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("matplotlib", "h5py", "PIL", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class TrainingStopped(BaseException):
    """SIGTERM arrived (StopTrainingJob, spot interruption); a BaseException so no library swallows it."""


def _stop_on_sigterm(signum, frame):
    raise TrainingStopped("training stopped by SIGTERM (StopTrainingJob, MaxRuntimeInSeconds or a spot "
                          "interruption); no model was written")


def train_main() -> int:
    """``train``: run the SageMaker training job under ``$SAGEMAKER_BASE_DIR`` (default /opt/ml).

    The one top-level handler: any failure writes ``output/failure`` (first line: what to fix), removes a
    half-written model and exits non-zero (2: user error, 143: SIGTERM, 1: anything else).
    """
    from multimodal.sagemaker.paths import SageMakerPaths
    from multimodal.sagemaker.training_job import discard_incomplete_model, run_training, write_failure

    configure_logging()
    paths = SageMakerPaths.from_environment()
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    logger.info("train: SageMaker layout under %s", paths.root)
    try:
        run_training(paths)
        return 0
    except BaseException as error:  # noqa: BLE001 - the single top-level handler of the job
        details = traceback.format_exc()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if not isinstance(error, (MultimodalError, TrainingStopped)):
            error = AlgorithmError(f"unexpected {type(error).__name__} during training: {error}")
        logger.error("%s: %s", type(error).__name__, error)
        if isinstance(error, AlgorithmError):
            logger.error("%s", details)
        discard_incomplete_model(paths)
        write_failure(paths, error, details)
        code = 143 if isinstance(error, TrainingStopped) else 2 if isinstance(error, UserError) else 1
        _exit_if_work_lingers(code)
        return code


def _exit_if_work_lingers(code: int) -> None:
    """Exit at once when threads still run abandoned work (a distributed job's own unit when another host
    failed): the interpreter's shutdown under a thread inside torch can crash, and the exit code must be ours."""
    from multimodal.classifier.executors import abandoned_units_running

    if abandoned_units_running():
        logger.info("train: exiting with code %d while abandoned work still runs in this process", code)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve_main() -> int:
    """``serve``: the inference server over the model in ``$SAGEMAKER_BASE_DIR/model`` (default /opt/ml/model)."""
    from multimodal.sagemaker.paths import SageMakerPaths
    from multimodal.sagemaker.serving.server import run_server
    from multimodal.sagemaker.serving.settings import ServerSettings

    configure_logging()
    try:
        run_server(SageMakerPaths.from_environment(), ServerSettings.from_environment())
        return 0
    except SystemExit as stop:   # gunicorn's master exits this way when a worker cannot boot
        if stop.code:
            logger.error("serve stopped: a worker could not load the model (exit code %s)", stop.code)
        return int(stop.code or 0)
    except MultimodalError as error:
        logger.error("%s: %s", type(error).__name__, error)
        return 2
