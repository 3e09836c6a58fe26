"""An augmented manifest streamed in Pipe mode (Ground Truth's output) as a training table.

SageMaker reads the manifest's JSON lines and streams, for each line, the attributes the channel's
``AttributeNames`` lists, in that order, one RecordIO record each: a ``-ref`` attribute (an S3 URI) as the
bytes of the object it names, any other attribute as its value. A line's records form one row.

Attributes map to columns by name, the ``-ref`` suffix dropped:
- ``label`` is the label and ``ID`` the row ID; a name with a feature suffix (``photo_image-ref``,
  ``review_text``, ``price_num``, ``colour_cat``) is that column;
- Ground Truth's own names: ``source-ref`` is the image column ``source_image``, ``source`` (inline text)
  the text column ``source_text``, and the one attribute left without a suffix is the label (Ground Truth
  names it after the labelling job); ``...-metadata`` attributes (confidence, class names, dates) are skipped.

Values: an image object's bytes become base64, any other object's bytes UTF-8 text; a value is read as JSON
when it is JSON (``1`` and ``"1"`` are both the class 1, ``null`` is missing) and as text otherwise.
"""
from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from multimodal.classifier.schema import ID_COLUMN, IMAGE, LABEL_COLUMN, column_role
from multimodal.errors import UserError
from multimodal.sagemaker.csv_input import CsvSource, CsvTable, SourceRows, check_numeric_cells

logger = logging.getLogger(__name__)

REF_SUFFIX = "-ref"
METADATA_SUFFIX = "-metadata"
GROUND_TRUTH_COLUMNS = {"source-ref": "source_image", "source": "source_text"}
PROGRESS_ROWS = 10_000


@dataclass(frozen=True)
class AttributeNames:
    """Hyperparameter ``attribute_names``: the names for every Pipe-mode RecordIO channel (``shared``), or each
    named channel's own (``by_channel``)."""

    shared: tuple[str, ...] = ()
    by_channel: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.shared or self.by_channel)

    def for_channel(self, name: str) -> tuple[str, ...]:
        """The attribute names given for channel ``name`` (empty when none)."""
        return self.by_channel.get(name, self.shared)


def parse_attribute_names(text: str) -> AttributeNames:
    """The ``attribute_names`` hyperparameter: a JSON list (``["source-ref", "label"]``, as ``AttributeNames`` is
    written in a ``CreateTrainingJob`` request) or names separated by commas, for every Pipe-mode RecordIO
    channel; or a JSON object of such lists by channel (``{"train": [...], "validation": [...]}``)."""
    text = (text or "").strip()
    if not text:
        return AttributeNames()
    if text.startswith(("[", "{")):
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            value = None
        if isinstance(value, dict):
            return AttributeNames(by_channel={str(k): _names(v, text) for k, v in value.items()})
        return AttributeNames(shared=_names(value, text))
    return AttributeNames(shared=_names(text.split(","), text))


def _names(value, text: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise UserError(f"hyperparameter 'attribute_names' must be a JSON list of strings, names separated by commas, "
                        f"or a JSON object of such lists by channel; got {text[:200]!r}.")
    names = [n.strip() for n in value]
    if not all(names):
        raise UserError(f"hyperparameter 'attribute_names' has an empty name: {text[:200]!r}.")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(f"hyperparameter 'attribute_names' lists {duplicates} more than once.")
    return tuple(names)


def attribute_columns(names: Iterable[str]) -> dict[str, str | None]:
    """Each attribute's column (None: skipped), by the rules of this module's docstring; ``UserError`` when an
    attribute has no column or two attributes give one column."""
    names = list(names)
    columns: dict[str, str | None] = {}
    unplaced = []
    for name in names:
        base = name[:-len(REF_SUFFIX)] if name.endswith(REF_SUFFIX) else name
        if name.endswith(METADATA_SUFFIX):
            columns[name] = None
        elif name in GROUND_TRUTH_COLUMNS:
            columns[name] = GROUND_TRUTH_COLUMNS[name]
        elif base in (LABEL_COLUMN, ID_COLUMN) or column_role(base):
            columns[name] = base
        else:
            unplaced.append(name)
    has_label = LABEL_COLUMN in columns.values()
    if len(unplaced) == 1 and not has_label and not unplaced[0].endswith(REF_SUFFIX):
        columns[unplaced[0]] = LABEL_COLUMN   # Ground Truth's label attribute, named after the labelling job
    elif unplaced:
        raise UserError(
            f"attribute(s) {unplaced} of the augmented manifest have no column: name features by suffix "
            "(_text, _num, _cat, _image; '-ref' for an S3 object), the target 'label' (or one attribute without a "
            "suffix, as Ground Truth names it), 'ID', or Ground Truth's 'source-ref' / 'source'."
        )
    placed = [c for c in columns.values() if c is not None]
    clashes = sorted({c for c in placed if placed.count(c) > 1})
    if clashes:
        raise UserError(f"attributes {names} give column(s) {clashes} twice; list one attribute per column.")
    if LABEL_COLUMN not in placed:
        raise UserError(f"attributes {names} have no label: list 'label' (or the labelling job's attribute) in "
                        "AttributeNames.")
    return {name: columns[name] for name in names}


def _value_cell(payload: bytes, column: str, where: str) -> str:
    """A non-``-ref`` attribute's value as a text cell: a JSON string's content, "" for JSON null, any other value
    as streamed (``1.50`` stays ``1.50``; an object in a text column stays its JSON)."""
    text = _text(payload, where)
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return text
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)) and column == LABEL_COLUMN:
        raise UserError(f"{where}: the label is a JSON {type(value).__name__} ({text[:80]!r}); a label is one "
                        "class (a string or a number).")
    return text.strip()


def _text(payload: bytes, where: str) -> str:
    try:
        return payload.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UserError(f"{where}: not UTF-8 text near byte {error.start}.") from None


def read_manifest_records(records: Iterable[bytes], names: tuple[str, ...], source: CsvSource) -> CsvTable:
    """The rows of an augmented manifest stream: ``records`` (RecordIO payloads, ``len(names)`` per manifest
    line), ``names`` the channel's ``AttributeNames``, ``source`` the stream (its label names it in messages).
    Columns come in ``names`` order (inference rows without a header follow it, less the label). Errors name
    the manifest line (counting the lines that carry the attributes) and the attribute."""
    name = source.label
    columns_of = attribute_columns(names)
    kept = [(index, attribute, column) for index, (attribute, column) in enumerate(columns_of.items())
            if column is not None]
    cells: dict[str, list[str]] = {column: [] for _, _, column in kept}
    width = len(names)
    row: list[bytes] = []
    rows = 0
    for payload in records:
        row.append(payload)
        if len(row) < width:
            continue
        rows += 1
        for index, attribute, column in kept:
            where = f"{name} line {rows}, attribute '{attribute}'"
            value = row[index]
            if not attribute.endswith(REF_SUFFIX):
                cells[column].append(_value_cell(value, column, where))
            elif column_role(column) == IMAGE:
                cells[column].append(base64.b64encode(value).decode("ascii") if value else "")
            else:
                cells[column].append(_text(value, where))
        row = []
        if rows % PROGRESS_ROWS == 0:
            logger.info("%s: %d manifest lines read", name, rows)
    if row:
        raise UserError(f"{name}: the stream ends after {len(row)} of the {width} attributes {list(names)} of line "
                        f"{rows + 1}; the channel's AttributeNames and hyperparameter 'attribute_names' must list the "
                        "same attributes in the same order.")
    if rows == 0:
        raise UserError(f"{name}: the augmented manifest stream holds no line.")
    skipped = [a for a, c in columns_of.items() if c is None]
    logger.info("%s: %d manifest lines, attributes %s as columns %s%s", name, rows,
                [a for _, a, _ in kept], [c for _, _, c in kept], f" ({skipped} skipped)" if skipped else "")
    frame = pd.DataFrame({column: pd.Series(values, dtype=object) for column, values in cells.items()})
    table = CsvTable(frame, [SourceRows(source, 0, np.arange(1, rows + 1))])
    check_numeric_cells(table)
    return table
