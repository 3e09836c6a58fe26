"""The column contract: which columns are the label, the row ID and the features of each modality."""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from multimodal.errors import UserError

logger = logging.getLogger(__name__)

LABEL_COLUMN = "label"
ID_COLUMN = "ID"

TEXT = "text"
NUMERIC = "num"
CATEGORICAL = "cat"
IMAGE = "image"
SUFFIXES = {f"_{TEXT}": TEXT, f"_{NUMERIC}": NUMERIC, f"_{CATEGORICAL}": CATEGORICAL, f"_{IMAGE}": IMAGE}


def column_role(name: str) -> str | None:
    """Return the modality of a feature column from its suffix, or None for a non-feature column."""
    for suffix, role in SUFFIXES.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            return role
    return None


def find_duplicates(names: Iterable[str]) -> list[str]:
    """Return the column names that occur more than once, in first-seen order."""
    counts = Counter(names)
    return [name for name, count in counts.items() if count > 1]


@dataclass(frozen=True)
class Schema:
    """The columns of a training table, in file order, and the role of each.

    ``columns`` is the full training header (label included); inference rows without a header
    arrive in this order minus ``label``.
    """

    columns: tuple[str, ...]
    text: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    image: tuple[str, ...] = ()
    has_id: bool = False
    ignored: tuple[str, ...] = field(default=())

    @property
    def feature_columns(self) -> tuple[str, ...]:
        """Every feature column, in file order."""
        roles = set(self.text + self.numeric + self.categorical + self.image)
        return tuple(c for c in self.columns if c in roles)

    @property
    def inference_columns(self) -> tuple[str, ...]:
        """The column order of inference rows: the training header without ``label``."""
        return tuple(c for c in self.columns if c != LABEL_COLUMN)

    def to_dict(self) -> dict:
        """A JSON-ready description of the schema."""
        return {
            "columns": list(self.columns),
            "text": list(self.text),
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "image": list(self.image),
            "has_id": self.has_id,
            "ignored": list(self.ignored),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Schema":
        """Rebuild a schema written by ``to_dict``."""
        return cls(
            columns=tuple(data["columns"]),
            text=tuple(data["text"]),
            numeric=tuple(data["numeric"]),
            categorical=tuple(data["categorical"]),
            image=tuple(data["image"]),
            has_id=bool(data["has_id"]),
            ignored=tuple(data.get("ignored", ())),
        )


def infer_schema(columns: Iterable[str], source: str = "the training data", warn: bool = True) -> Schema:
    """Split a training header into label, ID and feature columns by suffix.

    Raises ``UserError`` for duplicate names, a missing ``label`` column or no feature column.
    Any other column is ignored, with one warning that lists them all (unless ``warn`` is False).
    """
    columns = tuple(str(c) for c in columns)
    duplicates = find_duplicates(columns)
    if duplicates:
        raise UserError(f"{source}: duplicate column names {duplicates}; every column name must be unique.")
    if LABEL_COLUMN not in columns:
        raise UserError(
            f"{source}: no '{LABEL_COLUMN}' column; the header is {list(columns)[:20]}. "
            f"Name the target column '{LABEL_COLUMN}'."
        )
    by_role: dict[str, list[str]] = {TEXT: [], NUMERIC: [], CATEGORICAL: [], IMAGE: []}
    ignored = []
    for name in columns:
        if name in (LABEL_COLUMN, ID_COLUMN):
            continue
        role = column_role(name)
        if role is None:
            ignored.append(name)
        else:
            by_role[role].append(name)
    if not any(by_role.values()):
        raise UserError(
            f"{source}: no feature columns; name features with a suffix _text, _num, _cat or _image "
            f"(columns seen: {list(columns)[:20]})."
        )
    if ignored and warn:
        logger.warning(
            "%s: ignoring %d column(s) without a feature suffix (_text, _num, _cat, _image): %s",
            source, len(ignored), ignored,
        )
    return Schema(
        columns=columns,
        text=tuple(by_role[TEXT]),
        numeric=tuple(by_role[NUMERIC]),
        categorical=tuple(by_role[CATEGORICAL]),
        image=tuple(by_role[IMAGE]),
        has_id=ID_COLUMN in columns,
        ignored=tuple(ignored),
    )
