"""Which modality carries the prediction: permutation importance of each modality for the fusion network.

Shuffling one modality across rows breaks its link to the label while keeping its distribution; the fusion
network's loss of accuracy and gain in log loss measure how much the prediction relies on it. A modality's
shuffle moves its own block of fusion inputs (all its columns together, so each row stays a valid
probability vector) and, where a joint member also reads that modality's columns, that member's
probabilities recomputed from the shuffled columns.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from multimodal.classifier.metrics import classification_metrics

Shuffler = Callable[[np.ndarray], np.ndarray]  # row permutation -> fusion inputs with one modality shuffled


def block_shuffler(inputs: np.ndarray, columns: slice) -> Shuffler:
    """The fusion inputs with the rows of ``columns`` (one modality's block) taken in a given order."""
    def shuffled(permutation: np.ndarray) -> np.ndarray:
        result = inputs.copy()
        result[:, columns] = inputs[permutation][:, columns]
        return result

    return shuffled


def modality_importance(predict_proba: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray, codes: np.ndarray,
                        shufflers: list[tuple[str, Shuffler]], repeats: int = 5, seed: int = 0) -> dict[str, dict]:
    """For each (name, shuffler): the mean increase in log loss and drop in accuracy over ``repeats`` random
    row orders, with their standard deviations; ``{}`` for fewer than 2 rows."""
    codes = np.asarray(codes)
    if len(codes) < 2:
        return {}
    base = classification_metrics(codes, predict_proba(inputs))
    random = np.random.default_rng(seed)
    result = {}
    for name, shuffled in shufflers:
        losses, drops = [], []
        for _ in range(repeats):
            scored = classification_metrics(codes, predict_proba(shuffled(random.permutation(len(codes)))))
            losses.append(scored["log_loss"] - base["log_loss"])
            drops.append(base["accuracy"] - scored["accuracy"])
        result[name] = {"log_loss_increase": float(np.mean(losses)), "log_loss_increase_std": float(np.std(losses)),
                        "accuracy_drop": float(np.mean(drops)), "accuracy_drop_std": float(np.std(drops)),
                        "rows": int(len(codes)), "repeats": int(repeats)}
    return result


def describe_importance(importance: dict[str, dict]) -> str:
    """One line, largest contribution first: ``name +0.210 log loss / -12.0 pt accuracy, ...``."""
    ordered = sorted(importance.items(), key=lambda item: -item[1]["log_loss_increase"])
    return ", ".join(f"{name} {values['log_loss_increase']:+.3f} log loss / {-100 * values['accuracy_drop']:+.1f} pt "
                     "accuracy" for name, values in ordered)
