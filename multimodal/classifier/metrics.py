"""Classification metrics, for the training report, ``metrics.json`` and SageMaker metric lines."""
from __future__ import annotations

import numpy as np

METRIC_NAMES = ("accuracy", "balanced_accuracy", "macro_f1", "log_loss")


def classification_metrics(codes: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro F1 and log loss of class probabilities against integer labels.

    ``proba`` has one column per class (0..k-1); rows are renormalised, so a slice of a wider
    probability matrix (a modality's classes without its sentinel column) can be scored too.
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, log_loss

    codes = np.asarray(codes)
    if len(codes) == 0:
        return {}
    proba = np.clip(np.asarray(proba, dtype=np.float64), 1e-15, None)
    proba = proba / proba.sum(axis=1, keepdims=True)
    labels = np.arange(proba.shape[1])
    predicted = proba.argmax(axis=1)
    return {
        "accuracy": float(accuracy_score(codes, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(codes, predicted)),
        "macro_f1": float(f1_score(codes, predicted, labels=labels, average="macro", zero_division=0)),
        "log_loss": float(log_loss(codes, proba, labels=labels)),
        "rows": int(len(codes)),
    }


def metric_lines(prefix: str, metrics: dict[str, float]) -> list[str]:
    """``prefix:name=value;`` lines that SageMaker MetricDefinitions regexes capture."""
    return [f"{prefix}:{name}={metrics[name]:.6f};" for name in METRIC_NAMES if name in metrics]
