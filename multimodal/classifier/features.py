"""Imputation and the split of a table into per-modality feature frames.

Missing values become "" (text), 0 (numeric, not the mean), "unknown" (categorical); a missing
image stays an empty string here and becomes the black-square embedding in ``images``.
The fraction of missing columns per row and modality feeds the sentinel labels.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from multimodal.errors import UserError
from multimodal.classifier.image_files import ImageFolder
from multimodal.classifier.schema import ID_COLUMN, Schema

logger = logging.getLogger(__name__)

MISSING_CATEGORY = "unknown"
# Longer text cells are cut to this many characters: AutoGluon's n-gram features gain
# nothing from more, and one 50 MB cell would otherwise cost gigabytes of vocabulary.
MAX_TEXT_CHARS = 100_000
# Spellings of "no value" accepted in numeric columns (case-insensitive); text keeps them as text.
NUMERIC_MISSING_TOKENS = frozenset({"", "nan", "na", "n/a", "null", "none", "?"})   # "?": UCI and ARFF data


class BadValueError(UserError):
    """A cell that cannot be used; carries the column and the row position for callers that know lines."""

    def __init__(self, column: str, position: int, value, problem: str, row_description: str):
        self.column = column
        self.position = position
        self.value = value
        self.problem = problem
        shown = str(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        super().__init__(f"{row_description}, column '{column}': {shown!r} {problem}")


def describe_row(frame: pd.DataFrame, position: int) -> str:
    """Name a row for a message: its position, and its ID when the table has one."""
    text = f"row {position + 1}"
    if ID_COLUMN in frame.columns:
        text += f" (ID={frame[ID_COLUMN].iloc[position]!r})"
    return text


def is_missing(series: pd.Series) -> np.ndarray:
    """True where a cell is NaN/None or a blank string."""
    missing = series.isna().to_numpy()
    if series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
        blank = series.astype(str).str.strip().eq("").to_numpy()
        missing = missing | blank
    return missing


# Chinese and Japanese are written without spaces: AutoGluon's n-gram features (words of two or more letters
# between word boundaries) would see each sentence as one rare word and find no feature at all ("No valid
# features"). Runs of such characters become overlapping character bigrams, the usual tokens for these scripts.
_UNSPACED_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]{2,}")


def _bigrams(match: re.Match) -> str:
    run = match.group(0)
    return " " + " ".join(run[i:i + 2] for i in range(len(run) - 1)) + " "


def clean_text(value) -> str:
    """One text cell as the text member reads it: as written (spacing, line breaks, HTML entities and tags
    carry signal that AutoGluon's text features count, such as which client wrote a tweet), with Chinese and
    Japanese character runs written as overlapping character bigrams and the ends stripped; a missing cell
    becomes ""."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    text = str(value)
    if not text.isascii():
        text = _UNSPACED_RUN.sub(_bigrams, text)
    return text.strip()


_PLAIN_NUMBER = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$")
_INTEGER_TEXT = re.compile(r"^[+-]?[0-9]+$")
_LEADING_ZERO = re.compile(r"^[+-]?0[0-9]")   # "007", "01234": identifiers, kept as written
_BOOLEANS = {"true": "True", "false": "False"}


def _number_category(number: float) -> str:
    if not np.isfinite(number):
        return repr(number)
    if number.is_integer() and abs(number) < 2**53:
        return str(int(number))
    return repr(number)


def category_text(value) -> str:
    """One categorical cell as text, by one rule for CSV text, JSON numbers and Python values: a number is
    written the shortest way, so the CSV text "12.0", "12" and "+12", the JSON numbers 12.0 and 12 are one
    category, as are "12.50" and 12.5; numbers with leading zeros ("007") are identifiers and stay as written;
    ``true``/``false`` in any case are the JSON booleans; missing (None, NaN, NA, blank) is ``MISSING_CATEGORY``."""
    if value is None or value is pd.NA or value is pd.NaT:
        return MISSING_CATEGORY
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return MISSING_CATEGORY if np.isnan(value) else _number_category(float(value))
    text = str(value).strip()
    if not text:
        return MISSING_CATEGORY
    if text.lower() in _BOOLEANS:
        return _BOOLEANS[text.lower()]
    if _PLAIN_NUMBER.match(text) and not _LEADING_ZERO.match(text):
        if _INTEGER_TEXT.match(text):
            return str(int(text))
        return _number_category(float(text))
    return text


def parse_numeric(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse a ``_num`` column to float64 with 0 for missing cells; returns (values, missing mask).

    Raises ``BadValueError`` naming the row and the value for anything that is not a finite number.
    """
    series = frame[column]
    if pd.api.types.is_bool_dtype(series.dtype):
        values = series.astype(np.float64).to_numpy()
        missing = np.zeros(len(series), dtype=bool)
    elif pd.api.types.is_numeric_dtype(series.dtype):
        values = series.astype(np.float64).to_numpy(copy=True)
        missing = np.isnan(values)
    else:
        text = series.astype(object).where(series.notna(), "").astype(str).str.strip()
        missing = text.str.lower().isin(NUMERIC_MISSING_TOKENS).to_numpy()
        values = pd.to_numeric(text.where(~missing, "nan"), errors="coerce").to_numpy(dtype=np.float64, copy=True)
        bad = np.flatnonzero(np.isnan(values) & ~missing)
        if len(bad):
            position = int(bad[0])
            problem = (f"is not a number (use '.' for decimals, no thousands separators; "
                       f"{len(bad)} bad cell(s) in this column)")
            if _overflows(text.iloc[position]):
                problem = "is not a finite number"
            raise BadValueError(column, position, text.iloc[position], problem, describe_row(frame, position))
    infinite = np.flatnonzero(np.isinf(values))
    if len(infinite):
        position = int(infinite[0])
        raise BadValueError(column, position, series.iloc[position], "is not a finite number",
                            describe_row(frame, position))
    values[missing] = 0.0
    return values, missing


def _overflows(text: str) -> bool:
    try:
        return not np.isfinite(float(text))
    except ValueError:
        return False


def _bounded_text(frame: pd.DataFrame, column: str) -> list[str]:
    cleaned = [clean_text(v) for v in frame[column].to_numpy()]
    long_rows = [i for i, text in enumerate(cleaned) if len(text) > MAX_TEXT_CHARS]
    if long_rows:
        logger.warning("column '%s': %d text cell(s) longer than %d characters cut to that length (first: %s); "
                       "the text model uses no more", column, len(long_rows), MAX_TEXT_CHARS,
                       describe_row(frame, long_rows[0]))
        for i in long_rows:
            cleaned[i] = cleaned[i][:MAX_TEXT_CHARS]
    return cleaned


@dataclass
class ModalityFrames:
    """The imputed features of one table, per modality, with each row's missing fraction."""

    text: pd.DataFrame | None
    numeric: pd.DataFrame | None
    categorical: pd.DataFrame | None
    images: dict[str, pd.Series]
    missing_fraction: dict[str, np.ndarray]
    image_folder: "ImageFolder | None" = None   # where image cells that are paths are read (image_files)

    def tabular(self) -> list[tuple[str, pd.DataFrame]]:
        """The non-image modalities present, as (kind, frame): ``text``, ``num``, ``cat`` in that order."""
        frames = (("text", self.text), ("num", self.numeric), ("cat", self.categorical))
        return [(kind, frame) for kind, frame in frames if frame is not None]

    def modality(self, kind: str) -> pd.DataFrame | None:
        """The frame of one non-image modality: ``text``, ``num`` or ``cat``."""
        return {"text": self.text, "num": self.numeric, "cat": self.categorical}[kind]

    def joint_tabular(self) -> tuple[pd.DataFrame, np.ndarray] | None:
        """All non-image columns side by side and each row's missing fraction over them (weighted by column
        count), or None when fewer than two non-image modalities are present."""
        present = self.tabular()
        if len(present) < 2:
            return None
        frame = pd.concat([frame for _, frame in present], axis=1)
        missing = sum(self.missing_fraction[kind] * part.shape[1] for kind, part in present) / frame.shape[1]
        return frame, missing


def check_feature_columns(frame: pd.DataFrame, schema: Schema) -> None:
    """Raise ``UserError`` when a feature column of the schema is absent from the frame."""
    absent = [c for c in schema.feature_columns if c not in frame.columns]
    if absent:
        raise UserError(f"the data lacks feature column(s) {absent} that the model was trained with.")


def split_modalities(frame: pd.DataFrame, schema: Schema, image_folder: "ImageFolder | None" = None) -> ModalityFrames:
    """Impute and split ``frame`` into text, numeric, categorical and per-image-column inputs; image cells that
    are paths are read from ``image_folder`` when the images are embedded."""
    check_feature_columns(frame, schema)
    index = pd.RangeIndex(len(frame))
    missing_fraction: dict[str, np.ndarray] = {}

    text = None
    if schema.text:
        text = pd.DataFrame({c: _bounded_text(frame, c) for c in schema.text}, index=index)
        missing_fraction["text"] = (text == "").to_numpy().mean(axis=1)

    numeric = None
    if schema.numeric:
        columns, masks = {}, []
        for c in schema.numeric:
            columns[c], mask = parse_numeric(frame, c)
            masks.append(mask)
        numeric = pd.DataFrame(columns, index=index)
        missing_fraction["num"] = np.column_stack(masks).mean(axis=1)

    categorical = None
    if schema.categorical:
        columns, masks = {}, []
        for c in schema.categorical:
            masks.append(is_missing(frame[c]))
            columns[c] = pd.Categorical([category_text(v) for v in frame[c].to_numpy()])
        categorical = pd.DataFrame(columns, index=index)
        missing_fraction["cat"] = np.column_stack(masks).mean(axis=1)

    images = {}
    for c in schema.image:
        cells = frame[c]
        images[c] = pd.Series(cells.where(cells.notna(), "").astype(str).to_numpy(), index=index, name=c)
    return ModalityFrames(text, numeric, categorical, images, missing_fraction, image_folder)
