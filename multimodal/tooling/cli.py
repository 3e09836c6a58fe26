"""The ``multimodal`` command: demo, validate, images, local-train, local-transform, local-validate-algorithm."""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from multimodal.errors import MultimodalError, UserError
from multimodal.sagemaker.entrypoints import configure_logging

logger = logging.getLogger("multimodal")


def _demo(args: argparse.Namespace) -> int:
    import os

    from multimodal.sagemaker import environment
    from multimodal.tooling.demo import DATA_DIR, run_demo

    if args.image_weights:
        # the training job and serve (or their containers) read it
        os.environ[environment.IMAGE_WEIGHTS_ENV] = args.image_weights
    if environment.image_weights() == "random":
        logger.warning("image embeddings use RANDOM ResNet50 weights (%s=random): fine for a demo, not for real use",
                       environment.IMAGE_WEIGHTS_ENV)
    hyperparameters = {"quality": args.quality, "n_mins": str(args.minutes), **_name_values(args.hp)}
    if not (args.train and args.test) and not DATA_DIR.is_dir():
        raise UserError(f"the bundled demo data ({DATA_DIR}) is not here: it ships with the repository, not with "
                        "the installed package; run the demo from a clone, or pass --train and --test.")
    result = run_demo(Path(args.output), Path(args.train or DATA_DIR / "train.csv"),
                      Path(args.test or DATA_DIR / "test.csv"), hyperparameters, args.training_image,
                      args.inference_image)
    training = result.training
    print(f"model:        {training.model_artifact}  (unpacked: {training.ml_root / 'model'})")
    print(f"report:       {training.output_artifact}  (metrics.json, confusion_matrix.png, leaderboards/; "
          f"unpacked: {training.ml_root / 'output' / 'data'})")
    print(f"predictions:  {result.predictions_path}  (transform output: {result.transform.outputs[0]})")
    print(f"training job: {training.status} in {training.seconds:.1f} s; batch transform of {result.test_rows} "
          f"rows: {result.transform.seconds:.1f} s")
    print(f"accuracy:     {result.accuracy:.4f} on {result.test_rows} held-back rows "
          f"(balanced accuracy {result.balanced_accuracy:.4f})")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from multimodal.tooling.dataset_check import validate_dataset

    report = validate_dataset(Path(args.train), Path(args.test) if args.test else None, args.sample_images,
                              Path(args.image_folder) if args.image_folder else None)
    print(report.render())
    return 0 if report.ok else 1


def _images(args: argparse.Namespace) -> int:
    from multimodal.tooling import image_forms

    if args.form == "inline":
        result = image_forms.inline(Path(args.csv), Path(args.folder) if args.folder else None, Path(args.output),
                                    inference=args.inference)
        done = f"{result.converted} image path(s) written as base64"
    else:
        result = image_forms.extract(Path(args.csv), Path(args.output), args.folder or "images")
        done = f"{result.converted} base64 image(s) written as files under {Path(args.output).parent}"
    print(f"{args.output}: {result.rows} rows, {done}" + (f", {result.failed} failed (see the warnings)"
                                                          if result.failed else ""))
    return 0 if not result.failed else 1


def _print_training(result) -> None:
    print(f"training job: {result.job_name}: {result.status} in {result.seconds:.1f} s (exit code {result.exit_code})")
    if result.failure_reason:
        print(f"FailureReason: {result.failure_reason.splitlines()[0]}")
    print(f"model:        {result.model_artifact or '(none: the job failed)'}")
    print(f"output:       {result.output_artifact or '(none)'}")
    print(f"/opt/ml tree: {result.ml_root}; log: {result.log_path}")


def _local_train(args: argparse.Namespace) -> int:
    from multimodal.tooling.local_job import run_local_training

    result = run_local_training(Path(args.output), Path(args.train), Path(args.validation) if args.validation else None,
                                _name_values(args.hp), image=args.image,
                                checkpoints=Path(args.checkpoint_dir) if args.checkpoint_dir else None,
                                hosts=args.hosts, shard_train=args.shard_train)
    _print_training(result)
    return 0 if result.status == "Completed" else 1


def _local_validate_algorithm(args: argparse.Namespace) -> int:
    from multimodal.tooling.local_job import run_local_training
    from multimodal.tooling.transform import run_local_transform

    output = Path(args.output)
    training = run_local_training(output / "training", Path(args.train),
                                  Path(args.validation) if args.validation else None, _name_values(args.hp),
                                  image=args.training_image)
    _print_training(training)
    if training.status != "Completed":
        print(f"validation:   Failed: the training job failed: {training.failure_reason.splitlines()[0]}")
        return 1
    test = Path(args.test)
    if test.is_file():   # a transform job reads an S3 prefix: a folder of files
        (output / "transform-input").mkdir(parents=True, exist_ok=True)
        shutil.copy2(test, output / "transform-input" / test.name)
        test = output / "transform-input"
    transform = run_local_transform(training.model_artifact, test, output / "transform-output",
                                    image=args.inference_image, content_type=args.content_type)
    for path in transform.outputs:
        print(f"transform:    {path}")
    if transform.failures:
        name, reason = next(iter(transform.failures.items()))
        print(f"validation:   Failed: the transform job failed on {name}: {reason}")
        return 1
    print(f"validation:   Completed: training job and transform job ({transform.records} records in "
          f"{transform.seconds:.1f} s) succeeded")
    return 0


def _local_transform(args: argparse.Namespace) -> int:
    from multimodal.sagemaker.environment import IMAGE_WEIGHTS_ENV
    from multimodal.tooling.transform import run_local_transform

    environment = {}
    if args.probabilities:
        environment["MULTIMODAL_OUTPUT_PROBABILITIES"] = "true"
    if args.image_weights:
        environment[IMAGE_WEIGHTS_ENV] = args.image_weights
    result = run_local_transform(Path(args.model), Path(args.input), Path(args.output), image=args.image,
                                 environment=environment, content_type=args.content_type, accept=args.accept,
                                 batch_strategy=args.batch_strategy, max_payload_mb=args.max_payload_mb,
                                 join_source=args.join_source)
    for path in result.outputs:
        print(f"output:   {path}")
    for name, reason in result.failures.items():
        print(f"failed:   {name}: {reason}")
    print(f"records:  {result.records} in {result.seconds:.1f} s")
    return 0 if not result.failures else 1


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more; got {text}")
    return value


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
    demo = commands.add_parser("demo", help="validate, local-train and local-transform the bundled dataset; print "
                                            "where everything went and the accuracy")
    demo.add_argument("--output", default="build/demo", help="directory for the job trees, model and predictions")
    demo.add_argument("--train", help="training CSV (default: the bundled data/demo/train.csv)")
    demo.add_argument("--test", help="held-back CSV with header and labels (default: the bundled data/demo/test.csv)")
    demo.add_argument("--quality", default="toy", help="AutoGluon quality preset (default: toy)")
    demo.add_argument("--minutes", type=float, default=3.0, help="time budget in minutes (default: 3)")
    demo.add_argument("--image-weights", help="imagenet, random or a weights file (default: $MULTIMODAL_IMAGE_WEIGHTS)")
    demo.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE",
                      help="any other hyperparameter, repeatable (e.g. --hp num_folds=3)")
    demo.add_argument("--training-image", help="run the training job in this image (default: this environment)")
    demo.add_argument("--inference-image", help="run serve from this image (default: this environment)")
    demo.set_defaults(handler=_demo)

    validate = commands.add_parser("validate", help="check a dataset against the algorithm's contract before a job")
    validate.add_argument("train", help="training CSV (header, 'label', feature columns by suffix)")
    validate.add_argument("--test", help="batch-transform input: CSV rows without header, training order minus label")
    validate.add_argument("--sample-images", type=int, default=20, help="images decoded per image column (default 20)")
    validate.add_argument("--image-folder", help="the folder image paths are relative to: the channel's top folder "
                                                 "(default: the training CSV's folder)")
    validate.set_defaults(handler=_validate)

    images = commands.add_parser("images", help="convert an image column between paths of image files and base64")
    images.add_argument("form", choices=["inline", "extract"],
                        help="inline: paths -> base64 (transform and endpoint input); extract: base64 -> files + paths")
    images.add_argument("csv", help="a CSV with header")
    images.add_argument("--output", "-o", required=True, help="the CSV to write (extract: files go beside it)")
    images.add_argument("--folder", help="inline: the folder paths are relative to (default: the CSV's folder); "
                                         "extract: the subfolder the files go to (default: images)")
    images.add_argument("--inference", action="store_true",
                        help="inline: no header and no label column, as a batch transform job reads its input")
    images.set_defaults(handler=_images)

    def add_training_arguments(command, image_flag: str) -> None:
        command.add_argument("--train", required=True, help="the 'train' channel: a CSV file or a folder of them")
        command.add_argument("--validation", help="the optional 'validation' channel: a CSV file or a folder")
        command.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE",
                             help="a hyperparameter, repeatable; unset ones take their defaults")
        command.add_argument(image_flag, help="run `train` in this training image with docker (or $MULTIMODAL_DOCKER) "
                                              "instead of this environment")

    local_train = commands.add_parser("local-train", help="a SageMaker training job on a local /opt/ml tree; packs "
                                                          "model.tar.gz and output.tar.gz")
    add_training_arguments(local_train, "--image")
    local_train.add_argument("--output", required=True, help="job directory: opt_ml/, train.log, *.tar.gz")
    local_train.add_argument("--checkpoint-dir", help="a directory standing for CheckpointConfig.S3Uri (managed spot "
                                                      "training): copied into /opt/ml/checkpoints before the job and "
                                                      "synced back after it; a rerun resumes from it")
    local_train.add_argument("--hosts", type=_positive_int, default=1,
                             help="instances (default 1); above 1, each host runs `train` in a network namespace of "
                                  "its own on its share of the cores (needs root): a distributed job on Ray")
    local_train.add_argument("--shard-train", action="store_true",
                             help="with --hosts: channel 'train' ShardedByS3Key, its files dealt to the hosts "
                                  "(default: FullyReplicated, every host has every file)")
    local_train.set_defaults(handler=_local_train)

    for name in ("local-transform", "transform"):
        transform = commands.add_parser(name, help="a local batch-transform job against `serve`" if name ==
                                        "local-transform" else "same as local-transform")
        transform.add_argument("--model", required=True, help="model directory or model.tar.gz")
        transform.add_argument("--input", required=True, help="folder of input files (one .out per file)")
        transform.add_argument("--output", required=True, help="folder for the .out files")
        transform.add_argument("--image", help="run serve in this inference image with docker (or $MULTIMODAL_DOCKER)")
        transform.add_argument("--content-type", default="text/csv", choices=["text/csv", "application/jsonlines"])
        transform.add_argument("--accept", default="text/csv",
                               choices=["text/csv", "application/jsonlines", "application/json"])
        transform.add_argument("--batch-strategy", choices=["MultiRecord", "SingleRecord"],
                               help="default: what /execution-parameters says")
        transform.add_argument("--max-payload-mb", type=int, help="default: what /execution-parameters says")
        transform.add_argument("--join-source", default="None", choices=["None", "Input"])
        transform.add_argument("--probabilities", action="store_true", help="add one probability column per class")
        transform.add_argument("--image-weights", help="imagenet, random or a weights file (default: as trained)")
        transform.set_defaults(handler=_local_transform)

    validate_algorithm = commands.add_parser(
        "local-validate-algorithm",
        help="the algorithm validation profile locally: a training job, then a transform job on --test")
    add_training_arguments(validate_algorithm, "--training-image")
    validate_algorithm.add_argument("--test", required=True, help="transform input: a file or folder of CSV rows "
                                                                  "without header (or JSON Lines)")
    validate_algorithm.add_argument("--content-type", default="text/csv", choices=["text/csv", "application/jsonlines"])
    validate_algorithm.add_argument("--inference-image", help="run serve in this inference image")
    validate_algorithm.add_argument("--output", required=True, help="directory for both jobs")
    validate_algorithm.set_defaults(handler=_local_validate_algorithm)
    return parser


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
