"""Reading training CSV files (one or many, plain or .gz) into one table, with errors that name
the file, the line and the column.

Every cell is read as text, so the library, not the CSV parser, decides what a value means:
"" is missing, "007" stays a category, and a ``_num`` cell that is not a number is an error.
"""
from __future__ import annotations

import csv
import gzip
import io
import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pandas as pd

from multimodal.errors import UserError
from multimodal.features import BadValueError, parse_numeric
from multimodal.schema import ID_COLUMN, LABEL_COLUMN, column_role, find_duplicates

logger = logging.getLogger(__name__)

CSV_SUFFIXES = (".csv", ".csv.gz")
_INTEGER = re.compile(r"^[+-]?\d+$")
csv.field_size_limit(2**31 - 1)


@dataclass(frozen=True)
class FileRows:
    """The rows one file contributed to the table: positions ``start`` to ``start + count - 1``."""

    path: Path
    start: int
    count: int


def _open_text(path: Path):
    raw = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def list_csv_files(directory: Path) -> list[Path]:
    """The CSV files (.csv, .csv.gz) directly in ``directory``, sorted by name; hidden files skipped."""
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(CSV_SUFFIXES))


def read_header(path: Path) -> list[str]:
    """The first record of a CSV file; ``UserError`` when the file is empty or not UTF-8."""
    try:
        with _open_text(path) as handle:
            header = next(csv.reader(handle), None)
    except UnicodeDecodeError as error:
        raise UserError(f"{path.name}: not UTF-8 text (byte {error.start} of the header); save it as UTF-8.") from None
    except (OSError, EOFError) as error:
        raise UserError(f"{path.name}: cannot be read ({error}).") from None
    if not header or all(not cell.strip() for cell in header):
        raise UserError(f"{path.name}: the file is empty; a training CSV starts with a header line.")
    return [cell.strip() for cell in header]


def line_of_record(path: Path, record: int) -> int:
    """The 1-based line on which data record ``record`` (0-based, header excluded) starts."""
    with _open_text(path) as handle:
        reader = csv.reader(handle)
        previous_end = 0
        for number, _ in enumerate(reader):
            if number == record + 1:
                return previous_end + 1
            previous_end = reader.line_num
    return previous_end + 1


def _read_one(path: Path, header: list[str]) -> pd.DataFrame:
    try:
        with _open_text(path) as handle, warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(handle, dtype=str, keep_default_na=False, na_filter=False, header=0,
                                index_col=False, engine="c")
    except pd.errors.ParserWarning:
        raise UserError(f"{path.name}: malformed CSV: line 2 has more fields than the header "
                        f"({len(header)} columns).") from None
    except UnicodeDecodeError as error:
        raise UserError(f"{path.name}: not UTF-8 text near byte {error.start}; save the file as UTF-8.") from None
    except pd.errors.ParserError as error:
        raise UserError(f"{path.name}: malformed CSV: {error} (check quoting and the number of fields).") from None
    frame.columns = header
    return frame


def _align(frame: pd.DataFrame, path: Path, header: list[str], reference: list[str], reference_path: Path):
    if header == reference:
        return frame
    if set(header) != set(reference):
        extra, lacking = sorted(set(header) - set(reference)), sorted(set(reference) - set(header))
        raise UserError(
            f"{path.name} has different columns than {reference_path.name}: extra {extra}, missing {lacking}; "
            "every file of a channel must have the same header."
        )
    logger.warning("%s lists the same columns as %s in another order; aligning by name", path.name,
                   reference_path.name)
    return frame[reference]


def label_values(labels: pd.Series) -> pd.Series:
    """Label cells as values: integers when every non-empty cell is an integer, else text; "" is missing."""
    text = labels.str.strip()
    present = text != ""
    if present.any() and text[present].str.match(_INTEGER).all():
        return pd.Series([int(v) if v else None for v in text], index=labels.index, dtype=object, name=labels.name)
    return text.where(present, None).rename(labels.name)


def read_training_csv(paths: Iterable[Path]) -> pd.DataFrame:
    """Read one or many training CSV files (same header each) into one table with a fresh index.

    Raises ``UserError`` naming the file (and line and column where one cell is at fault) for
    empty files, duplicate or differing headers, malformed CSV, non-UTF-8 bytes and non-numeric
    ``_num`` cells.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise UserError("no training CSV files (.csv or .csv.gz) were found.")
    frames, rows = [], []
    reference: list[str] | None = None
    start = 0
    for path in paths:
        header = read_header(path)
        duplicates = find_duplicates(header)
        if duplicates:
            raise UserError(f"{path.name}: duplicate column names {duplicates} in the header.")
        frame = _read_one(path, header)
        if reference is None:
            reference, reference_path = header, path
        frame = _align(frame, path, header, reference, reference_path)
        if len(frame) == 0:
            logger.warning("%s has a header but no data rows", path.name)
        frames.append(frame)
        rows.append(FileRows(path, start, len(frame)))
        start += len(frame)
    table = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    if len(table) == 0:
        raise UserError(f"{', '.join(p.name for p in paths)}: header only, no data rows.")
    check_numeric_cells(table, rows)
    if LABEL_COLUMN in table.columns:
        table[LABEL_COLUMN] = label_values(table[LABEL_COLUMN])
    logger.info("read %d rows x %d columns from %d file(s)", len(table), table.shape[1], len(paths))
    return table


def locate(rows: list[FileRows], position: int) -> str:
    """'file line N' for a row position of the combined table."""
    for part in rows:
        if part.start <= position < part.start + part.count:
            return f"{part.path.name} line {line_of_record(part.path, position - part.start)}"
    return f"row {position + 1}"


def check_numeric_cells(table: pd.DataFrame, rows: list[FileRows]) -> None:
    """Fail on the first ``_num`` cell that is not a number, naming its file, line and column."""
    for column in table.columns:
        if column_role(column) != "num":
            continue
        try:
            parse_numeric(table, column)
        except BadValueError as error:
            where = locate(rows, error.position)
            if ID_COLUMN in table.columns:
                where += f" (ID={table[ID_COLUMN].iloc[error.position]!r})"
            raise UserError(f"{where}, column '{column}': {str(error.value)[:60]!r} {error.problem}") from None
