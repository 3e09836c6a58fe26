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
class CsvSource:
    """One CSV stream: a file, or a Pipe-mode FIFO (read once, so no second pass for line numbers)."""

    path: Path
    gzip: bool = False
    rereadable: bool = True

    @property
    def name(self) -> str:
        return self.path.name

    @classmethod
    def file(cls, path: Path) -> "CsvSource":
        """A regular file; gzip when its name ends in .gz."""
        path = Path(path)
        return cls(path, gzip=path.name.lower().endswith(".gz"))


@dataclass(frozen=True)
class SourceRows:
    """The rows one source contributed to the table: positions ``start`` to ``start + count - 1``."""

    source: CsvSource
    start: int
    count: int


def _open_text(source: CsvSource):
    raw = gzip.open(source.path, "rb") if source.gzip else open(source.path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def list_csv_files(directory: Path) -> list[Path]:
    """The CSV files (.csv, .csv.gz) directly in ``directory``, sorted by name; hidden files skipped."""
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(CSV_SUFFIXES))


def line_of_record(source: CsvSource, record: int) -> int:
    """The 1-based line on which data record ``record`` (0-based, header excluded) starts."""
    with _open_text(source) as handle:
        reader = csv.reader(handle)
        previous_end = 0
        for number, _ in enumerate(reader):
            if number == record + 1:
                return previous_end + 1
            previous_end = reader.line_num
    return previous_end + 1


def _read_source(source: CsvSource) -> tuple[list[str], pd.DataFrame]:
    """Header and rows of one source, read in a single pass (FIFOs cannot be opened twice)."""
    name = source.name
    try:
        with _open_text(source) as handle, warnings.catch_warnings():
            header = next(csv.reader(handle), None)
            if not header or all(not cell.strip() for cell in header):
                raise UserError(f"{name}: the file is empty; a training CSV starts with a header line.")
            header = [cell.strip() for cell in header]
            duplicates = find_duplicates(header)
            if duplicates:
                raise UserError(f"{name}: duplicate column names {duplicates} in the header.")
            warnings.simplefilter("error", pd.errors.ParserWarning)
            try:
                frame = pd.read_csv(handle, header=None, names=header, dtype=str, keep_default_na=False,
                                    na_filter=False, index_col=False, engine="c")
            except pd.errors.EmptyDataError:
                frame = pd.DataFrame({column: pd.Series(dtype=str) for column in header})
    except pd.errors.ParserWarning:
        raise UserError(f"{name}: malformed CSV: line 2 has more fields than the header "
                        f"({len(header)} columns).") from None
    except UnicodeDecodeError as error:
        raise UserError(f"{name}: not UTF-8 text near byte {error.start}; save the file as UTF-8.") from None
    except pd.errors.ParserError as error:
        raise UserError(f"{name}: malformed CSV: {error} (check quoting and the number of fields).") from None
    except csv.Error as error:
        raise UserError(f"{name}: malformed CSV header: {error}.") from None
    except (OSError, EOFError) as error:
        raise UserError(f"{name}: cannot be read ({error}).") from None
    return header, frame


def _align(frame: pd.DataFrame, name: str, header: list[str], reference: list[str], reference_name: str):
    if header == reference:
        return frame
    if set(header) != set(reference):
        extra, lacking = sorted(set(header) - set(reference)), sorted(set(reference) - set(header))
        raise UserError(
            f"{name} has different columns than {reference_name}: extra {extra}, missing {lacking}; "
            "every file of a channel must have the same header."
        )
    logger.warning("%s lists the same columns as %s in another order; aligning by name", name, reference_name)
    return frame[reference]


def label_values(labels: pd.Series) -> pd.Series:
    """Label cells as values: integers when every non-empty cell is an integer, else text; "" is missing."""
    text = labels.str.strip()
    present = text != ""
    if present.any() and text[present].str.match(_INTEGER).all():
        return pd.Series([int(v) if v else None for v in text], index=labels.index, dtype=object, name=labels.name)
    return text.where(present, None).rename(labels.name)


def read_training_csv(paths: Iterable[Path | CsvSource]) -> pd.DataFrame:
    """Read one or many training CSV sources (same header each) into one table with a fresh index.

    Raises ``UserError`` naming the file (and line and column where one cell is at fault) for
    empty files, duplicate or differing headers, malformed CSV, non-UTF-8 bytes and non-numeric
    ``_num`` cells.
    """
    sources = [p if isinstance(p, CsvSource) else CsvSource.file(p) for p in paths]
    if not sources:
        raise UserError("no training CSV files (.csv or .csv.gz) were found.")
    frames, rows = [], []
    reference: list[str] | None = None
    reference_name = ""
    start = 0
    for source in sources:
        header, frame = _read_source(source)
        if reference is None:
            reference, reference_name = header, source.name
        frame = _align(frame, source.name, header, reference, reference_name)
        if len(frame) == 0:
            logger.warning("%s has a header but no data rows", source.name)
        frames.append(frame)
        rows.append(SourceRows(source, start, len(frame)))
        start += len(frame)
    table = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    if len(table) == 0:
        raise UserError(f"{', '.join(s.name for s in sources)}: header only, no data rows.")
    check_numeric_cells(table, rows)
    if LABEL_COLUMN in table.columns:
        table[LABEL_COLUMN] = label_values(table[LABEL_COLUMN])
    logger.info("read %d rows x %d columns from %d file(s)", len(table), table.shape[1], len(sources))
    return table


def locate(rows: list[SourceRows], position: int) -> str:
    """'file line N' (or 'stream record N' for a FIFO) for a row position of the combined table."""
    for part in rows:
        if part.start <= position < part.start + part.count:
            record = position - part.start
            if part.source.rereadable:
                return f"{part.source.name} line {line_of_record(part.source, record)}"
            return f"{part.source.name} record {record + 1}"
    return f"row {position + 1}"


def check_numeric_cells(table: pd.DataFrame, rows: list[SourceRows]) -> None:
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
