"""Command lines: ``multimodal`` (demo, transform), ``train`` and ``serve`` (the SageMaker entrypoints)."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import traceback
from pathlib import Path

from multimodal.errors import AlgorithmError, MultimodalError, UserError

logger = logging.getLogger("multimodal")


def configure_logging(level: int = logging.INFO) -> None:
    """One stdout handler with timestamps, for people reading the log (CloudWatch or a terminal)."""
    logging.basicConfig(level=level, stream=sys.stdout, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("matplotlib", "h5py", "PIL", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _demo(args: argparse.Namespace) -> int:
    from multimodal.demo import DATA_DIR, run_demo
    from multimodal.images import WEIGHTS_ENV, resolve_weights_setting

    weights = resolve_weights_setting(args.image_weights)
    if weights == "random":
        logger.warning("image embeddings use RANDOM ResNet50 weights (%s=random): fine for a demo, not for real use",
                       WEIGHTS_ENV)
    hyperparameters = {"quality": args.quality, "n_mins": args.minutes, **_name_values(args.hp)}
    result = run_demo(Path(args.output), Path(args.train or DATA_DIR / "train.csv"),
                      Path(args.test or DATA_DIR / "test.csv"), image_weights=weights, **hyperparameters)
    print(f"model:        {result.model_dir}")
    print(f"predictions:  {result.predictions_path}")
    print(f"fit:          {result.fit_seconds:.1f} s; predict {result.test_rows} rows: {result.predict_seconds:.1f} s")
    print(f"accuracy:     {result.accuracy:.4f} on {result.test_rows} held-back rows "
          f"(balanced accuracy {result.balanced_accuracy:.4f})")
    return 0


def _transform(args: argparse.Namespace) -> int:
    import tempfile

    from multimodal.transform import LocalServer, run_transform, unpack_model

    environment = {}
    if args.probabilities:
        environment["MULTIMODAL_OUTPUT_PROBABILITIES"] = "true"
    if args.image_weights:
        environment["MULTIMODAL_IMAGE_WEIGHTS"] = args.image_weights
    with tempfile.TemporaryDirectory(prefix="multimodal-model-") as scratch:
        model_dir = unpack_model(Path(args.model), Path(scratch))
        with LocalServer(model_dir, environment) as server:
            ready = server.wait_ready()
            logger.info("serve answered /ping after %.1f s", ready)
            result = run_transform(server, Path(args.input), Path(args.output), args.content_type, args.accept,
                                   args.batch_strategy, args.max_payload_mb, args.join_source)
    for path in result.outputs:
        print(f"output:   {path}")
    for name, reason in result.failures.items():
        print(f"failed:   {name}: {reason}")
    print(f"records:  {result.records} in {result.seconds:.1f} s")
    return 0 if not result.failures else 1


def _name_values(pairs: list[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UserError(f"--hp takes name=value; got {pair!r}")
        values[name.strip()] = value
    return values


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``multimodal`` command."""
    parser = argparse.ArgumentParser(prog="multimodal", description="Multimodal classification (SageMaker algorithm).")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train on the bundled dataset, predict held-back rows, print accuracy")
    demo.add_argument("--output", default="build/demo", help="directory for the model and predictions")
    demo.add_argument("--train", help="training CSV (default: the bundled data/demo/train.csv)")
    demo.add_argument("--test", help="test CSV with labels (default: the bundled data/demo/test.csv)")
    demo.add_argument("--quality", default="toy", help="AutoGluon quality preset (default: toy)")
    demo.add_argument("--minutes", type=float, default=3.0, help="time budget in minutes (default: 3)")
    demo.add_argument("--image-weights", help="imagenet, random or a weights file (default: $MULTIMODAL_IMAGE_WEIGHTS)")
    demo.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE",
                      help="any other hyperparameter, repeatable (e.g. --hp num_folds=3)")
    demo.set_defaults(handler=_demo)

    transform = commands.add_parser("transform", help="run a local batch-transform job against `serve`")
    transform.add_argument("--model", required=True, help="model directory or model.tar.gz")
    transform.add_argument("--input", required=True, help="folder of input files (one .out per file)")
    transform.add_argument("--output", required=True, help="folder for the .out files")
    transform.add_argument("--content-type", default="text/csv", choices=["text/csv", "application/jsonlines"])
    transform.add_argument("--accept", default="text/csv",
                           choices=["text/csv", "application/jsonlines", "application/json"])
    transform.add_argument("--batch-strategy", choices=["MultiRecord", "SingleRecord"],
                           help="default: what /execution-parameters says")
    transform.add_argument("--max-payload-mb", type=int, help="default: what /execution-parameters says")
    transform.add_argument("--join-source", default="None", choices=["None", "Input"])
    transform.add_argument("--probabilities", action="store_true", help="add one probability column per class")
    transform.add_argument("--image-weights", help="imagenet, random or a weights file (default: as trained)")
    transform.set_defaults(handler=_transform)
    return parser


class TrainingStopped(BaseException):
    """SIGTERM arrived (StopTrainingJob, spot interruption); a BaseException so no library swallows it."""


def _stop_on_sigterm(signum, frame):
    raise TrainingStopped("training stopped by SIGTERM (StopTrainingJob, MaxRuntimeInSeconds or a spot "
                          "interruption); no model was written")


def train_main(argv: list[str] | None = None) -> int:
    """``train``: run the SageMaker training job under ``$SAGEMAKER_BASE_DIR`` (default /opt/ml).

    The one top-level handler: any failure writes ``output/failure`` (first line: what to fix), removes a
    half-written model and exits non-zero (2: user error, 143: SIGTERM, 1: anything else).
    """
    from multimodal.paths import SageMakerPaths
    from multimodal.training_job import discard_incomplete_model, run_training, write_failure

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
            error = AlgorithmError(f"unexpected {type(error).__name__} during training: {error}", caused_by=None)
        logger.error("%s: %s", type(error).__name__, error)
        if isinstance(error, AlgorithmError):
            logger.error("%s", details)
        discard_incomplete_model(paths)
        write_failure(paths, error, details)
        if isinstance(error, TrainingStopped):
            return 143
        return 2 if isinstance(error, UserError) else 1


def serve_main(argv: list[str] | None = None) -> int:
    """``serve``: the inference server over the model in ``$SAGEMAKER_BASE_DIR/model`` (default /opt/ml/model)."""
    from multimodal.paths import SageMakerPaths
    from multimodal.server import run_server
    from multimodal.server_settings import ServerSettings

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


def main(argv: list[str] | None = None) -> int:
    """Run the ``multimodal`` command; user and platform errors end with one line and exit code 2."""
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        return args.handler(args)
    except MultimodalError as error:
        logger.error("%s: %s", type(error).__name__, error)
        return 2


if __name__ == "__main__":
    sys.exit(main())
