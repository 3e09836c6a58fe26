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
from multimodal.sagemaker.augmented_manifest import parse_attribute_names
from multimodal.sagemaker.channels import (
    JOB_SPEC_PATH, channels_on_disk, image_folder, is_sharded, read_channels, validate_input_data_config,
)
from multimodal.classifier.budget import TimeBudget
from multimodal.errors import PlatformError, UserError
from multimodal.classifier.metrics import metric_lines
from multimodal.classifier.model_config import FILE_NAME as MODEL_CONFIG_FILE
from multimodal.sagemaker.hosts import JobHosts
from multimodal.sagemaker.paths import SageMakerPaths

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


def read_hyperparameters(paths: SageMakerPaths) -> tuple[dict, dict]:
    """The typed hyperparameters from ``hyperparameters.json`` (reserved SageMaker keys dropped): the classifier's
    and the job's own (``job_hyperparameters.json``: how to read the channels)."""
    raw = read_json(paths.hyperparameters_file, {})
    if not isinstance(raw, dict):
        raise UserError("hyperparameters.json must hold a JSON object of name: value.")
    own = {k: v for k, v in raw.items() if not k.startswith(RESERVED_PREFIXES)}
    declared = hp.load_specification(JOB_SPEC_PATH)
    job = {h.name: h.parse(own.pop(h.name, h.default)) for h in declared}
    return hp.validate(own, also_valid=tuple(h.name for h in declared)), job


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


def write_attribution_chart(path: Path, attribution: dict, importance: dict, title: str) -> None:
    """A PNG of each modality's mean absolute attribution (exact Shapley values of the predicted label's
    probability) beside its permutation importance (log-loss increase when shuffled)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name in attribution if name != "baseline"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 1.2 + 0.45 * len(names)), sharey=True)
    left.barh(names, [attribution[name]["mean_abs"] for name in names], color="tab:blue")
    left.set_xlabel("mean |attribution| (probability)")
    right.barh(names, [importance.get(name, {}).get("log_loss_increase", 0.0) for name in names], color="tab:orange")
    right.set_xlabel("log-loss increase when shuffled")
    left.invert_yaxis()
    figure.suptitle(textwrap.fill(f"modalities on the {title}", 90), fontsize="medium")
    figure.tight_layout()
    figure.savefig(path, dpi=100, bbox_inches="tight", pad_inches=0.1)
    plt.close(figure)


def run_training(paths: SageMakerPaths) -> None:
    """Run one training job against the /opt/ml layout of ``paths``.

    The time budget counts from here. The model is saved before the reports are computed: a failure while
    reporting is logged and never throws the finished model away.
    """
    from multimodal.classifier.estimator import MultimodalClassifier
    from multimodal.sagemaker import environment

    started = time.monotonic()
    params, job_params = read_hyperparameters(paths)
    config = read_json(paths.input_data_config_file, None)
    if config is None:
        config = channels_on_disk(paths)
        logger.info("no inputdataconfig.json: using the channel directories present (%s)", sorted(config))
    hosts = JobHosts.read(paths)
    channels = validate_input_data_config(config, hosts=hosts.count,
                                          attribute_names=parse_attribute_names(job_params["attribute_names"]))
    if not hosts.is_leader:
        from multimodal.sagemaker.distributed.worker import run_worker

        logger.info("host %s of %s: the leader %s trains; this host works for it", hosts.current, list(hosts.hosts),
                    hosts.leader)
        run_worker(hosts)
        return
    logger.info("hyperparameters: %s", json.dumps({**params, **{k: v for k, v in job_params.items() if v}},
                                                  sort_keys=True))
    budget = TimeBudget(hp.time_budget_seconds(params), started)
    executor = None
    if hosts.count > 1:
        from multimodal.sagemaker.distributed.cluster import ClusterExecutor, join_seconds

        embedding = {"weights": environment.image_weights(), "precision": environment.image_precision(),
                     "batch_size": params["image_batch_size"]}
        executor = ClusterExecutor.start(hosts, channels, join_seconds(budget.seconds), embedding)
    outcome = "failed: the leader stopped"
    try:
        _train_and_save(paths, params, channels, budget, executor)
        outcome = "done"
    except BaseException as error:
        outcome = f"failed: {type(error).__name__}: {error}"[:1000]
        raise
    finally:
        if executor is not None:
            executor.finish(outcome)
    logger.info("training job done in %.1f s (budget %.0f s): model in %s, reports in %s", time.monotonic() - started,
                budget.seconds, paths.model_dir, paths.output_data_dir)


def _train_and_save(paths: SageMakerPaths, params: dict, channels: dict, budget: TimeBudget, executor) -> None:
    """Read the channels, fit (at the executor's places), save the model, write the reports, clear the
    checkpoints."""
    from multimodal.classifier.estimator import MultimodalClassifier
    from multimodal.sagemaker import environment

    checkpoints = checkpoint_dir(paths)
    gather = executor.gather_training_shards if executor is not None and is_sharded(channels["train"]) else None
    train, validation = read_channels(paths, channels, gather)

    # The table is handed over (no reference kept here), so fit can free the base64 images once embedded.
    tables = {"train": train}
    del train
    model = MultimodalClassifier(**params, image_weights=environment.image_weights(),
                                 image_precision=environment.image_precision())
    model.fit(tables.pop("train"), time_budget=budget, checkpoint_dir=checkpoints, executor=executor,
              image_folder=image_folder(paths, "train", channels["train"]))
    if executor is not None:
        executor.check_hosts()   # a host lost between units fails the job: no model then
        model.training_summary_["distributed"] = executor.describe()

    paths.model_dir.mkdir(parents=True, exist_ok=True)
    clear_directory(paths.model_dir)
    model.save(paths.model_dir)
    try:
        write_reports(paths, model, validation, params,
                      image_folder(paths, "validation", channels["validation"]) if validation is not None else None)
    except Exception as error:  # noqa: BLE001 - the model is saved; a report failure must not lose it
        logger.error("the model is saved, but the training report failed (%s: %s); metrics.json may be "
                     "incomplete", type(error).__name__, error, exc_info=True)
    if checkpoints is not None and checkpoints.is_dir():
        # The model directory now holds what the units held: a finished job needs no second copy (SageMaker
        # deletes in S3 what is deleted here).
        clear_directory(checkpoints)
        logger.info("checkpoints: cleared %s (the model is saved)", checkpoints)


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


def write_reports(paths: SageMakerPaths, model, validation: pd.DataFrame | None, params: dict,
                  validation_images=None) -> None:
    """metrics.json, the leaderboards and the confusion matrix in ``output/data``; the metric lines on stdout
    (``validation_images``: the ``ImageFolder`` the validation channel's image paths are relative to)."""
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
            scored, codes, proba = evaluation.evaluate(model.learner_, validation, rows_name="validation",
                                                       image_folder=validation_images)
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
    attribution = report.get("validation", {}).get("modality_attribution")
    if attribution:
        write_attribution_chart(paths.output_data_dir / "modality_attribution.png", attribution,
                                report["validation"].get("modality_importance", {}), title)
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
