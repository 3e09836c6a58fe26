"""Reading training CSV data (files or a Pipe-mode stream, plain or gzip) into one table, with errors
that name the file, the line and the column.

Every cell is read as text, so the library, not the CSV parser, decides what a value means:
"" is missing, "007" stays a category, and a ``_num`` cell that is not a number is an error.
One pass per source with Python's ``csv`` reader (RFC 4180 quoting, strict), so line numbers are the
file's own even after quoted line breaks, and a record with more or fewer fields than the header is
an error naming its line (never padded or cut silently). A line equal to the header is dropped
wherever it appears (Pipe mode streams every S3 object's header into one FIFO); a different header
in mid-stream is an error.
"""
from __future__ import annotations

import contextlib
import csv
import gzip
import io
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from multimodal.errors import UserError
from multimodal.classifier.features import BadValueError, parse_numeric
from multimodal.classifier.labels import label_values
from multimodal.classifier.schema import ID_COLUMN, LABEL_COLUMN, column_role, find_duplicates
from multimodal.sagemaker.recordio import MAGIC_BYTES as RECORDIO_MAGIC, read_exactly

logger = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
# What Spark, Glue, Athena and Hadoop put beside their data files: markers and checksums.
MARKER_PREFIXES = (".", "_")
LOGGED_FILES = 20   # the log names this many files (and the last one) with their row counts
csv.field_size_limit(2**31 - 1)


@dataclass(frozen=True)
class CsvSource:
    """One CSV stream: a file, or a Pipe-mode FIFO. ``name`` is what messages call it (a file's path
    below its channel directory). gzip is told by the first bytes, not by the name. ``data`` (an object's
    bytes, as a RecordIO record carries it) or ``stream`` (a binary stream already opened, read once: a FIFO
    whose first bytes were looked at) is read instead of opening ``path``."""

    path: Path
    name: str = ""
    data: bytes | None = field(default=None, repr=False)
    stream: Any = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        """The name used in messages."""
        return self.name or self.path.name

    @classmethod
    def file(cls, path: Path, name: str = "") -> "CsvSource":
        """A regular file."""
        return cls(Path(path), name)


@dataclass
class SourceTable:
    """The data rows one source gave: cells by column, the header lines dropped, each record's line."""

    source: CsvSource
    header: list[str]
    columns: dict[str, list[str]]
    lines: np.ndarray
    repeated_headers: int

    @property
    def rows(self) -> int:
        return len(self.lines)


@dataclass(frozen=True)
class SourceRows:
    """The rows one source contributed to the table: positions ``start`` to ``start + len(lines) - 1``."""

    source: CsvSource
    start: int
    lines: np.ndarray


def list_data_files(directory: Path) -> list[Path]:
    """Every data file under ``directory``, recursively, sorted by path (S3 key order): any name, since File
    mode keeps the producers' names (``part-00000``, no extension); hidden files and folders, Hadoop and
    Spark markers (``_SUCCESS``, ``_committed_*``; names starting with "." or "_"), empty files and image files
    (which image cells name by path: ``image_files.is_image_file``) skipped."""
    from multimodal.classifier.image_files import is_image_file

    found = []
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory).parts
        if any(part.startswith(MARKER_PREFIXES) for part in relative):
            continue
        if path.is_file() and path.stat().st_size > 0 and not is_image_file(path):
            found.append(path)
    return found


class PrefixedStream(io.RawIOBase):
    """A byte stream whose first bytes were already read (to tell gzip, RecordIO and text apart on a FIFO, which
    cannot seek): ``head`` and then the rest of ``rest``."""

    def __init__(self, head: bytes, rest):
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count], self._head = self._head[:count], self._head[count:]
            return count
        return self._rest.readinto(buffer) or 0


@contextlib.contextmanager
def _open_text(source: CsvSource):
    """The source as text; gzip (one member or many, as Pipe mode streams gzip objects) told by its first bytes."""
    if source.data is not None:
        opened = contextlib.nullcontext(io.BytesIO(source.data))
    elif source.stream is not None:
        opened = contextlib.nullcontext(source.stream)
    else:
        opened = open(source.path, "rb", buffering=0)
    with opened as raw:
        head = read_exactly(raw, len(RECORDIO_MAGIC))
        if head == RECORDIO_MAGIC:
            raise UserError(f"{source.label}: RecordIO-framed records; this algorithm reads them from a Pipe-mode "
                            "channel (RecordWrapperType RecordIO, or an augmented manifest) and reads plain CSV "
                            "files with a header otherwise.")
        stream = io.BufferedReader(PrefixedStream(head, raw), buffer_size=1 << 20)
        if head[:2] == GZIP_MAGIC:
            stream = gzip.GzipFile(fileobj=stream, mode="rb")
        with io.TextIOWrapper(stream, encoding="utf-8-sig", newline="") as text:
            yield text


def _name(cell: str) -> str:
    """A header cell as a column name (a byte-order mark, as a later file's header in a stream carries, dropped)."""
    return cell.strip().lstrip("\ufeff").strip()


def _is_header_like(cells: list[str], header: list[str]) -> bool:
    """A row naming columns rather than holding values: ``label`` and, either most of the first header's
    names, or nothing but column-like names (``ID``, feature suffixes) with at least one feature."""
    names = [_name(c) for c in cells]
    if LABEL_COLUMN not in names:
        return False
    if len(set(names) & set(header)) >= max(2, len(header) // 2):
        return True
    return all(n in (LABEL_COLUMN, ID_COLUMN) or column_role(n) for n in names) and any(map(column_role, names))


def _read_source(source: CsvSource) -> SourceTable:
    """Header and data rows of one source, read in a single pass (FIFOs cannot be opened twice)."""
    name = source.label
    reader = None
    try:
        with _open_text(source) as handle:
            reader = csv.reader(handle, strict=True)
            header = None
            for row in reader:
                if any(cell.strip() for cell in row):
                    header = [_name(cell) for cell in row]
                    break
            if header is None:
                raise UserError(f"{name}: the file is empty; a training CSV starts with a header line.")
            if header[0].startswith(("{", "[")):
                raise UserError(f"{name}: JSON, not CSV (an augmented manifest or JSON Lines?); this algorithm "
                                "reads CSV files with a header line.")
            duplicates = find_duplicates(header)
            if duplicates:
                raise UserError(f"{name}: duplicate column names {duplicates} in the header.")
            width = len(header)
            cells: list[list[str]] = [[] for _ in header]
            lines: list[int] = []
            repeated = 0
            start = reader.line_num + 1
            for row in reader:
                line, start = start, reader.line_num + 1
                if len(row) != width:
                    if not row or (len(row) == 1 and not row[0].strip()):
                        continue   # a blank line
                    if _is_header_like(row, header):
                        raise _different_header(name, line, row, header)
                    raise UserError(
                        f"{name} line {line}: {len(row)} field(s), but the header has {width} columns "
                        f"({', '.join(header[:8])}{', ...' if width > 8 else ''}); fix the line (quote fields "
                        "that contain commas or line breaks; in Pipe mode end every file with a line break)."
                    )
                if _name(row[0]) == header[0] and [_name(c) for c in row] == header:
                    repeated += 1   # another S3 object's header in a Pipe-mode stream, or concatenated files
                    continue
                if LABEL_COLUMN in row and _is_header_like(row, header):
                    raise _different_header(name, line, row, header)
                for column, cell in zip(cells, row):
                    column.append(cell)
                lines.append(line)
    except csv.Error as error:
        line = reader.line_num if reader is not None else 1
        raise UserError(f"{name} line {line}: malformed CSV ({error}); quote fields with \" and double the "
                        "quotes inside them.") from None
    except UnicodeDecodeError as error:
        raise UserError(f"{name}: not UTF-8 text near byte {error.start}; save the file as UTF-8.") from None
    except (OSError, EOFError, zlib.error) as error:
        kind = "a damaged gzip stream" if isinstance(error, (EOFError, zlib.error, gzip.BadGzipFile)) else "cannot be read"
        raise UserError(f"{name}: {kind} ({error}).") from None
    return SourceTable(source, header, dict(zip(header, cells)), np.asarray(lines, dtype=np.int64), repeated)


def _different_header(name: str, line: int, row: list[str], header: list[str]) -> UserError:
    return UserError(f"{name} line {line}: another header in mid-stream {row[:8]}, different from the first "
                     f"header {header[:8]}; every file of a channel must have the same header.")


def _align(part: SourceTable, header: list[str], first: str) -> dict[str, list[str]]:
    """``part``'s columns in the order of ``header``, the first source's (``first`` names it)."""
    if part.header == header:
        return part.columns
    if set(part.header) != set(header):
        extra = sorted(set(part.header) - set(header))
        lacking = sorted(set(header) - set(part.header))
        raise UserError(
            f"{part.source.label} has different columns than {first}: extra {extra}, missing "
            f"{lacking}; every file of a channel must have the same header."
        )
    logger.warning("%s lists the same columns as %s in another order; aligning by name", part.source.label, first)
    return {column: part.columns[column] for column in header}


@dataclass
class CsvTable:
    """A table read from one or many sources, and where each of its rows came from."""

    frame: pd.DataFrame
    parts: list[SourceRows]

    def locate(self, position: int) -> str:
        """'file line N' for a row position of the table."""
        for part in self.parts:
            if part.start <= position < part.start + len(part.lines):
                return f"{part.source.label} line {int(part.lines[position - part.start])}"
        return f"row {position + 1}"


def read_csv_table(paths: Iterable[Path | CsvSource]) -> CsvTable:
    """Read one or many training CSV sources (same header each; a list, or an iterator read one source at a time)
    into one table of text cells with a fresh index, logging how many rows each source gave.

    Raises ``UserError`` naming the file (and line and column where one cell is at fault) for empty files,
    duplicate or differing headers, malformed CSV, records with the wrong number of fields, non-UTF-8 bytes
    and non-numeric ``_num`` cells.
    """
    total = len(paths) if hasattr(paths, "__len__") else None
    sources = iter(paths)
    following = next(sources, None)
    if following is None:
        raise UserError("no training CSV files were found.")
    parts: list[SourceRows] = []
    columns: dict[str, list[str]] = {}
    header: list[str] | None = None
    first_labels: list[str] = []
    start = index = 0
    # One source at a time, the next one looked at ahead (to log the last one): sources made on the fly (the
    # records of a stream) are each let go once read.
    while following is not None:
        source = following if isinstance(following, CsvSource) else CsvSource.file(following)
        following = next(sources, None)
        part = _read_source(source)
        if header is None:
            header, columns = part.header, {c: [] for c in part.header}
        if len(first_labels) < 5:
            first_labels.append(source.label)
        aligned = _align(part, header, first_labels[0])
        for column, cells in aligned.items():
            columns[column].extend(cells)
        del aligned
        parts.append(SourceRows(CsvSource(source.path, source.label), start, part.lines))   # no bytes kept
        start += part.rows
        note = f", {part.repeated_headers} repeated header line(s) dropped" if part.repeated_headers else ""
        if part.rows == 0:
            logger.warning("%s has a header but no data rows%s", source.label, note)
        elif index < LOGGED_FILES or following is None:
            logger.info("read %s: %d rows%s", source.label, part.rows, note)
        elif index == LOGGED_FILES:
            more = f"{total - LOGGED_FILES - 1} more files" if total is not None else "more files"
            logger.info("... (%s; the last one is listed)", more)
        del part, source
        index += 1
    frame = pd.DataFrame({c: pd.Series(cells, dtype=object) for c, cells in columns.items()})
    if len(frame) == 0:
        raise UserError(f"{', '.join(first_labels)}: header only, no data rows.")
    table = CsvTable(frame, parts)
    check_numeric_cells(table)
    logger.info("read %d rows x %d columns from %d file(s)", len(frame), frame.shape[1], index)
    return table


def read_training_csv(paths: Iterable[Path | CsvSource]) -> pd.DataFrame:
    """``read_csv_table``'s frame, with the label column typed by ``multimodal.classifier.labels.label_values``."""
    frame = read_csv_table(paths).frame
    if LABEL_COLUMN in frame.columns:
        frame[LABEL_COLUMN] = label_values(frame[LABEL_COLUMN])
    return frame


def check_numeric_cells(table: CsvTable) -> None:
    """Fail on the first ``_num`` cell that is not a number, naming its file, line and column."""
    frame = table.frame
    for column in frame.columns:
        if column_role(column) != "num":
            continue
        try:
            parse_numeric(frame, column)
        except BadValueError as error:
            where = table.locate(error.position)
            if ID_COLUMN in frame.columns:
                where += f" (ID={frame[ID_COLUMN].iloc[error.position]!r})"
            raise UserError(f"{where}, column '{column}': {str(error.value)[:60]!r} {error.problem}") from None
