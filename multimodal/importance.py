"""Which modality carries the prediction: permutation importance of each modality's block of fusion inputs.

Shuffling one modality's probabilities across rows (all its columns together, so the block stays a valid
probability vector per row) breaks its link to the label while keeping its distribution; the fusion
network's loss of accuracy and gain in log loss measure how much the prediction relies on it.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from multimodal.metrics import classification_metrics


def modality_importance(predict_proba: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray, codes: np.ndarray,
                        blocks: list[tuple[str, slice]], repeats: int = 5, seed: int = 0) -> dict[str, dict]:
    """For each (name, columns) block: the mean increase in log loss and drop in accuracy over ``repeats``
    shuffles of that block's rows, with their standard deviations; ``{}`` for fewer than 2 rows."""
    codes = np.asarray(codes)
    if len(codes) < 2:
        return {}
    base = classification_metrics(codes, predict_proba(inputs))
    random = np.random.default_rng(seed)
    result = {}
    for name, columns in blocks:
        losses, drops = [], []
        for _ in range(repeats):
            shuffled = inputs.copy()
            shuffled[:, columns] = inputs[random.permutation(len(inputs))][:, columns]
            scored = classification_metrics(codes, predict_proba(shuffled))
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
