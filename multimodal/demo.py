"""The demo job: train on the bundled dataset, predict its held-back rows, report accuracy."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from multimodal.csv_input import read_training_csv
from multimodal.schema import LABEL_COLUMN

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "demo"


@dataclass
class DemoResult:
    """What the demo measured."""

    model_dir: Path
    predictions_path: Path
    accuracy: float
    balanced_accuracy: float
    test_rows: int
    fit_seconds: float
    predict_seconds: float


def run_demo(output_dir: Path, train_csv: Path = DATA_DIR / "train.csv", test_csv: Path = DATA_DIR / "test.csv",
             **hyperparameters) -> DemoResult:
    """Fit on ``train_csv``, save the model, predict ``test_csv`` without its labels and score it."""
    from multimodal.model import MultimodalClassifier

    train = read_training_csv([train_csv])
    test = read_training_csv([test_csv])
    truth = test[LABEL_COLUMN]
    classifier = MultimodalClassifier(**hyperparameters)
    started = time.monotonic()
    classifier.fit(train)
    fit_seconds = time.monotonic() - started
    model_dir = classifier.save(output_dir / "model")
    started = time.monotonic()
    proba = classifier.predict_proba(test.drop(columns=[LABEL_COLUMN]))
    predicted = classifier.predict_from_proba(proba)
    predict_seconds = time.monotonic() - started
    correct = (predicted.to_numpy() == truth.to_numpy())
    recalls = [correct[(truth == c).to_numpy()].mean() for c in classifier.classes_ if (truth == c).any()]
    predictions_path = output_dir / "predictions.csv"
    out = proba.add_prefix("p_")
    out.insert(0, "predicted", predicted)
    out.insert(0, "label", truth)
    out.insert(0, "ID", test["ID"]) if "ID" in test.columns else None
    out.to_csv(predictions_path, index=False)
    return DemoResult(model_dir, predictions_path, float(correct.mean()), float(np.mean(recalls)), len(test),
                      fit_seconds, predict_seconds)
