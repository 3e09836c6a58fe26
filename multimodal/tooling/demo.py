"""The demo: the algorithm run the way users run it, on the bundled dataset.

1. ``validate``: the training CSV and the batch-transform input checked against the contract;
2. ``local-train``: a training job on a local /opt/ml tree, packed into model.tar.gz and output.tar.gz;
3. ``local-transform``: a batch transform (Line split, MultiRecord) of the held-back rows, sent without
   header and label as SageMaker sends them, against ``serve``;
then the predictions are joined back to the held-back labels and scored.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from multimodal.tooling.dataset_check import DatasetReport, validate_dataset
from multimodal.errors import AlgorithmError, UserError
from multimodal.tooling.local_job import LocalTrainingResult, run_local_training
from multimodal.classifier.schema import ID_COLUMN, LABEL_COLUMN
from multimodal.tooling.transform import TransformResult, run_local_transform

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "demo"


@dataclass
class DemoResult:
    """Where everything went, and what the demo measured."""

    validation: DatasetReport
    training: LocalTrainingResult
    transform: TransformResult
    predictions_path: Path
    accuracy: float
    balanced_accuracy: float
    test_rows: int


def transform_input(test_csv: Path, target: Path) -> tuple[list, list]:
    """Write ``test_csv``'s rows without header and without ``label`` (a batch-transform input file);
    returns the rows' IDs (None without an ID column) and labels."""
    with open(test_csv, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [cell.strip() for cell in next(reader)]
        rows = [row for row in reader if any(cell.strip() for cell in row)]
    if LABEL_COLUMN not in header:
        raise UserError(f"{test_csv}: no '{LABEL_COLUMN}' column to score the predictions against.")
    label_at = header.index(LABEL_COLUMN)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows([c for i, c in enumerate(row) if i != label_at]
                                                          for row in rows)
    ids = [row[header.index(ID_COLUMN)] for row in rows] if ID_COLUMN in header else [None] * len(rows)
    return ids, [row[label_at].strip() for row in rows]


def run_demo(output_dir: Path, train_csv: Path = DATA_DIR / "train.csv", test_csv: Path = DATA_DIR / "test.csv",
             hyperparameters: dict[str, str] | None = None, training_image: str | None = None,
             inference_image: str | None = None) -> DemoResult:
    """Validate, train and batch-transform as SageMaker would, under ``output_dir``; score the predictions."""
    output_dir = Path(output_dir)
    input_file = output_dir / "transform-input" / Path(test_csv).name
    ids, truth = transform_input(Path(test_csv), input_file)

    report = validate_dataset(Path(train_csv), input_file)
    print(report.render(), flush=True)
    if not report.ok:
        raise UserError(f"the dataset fails validation: {report.errors[0].subject}: {report.errors[0].message}")

    training = run_local_training(output_dir / "training", Path(train_csv), hyperparameters=hyperparameters or {},
                                  image=training_image, job_name="multimodal-demo")
    if training.status != "Completed":
        raise AlgorithmError(f"the training job failed: {training.failure_reason.splitlines()[0]} "
                             f"(log: {training.log_path})")

    transform = run_local_transform(training.model_artifact, input_file.parent, output_dir / "transform-output",
                                    image=inference_image)
    if transform.failures:
        name, reason = next(iter(transform.failures.items()))
        raise AlgorithmError(f"the batch transform failed on {name}: {reason}")
    predicted = _predicted_labels(transform.outputs[0], with_id=ids[0] is not None)
    if len(predicted) != len(truth):
        raise AlgorithmError(f"{len(truth)} records sent, {len(predicted)} predictions received.")

    predictions_path = output_dir / "predictions.csv"
    with open(predictions_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([ID_COLUMN, LABEL_COLUMN, "predicted"])
        writer.writerows(zip(ids, truth, predicted))
    truth_array, predicted_array = np.asarray(truth, dtype=object), np.asarray(predicted, dtype=object)
    correct = truth_array == predicted_array
    recalls = [correct[truth_array == c].mean() for c in sorted(set(truth))]
    return DemoResult(report, training, transform, predictions_path, float(correct.mean()),
                      float(np.mean(recalls)), len(truth))


def _predicted_labels(path: Path, with_id: bool) -> list[str]:
    """The label field of each CSV result line (``ID,label[,probabilities]`` or ``label[,...]``)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [row[1 if with_id else 0].strip() for row in csv.reader(handle) if row]

