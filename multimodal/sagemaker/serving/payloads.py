"""Request parsing for ``/invocations``: pure functions, no web framework.

Parsing turns a body (CSV without header, JSON Lines, or a JSON list) into a DataFrame of text cells
in the model's inference column order; every problem is a ``PayloadError`` (the server maps its class to
an HTTP status) with a message naming the line and the column. What the answer holds is ``responses``' concern.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from multimodal.errors import UserError
from multimodal.classifier.features import BadValueError, is_missing, parse_numeric
from multimodal.classifier.image_files import find_path_cell
from multimodal.classifier.schema import LABEL_COLUMN, Schema

CSV = "text/csv"
JSON_LINES = "application/jsonlines"
JSON = "application/json"
CONTENT_TYPES = {CSV: CSV, "application/x-csv": CSV, JSON_LINES: JSON_LINES, "application/x-jsonlines": JSON_LINES,
                 "application/jsonl": JSON_LINES, JSON: JSON}
# The csv module refuses fields over 128 KB by default; one base64 photo is often larger. The request size
# is bounded by MaxPayloadInMB before parsing.
csv.field_size_limit(2**31 - 1)


class PayloadError(UserError):
    """A request the server refuses: its body cannot be read as records of the model's columns."""


class UnsupportedContentType(PayloadError):
    """A Content-Type the server does not read."""


class PayloadTooLarge(PayloadError):
    """A body over MaxPayloadInMB."""


@dataclass(frozen=True)
class MediaType:
    """A parsed Content-Type or Accept value: the type and its parameters."""

    type: str
    parameters: dict

    @classmethod
    def parse(cls, value: str | None, default: str) -> "MediaType":
        """``text/csv; probabilities=true`` → MediaType("text/csv", {"probabilities": "true"})."""
        parts = [p.strip() for p in (value or "").split(";")]
        kind = parts[0].lower() or default
        parameters = {}
        for part in parts[1:]:
            name, _, val = part.partition("=")
            if name:
                parameters[name.strip().lower()] = val.strip().strip('"').lower()
        return cls(kind, parameters)


def request_format(content_type: str | None) -> str:
    """The canonical format of a Content-Type (default CSV); 415 for anything else."""
    kind = MediaType.parse(content_type, CSV).type
    if kind not in CONTENT_TYPES:
        raise UnsupportedContentType(f"content type {kind!r} is not supported; send text/csv, "
                                     "application/jsonlines or application/json.")
    return CONTENT_TYPES[kind]


@dataclass
class ParsedPayload:
    """The records of one request: features as text cells, and the input line of each record (for a JSON
    list, its record number)."""

    frame: pd.DataFrame
    lines: list[int]
    unit: str = "line"

    def place(self, position: int) -> str:
        """'line N' (or 'record N') of the record at ``position``."""
        return f"{self.unit} {self.lines[position]}"


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = body[:error.start].count(b"\n") + 1
        raise PayloadError(f"line {line}: the payload is not UTF-8 (byte {error.start}).") from None


def parse_csv(body: bytes, schema: Schema) -> ParsedPayload:
    """CSV records without header (RFC 4180 quoting) in the training column order minus ``label``.

    A first line equal to the training header (with or without ``label``) is skipped.
    """
    text = _decode(body)
    columns = list(schema.inference_columns)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records, lines = [], []
    start = 1
    try:
        for row in reader:
            line = start
            start = reader.line_num + 1
            if not records and not lines and row in (columns, list(schema.columns)):
                continue
            if row == []:
                records.append(row)
                lines.append(line)
                continue
            if len(row) != len(columns):
                raise PayloadError(f"line {line}: {len(row)} fields, expected {len(columns)} "
                                   f"({', '.join(columns[:12])}{', ...' if len(columns) > 12 else ''}).")
            records.append(row)
            lines.append(line)
    except csv.Error as error:
        raise PayloadError(f"line {reader.line_num}: malformed CSV ({error}); quote fields with \" and "
                           "double quotes inside them.") from None
    while records and records[-1] == []:
        records.pop()
        lines.pop()
    for row, line in zip(records, lines):
        if row == []:
            raise PayloadError(f"line {line}: empty line; every line must be one record of {len(columns)} fields.")
    if not records:
        raise PayloadError("the payload holds no records.")
    return ParsedPayload(pd.DataFrame(records, columns=columns), lines)


def _cell(value, where: str, key: str):
    if value is None or isinstance(value, (str, int, float, bool)):
        if isinstance(value, float) and not np.isfinite(value):
            raise PayloadError(f"{where}, key '{key}': {value!r} is not a finite number.")
        return value
    raise PayloadError(f"{where}, key '{key}': a {type(value).__name__} is not a cell value; "
                       "use a string, a number or null.")


def _shown(names: list) -> str:
    return ", ".join(repr(n) for n in names[:12]) + (", ..." if len(names) > 12 else "")


def _record_cells(item, where: str, columns: list[str], features: set[str]) -> list:
    """One record's cells in column order: an object keyed by column name, or a list of values in the
    inference column order (what SageMaker's JSON serializers make of a NumPy array)."""
    if isinstance(item, list):
        if len(item) != len(columns):
            raise PayloadError(f"{where}: a list of {len(item)} values, expected {len(columns)} "
                               f"({_shown(columns)}).")
        return [_cell(value, where, column) for value, column in zip(item, columns)]
    if not isinstance(item, dict):
        raise PayloadError(f"{where}: expected a JSON object keyed by column name (or a list of values in column "
                           f"order), got {type(item).__name__}.")
    unknown = [key for key in item if key not in columns and key != LABEL_COLUMN]
    if unknown:
        raise PayloadError(f"{where}: unknown key(s) {_shown(unknown)}; the model's columns are {_shown(columns)} "
                           "(check the spelling).")
    if not any(key in features for key in item):
        raise PayloadError(f"{where}: no feature column in the record (keys: {_shown(list(item)) or 'none'}); the "
                           f"model's feature columns are {_shown(sorted(features))}.")
    return [_cell(item.get(c), where, c) for c in columns]


def _records_frame(objects: list, lines: list[int], unit: str, schema: Schema) -> ParsedPayload:
    columns = list(schema.inference_columns)
    features = set(schema.feature_columns)
    rows = [_record_cells(item, f"{unit} {line}", columns, features) for item, line in zip(objects, lines)]
    if not rows:
        raise PayloadError("the payload holds no records.")
    frame = pd.DataFrame(rows, columns=columns, dtype=object)
    return ParsedPayload(frame, lines, unit)


def parse_json_lines(body: bytes, schema: Schema) -> ParsedPayload:
    """One JSON object per line, keyed by column name in any order; absent keys are missing values."""
    objects, lines = [], []
    for number, raw in enumerate(_decode(body).split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            objects.append(json.loads(raw))
        except ValueError as error:
            raise PayloadError(f"line {number}: not valid JSON ({error}).") from None
        except RecursionError:
            raise PayloadError(f"line {number}: JSON nested too deeply; send one flat object per line.") from None
        lines.append(number)
    return _records_frame(objects, lines, "line", schema)


def _named_records(instances, names) -> list:
    """``{"instances": [[v, ...], ...], "feature_names": [name, ...]}`` (what SageMaker Clarify sends with
    ``$records`` and ``$feature_names``): each value list becomes an object keyed by those names."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise PayloadError("line 1: \"feature_names\" must be a list of distinct column names.")
    if not isinstance(instances, list):
        return instances
    records = []
    for number, item in enumerate(instances, start=1):
        if isinstance(item, list):
            if len(item) != len(names):
                raise PayloadError(f"record {number}: a list of {len(item)} values, \"feature_names\" names "
                                   f"{len(names)}.")
            item = dict(zip(names, item))
        records.append(item)
    return records


def parse_json(body: bytes, schema: Schema) -> ParsedPayload:
    """A JSON list of records (or one record), or ``{"instances": [...]}`` as SageMaker's SDK serializers and
    JumpStart clients send it (with ``"feature_names"`` beside it, as SageMaker Clarify can, the value lists are
    keyed by those names); a record is an object keyed by column name or a list of values in column order."""
    try:
        data = json.loads(_decode(body) or "null")
    except ValueError as error:
        raise PayloadError(f"line {getattr(error, 'lineno', 1)}: not valid JSON ({error}).") from None
    except RecursionError:
        raise PayloadError("line 1: JSON nested too deeply; send a flat list of objects.") from None
    if isinstance(data, dict) and "instances" in data and set(data) <= {"instances", "feature_names"}:
        data = (_named_records(data["instances"], data["feature_names"]) if "feature_names" in data
                else data["instances"])
    elif isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise PayloadError("line 1: expected a JSON list of objects keyed by column name (or {\"instances\": "
                           "[...]}).")
    return _records_frame(data, list(range(1, len(data) + 1)), "record", schema)


PARSERS = {CSV: parse_csv, JSON_LINES: parse_json_lines, JSON: parse_json}


def parse_payload(body: bytes, content_type: str | None, schema: Schema) -> ParsedPayload:
    """Parse a request body and check its numeric cells; ``PayloadError`` names the line and column."""
    kind = request_format(content_type)
    if not body or not body.strip():
        raise PayloadError("the payload is empty; send one record per line.")
    parsed = PARSERS[kind](body, schema)
    found = find_path_cell(parsed.frame, schema.image)
    if found is not None:
        column, position, cell = found
        raise PayloadError(f"{parsed.place(position)}, column '{column}': {cell!r} is an image path; an endpoint "
                           "has no channel to read image files from: send the image file's bytes in base64.")
    empty = np.ones(len(parsed.frame), dtype=bool)
    for column in schema.feature_columns:
        if column not in schema.numeric:
            empty &= is_missing(parsed.frame[column])
            continue
        try:
            empty &= parse_numeric(parsed.frame, column)[1]
        except BadValueError as error:
            raise PayloadError(f"{parsed.place(error.position)}, column '{column}': "
                               f"{str(error.value)[:60]!r} {error.problem}.") from None
    if empty.any():
        position = int(np.flatnonzero(empty)[0])
        raise PayloadError(f"{parsed.place(position)}: every feature is missing ({int(empty.sum())} such "
                           "record(s)); a prediction needs a value in at least one of the columns "
                           + _shown(list(schema.feature_columns)) + ".")
    return parsed
