"""Label mapping (original values to 0..n-1) and the per-modality sentinel labels."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pandas as pd

from multimodal.errors import UserError
from multimodal.classifier.features import describe_row

logger = logging.getLogger(__name__)

RARE_CLASS_ROWS = 10  # AutoGluon drops the rows of rarer classes from a multiclass fit (label_count_threshold)
# An integer spelled the one way Python writes it back: "007", "+7", "-0" and "7.0" are not, so they stay text
# and come back spelled as in training.
_CANONICAL_INTEGER = re.compile(r"^(0|-?[1-9][0-9]*)$")


def integer_labels(columns: Iterable[pd.Series]) -> bool:
    """True when every non-empty label cell of every column (text, as read from CSV) is an integer spelled as
    Python writes it: then the labels are integers, else text. One rule over all channels of a job."""
    found = False
    for labels in columns:
        text = _label_text(labels)
        present = text[text != ""]
        if len(present) and not present.str.match(_CANONICAL_INTEGER).all():
            return False
        found = found or len(present) > 0
    return found


def _label_text(labels: pd.Series) -> pd.Series:
    return labels.where(labels.notna(), "").astype(str).str.strip()


def label_values(labels: pd.Series, as_integers: bool | None = None) -> pd.Series:
    """Label cells (text) as values: integers when ``as_integers`` (default: ``integer_labels([labels])``),
    else the stripped text; an empty cell is missing (None)."""
    text = _label_text(labels)
    if as_integers is None:
        as_integers = integer_labels([labels])
    if as_integers:
        return pd.Series([int(v) if v else None for v in text], index=labels.index, dtype=object, name=labels.name)
    return text.where(text != "", None).astype(object).rename(labels.name)


def to_json_value(value):
    """Turn a numpy or pandas scalar label into the plain Python value JSON can hold."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def label_key(value):
    """A dictionary key that keeps label types apart: ``True`` and ``1``, ``1`` and ``1.0`` are different
    classes (Python alone would treat each pair as one key)."""
    value = to_json_value(value)
    return (type(value).__name__, value)


@dataclass(frozen=True)
class LabelMap:
    """The classes, in index order: class ``i`` of every probability matrix is ``classes[i]``."""

    classes: tuple

    @property
    def n_classes(self) -> int:
        """How many classes the target has (the sentinel label, when used, is this number)."""
        return len(self.classes)

    @classmethod
    def fit(cls, labels: pd.Series) -> "LabelMap":
        """Learn the classes of a label column that has no missing values; at least two are required."""
        distinct = {}
        for value in labels:
            distinct.setdefault(label_key(value), to_json_value(value))
        values = list(distinct.values())
        if len(values) < 2:
            raise UserError(
                f"the '{labels.name}' column has {len(values)} distinct value(s) {values[:5]}; "
                "classification needs at least 2 classes."
            )
        try:
            ordered = sorted(values, key=label_key)
        except TypeError:
            ordered = sorted(values, key=lambda v: (type(v).__name__, str(v)))
        return cls(tuple(ordered))

    def encode(self, labels: pd.Series) -> np.ndarray:
        """Map original label values to integers 0..n-1."""
        index = {label_key(value): i for i, value in enumerate(self.classes)}
        try:
            return np.fromiter((index[label_key(v)] for v in labels), dtype=np.int64, count=len(labels))
        except KeyError as error:
            raise UserError(f"unknown label value {error.args[0][1]!r}; known classes: {list(self.classes)}") from None


    def decode(self, codes: np.ndarray, index=None) -> pd.Series:
        """Map integers 0..n-1 back to the original label values, keeping their type."""
        values = np.asarray(self.classes, dtype=object)[np.asarray(codes, dtype=np.int64)]
        series = pd.Series(list(values), index=index, name="label")
        return series.infer_objects()

    def to_list(self) -> list:
        """The classes as a JSON list."""
        return list(self.classes)


def unseen_labels(known: Iterable, labels: Iterable) -> list:
    """The distinct values of ``labels`` that are not among ``known`` (types kept apart; missing values aside)."""
    keys = {label_key(value) for value in known}
    found = {}
    for value in labels:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        key = label_key(value)
        if key not in keys:
            found.setdefault(key, to_json_value(value))
    return list(found.values())


def drop_missing_labels(frame: pd.DataFrame, label_column: str, allow_empty: bool = False) -> pd.DataFrame:
    """Drop rows whose label is missing or empty, with one warning that counts them; ``UserError`` when no row
    is left, unless ``allow_empty`` (one shard of a table)."""
    labels = frame[label_column]
    missing = labels.isna() | labels.astype(str).str.strip().eq("")
    count = int(missing.sum())
    if count:
        logger.warning(
            "dropping %d of %d training rows whose '%s' is empty or missing (first: %s)",
            count, len(frame), label_column, describe_row(frame, int(np.flatnonzero(missing.to_numpy())[0])),
        )
        frame = frame.loc[~missing.to_numpy()]
    if len(frame) == 0 and not allow_empty:
        raise UserError(f"no training rows have a value in the '{label_column}' column.")
    return frame


def sentinel_labels(codes: np.ndarray, missing_fraction: np.ndarray, threshold: float, n_classes: int) -> np.ndarray:
    """Copy of ``codes`` where rows with too little information for a modality get the label ``n_classes``.

    A row carries too little information when the fraction of the modality's columns missing in it
    is at least ``threshold`` (1.0: every column missing).
    """
    labels = np.asarray(codes, dtype=np.int64).copy()
    labels[np.asarray(missing_fraction) >= threshold - 1e-12] = n_classes
    return labels
