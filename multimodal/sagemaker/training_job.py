"""The SageMaker training job: read the /opt/ml contract, fit, write the model and the reports.

``run_training`` takes a ``SageMakerPaths`` and does the work; the ``train`` entrypoint
(``multimodal.sagemaker.entrypoints.train_main``) adds logging, SIGTERM handling and the failure file.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd

from multimodal.classifier import hyperparameters as hp
from multimodal.sagemaker.channels import channels_on_disk, read_channel, validate_input_data_config
from multimodal.classifier.budget import TimeBudget
from multimodal.errors import PlatformError, UserError
from multimodal.classifier.metrics import metric_lines
from multimodal.classifier.model_config import FILE_NAME as MODEL_CONFIG_FILE
from multimodal.sagemaker.paths import SageMakerPaths
from multimodal.classifier.schema import LABEL_COLUMN, infer_schema

logger = logging.getLogger(__name__)

# Keys SageMaker or its SDK add to hyperparameters.json that are not the algorithm's own.
RESERVED_PREFIXES = ("sagemaker_", "_tuning_objective_metric")


def read_json(path: Path, default=None):
    """A JSON config file, ``default`` when absent; ``UserError`` when it is not valid JSON."""
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8") or "{}")
    except ValueError as error:
        raise UserError(f"{path.name} is not valid JSON ({error}).") from None


def read_hyperparameters(paths: SageMakerPaths) -> dict:
    """The typed hyperparameters from ``hyperparameters.json`` (reserved SageMaker keys dropped)."""
    raw = read_json(paths.hyperparameters_file, {})
    if not isinstance(raw, dict):
        raise UserError("hyperparameters.json must hold a JSON object of name: value.")
    own = {k: v for k, v in raw.items() if not k.startswith(RESERVED_PREFIXES)}
    return hp.validate(own)


def is_leader(paths: SageMakerPaths) -> bool:
    """True on the first host of ``resourceconfig.json`` (or when it is absent): that host trains."""
    config = read_json(paths.resource_config_file, {}) or {}
    hosts = sorted(config.get("hosts") or [])
    current = config.get("current_host")
    if len(hosts) > 1 and current != hosts[0]:
        logger.info("host %s is not the first of %s: distributed training is not supported yet, this host "
                    "exits and %s trains", current, hosts, hosts[0])
        return False
    return True


def clear_directory(directory: Path) -> None:
    """Remove everything inside ``directory`` (it may be a mount point, so the directory itself stays)."""
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def discard_incomplete_model(paths: SageMakerPaths) -> None:
    """After a failure, leave no half-written model that ``serve`` could try to load."""
    if paths.model_dir.is_dir() and not (paths.model_dir / MODEL_CONFIG_FILE).is_file():
        clear_directory(paths.model_dir)


def write_confusion_matrix(path: Path, codes: np.ndarray, proba: np.ndarray, classes: list, title: str) -> None:
    """A PNG confusion matrix (rows: true class, columns: predicted class, with counts)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(classes)
    matrix = np.zeros((k, k), dtype=int)
    np.add.at(matrix, (codes, proba.argmax(axis=1)), 1)
    size = min(2 + 0.6 * k, 20)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues")
    labels = [str(c)[:20] for c in classes]
    axis.set_xticks(range(k), labels, rotation=45, ha="right")
    axis.set_yticks(range(k), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    # Wrapped to the figure's width (a 2-class figure is about 3 inches wide) and saved with a tight box, so a
    # long title is never cut at the edge.
    axis.set_title(textwrap.fill(title, max(24, int(9 * size))), fontsize="medium")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                axis.text(j, i, str(matrix[i, j]), ha="center", va="center",
                          color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    figure.tight_layout()
    figure.savefig(path, dpi=100, bbox_inches="tight", pad_inches=0.1)
    plt.close(figure)


def host_count(paths: SageMakerPaths) -> int:
    """How many instances the job runs on (``resourceconfig.json``; 1 when absent)."""
    config = read_json(paths.resource_config_file, {}) or {}
    return max(1, len(config.get("hosts") or []))


def read_channels(paths: SageMakerPaths, channels: dict[str, dict]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The training and validation tables, checked against each other before any fit: the same columns, the
    labels typed by one rule over both channels, no validation class that training lacks."""
    from multimodal.classifier.labels import integer_labels, label_values, unseen_labels

    train = read_channel(paths, "train", channels["train"]).frame
    infer_schema(train.columns, source="channel 'train'", warn=False)   # fail fast; fit() warns once
    validation = None
    if "validation" in channels:
        validation = read_channel(paths, "validation", channels["validation"]).frame
        if set(validation.columns) != set(train.columns):
            raise UserError(
                f"channel 'validation' has other columns than channel 'train': extra "
                f"{sorted(set(validation.columns) - set(train.columns))}, missing "
                f"{sorted(set(train.columns) - set(validation.columns))}; use the training header."
            )
    tables = [t for t in (train, validation) if t is not None]
    as_integers = integer_labels(t[LABEL_COLUMN] for t in tables)
    for table in tables:
        table[LABEL_COLUMN] = label_values(table[LABEL_COLUMN], as_integers)
    if validation is not None:
        if validation[LABEL_COLUMN].isna().all():
            raise UserError("channel 'validation' has no row with a 'label' value; the validation report needs "
                            "labelled rows (or leave the channel out).")
        unseen = unseen_labels(train[LABEL_COLUMN].dropna(), validation[LABEL_COLUMN])
        if unseen:
            raise UserError(f"channel 'validation' has label value(s) {unseen[:10]} that channel 'train' never has; "
                            "the model can only predict classes it was trained on: drop those rows or add "
                            "training rows of these classes.")
    return train, validation


def run_training(paths: SageMakerPaths) -> None:
    """Run one training job against the /opt/ml layout of ``paths``.

    The time budget counts from here. The model is saved before the reports are computed: a failure while
    reporting is logged and never throws the finished model away.
    """
    from multimodal.classifier.estimator import MultimodalClassifier
    from multimodal.sagemaker import environment

    started = time.monotonic()
    params = read_hyperparameters(paths)
    config = read_json(paths.input_data_config_file, None)
    if config is None:
        config = channels_on_disk(paths)
        logger.info("no inputdataconfig.json: using the channel directories present (%s)", sorted(config))
    channels = validate_input_data_config(config, hosts=host_count(paths))
    if not is_leader(paths):
        return
    logger.info("hyperparameters: %s", json.dumps(params, sort_keys=True))
    budget = TimeBudget(hp.time_budget_seconds(params), started)
    checkpoints = checkpoint_dir(paths)
    train, validation = read_channels(paths, channels)

    # The table is handed over (no reference kept here), so fit can free the base64 images once embedded.
    tables = {"train": train}
    del train
    model = MultimodalClassifier(**params, image_weights=environment.image_weights(),
                                 image_precision=environment.image_precision())
    model.fit(tables.pop("train"), time_budget=budget, checkpoint_dir=checkpoints)

    paths.model_dir.mkdir(parents=True, exist_ok=True)
    clear_directory(paths.model_dir)
    model.save(paths.model_dir)
    try:
        write_reports(paths, model, validation, params)
    except Exception as error:  # noqa: BLE001 - the model is saved; a report failure must not lose it
        logger.error("the model is saved, but the training report failed (%s: %s); metrics.json may be "
                     "incomplete", type(error).__name__, error, exc_info=True)
    if checkpoints is not None and checkpoints.is_dir():
        # The model directory now holds what the units held: a finished job needs no second copy (SageMaker
        # deletes in S3 what is deleted here).
        clear_directory(checkpoints)
        logger.info("checkpoints: cleared %s (the model is saved)", checkpoints)
    logger.info("training job done in %.1f s (budget %.0f s): model in %s, reports in %s", time.monotonic() - started,
                budget.seconds, paths.model_dir, paths.output_data_dir)


def checkpoint_dir(paths: SageMakerPaths) -> Path | None:
    """The job's checkpoint directory when it has a ``CheckpointConfig`` (``checkpointconfig.json``), else None:
    without one, nothing is checkpointed."""
    config = read_json(paths.checkpoint_config_file, None)
    if config is None:
        return None
    if not isinstance(config, dict) or not isinstance(config.get("LocalPath", ""), str):
        raise UserError(f"{paths.checkpoint_config_file}: expected a JSON object with a string 'LocalPath'; got "
                        f"{json.dumps(config)[:200]}")
    directory = paths.checkpoint_dir(config.get("LocalPath"))
    logger.info("checkpoints: %s (CheckpointConfig.LocalPath %s); finished units of work there are reused",
                directory, config.get("LocalPath") or "default")
    return directory


def write_reports(paths: SageMakerPaths, model, validation: pd.DataFrame | None, params: dict) -> None:
    """metrics.json, the leaderboards and the confusion matrix in ``output/data``; the metric lines on stdout."""
    from multimodal.classifier import evaluation

    report = {"stacking": params["stacking"], "train": model.training_report_,
              "skipped_members": model.training_summary_.get("skipped_members", []),
              "timings": model.training_summary_.get("timings", {})}
    lines = []
    for name, metrics in model.training_report_["members"].items():
        lines += metric_lines(f"train:{name}", metrics)
    codes = proba = None
    if validation is not None:
        try:
            scored, codes, proba = evaluation.evaluate(model.learner_, validation, rows_name="validation")
            report["validation"] = {"source": "validation channel", **scored}
            title = f"validation channel ({len(codes)} rows)"
        except Exception as error:  # noqa: BLE001 - the training part of the report is still worth writing
            logger.error("the validation report failed (%s: %s); metrics.json has the training part only",
                         type(error).__name__, error, exc_info=True)
            report["validation_error"] = f"{type(error).__name__}: {error}"
    elif model.fusion_holdout_ is not None:
        report["validation"] = {"source": "fusion network hold-out split of the training rows",
                                "blend": model.training_report_["blend_holdout"]}
        codes, proba = model.fusion_holdout_
        title = f"fusion hold-out split of the training rows ({len(codes)} rows)"
    if "validation" in report:
        lines += metric_lines("validation", report["validation"]["blend"])
        for name, metrics in report["validation"].get("members", {}).items():
            lines += metric_lines(f"validation:{name}", metrics)

    paths.output_data_dir.mkdir(parents=True, exist_ok=True)
    (paths.output_data_dir / "metrics.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    leaderboards = paths.output_data_dir / "leaderboards"
    leaderboards.mkdir(exist_ok=True)
    for member in model.members_:
        if member.leaderboard is not None:
            member.leaderboard.to_csv(leaderboards / (member.name.replace("/", "__") + ".csv"), index=False)
    if codes is not None:
        write_confusion_matrix(paths.output_data_dir / "confusion_matrix.png", codes, proba, model.classes_, title)
    for line in lines:
        print(line, flush=True)


def write_failure(paths: SageMakerPaths, error: BaseException, details: str) -> None:
    """``output/failure``: a first line that says what to fix (under 1024 characters), then details."""
    headline = f"{type(error).__name__}: {error}".replace("\n", " ")
    if len(headline) > 1000:
        headline = headline[:997] + "..."
    try:
        paths.output_dir.mkdir(parents=True, exist_ok=True)
        temporary = paths.failure_file.with_suffix(".tmp")
        temporary.write_text(headline + "\n\n" + details, encoding="utf-8")
        os.replace(temporary, paths.failure_file)
    except OSError as io_error:
        raise PlatformError(f"cannot write {paths.failure_file}", caused_by=io_error) from io_error
