"""Pre-flight check of a dataset against the algorithm's contract, before any job is paid for
(``multimodal validate TRAIN.csv [--test TEST.csv]``).

Problems that would fail a training job or a batch transform are errors; problems that would cost
accuracy or surprise the user are warnings; the rest is information (row and class counts, missing
rates). Nothing here trains or loads a model.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from multimodal.sagemaker.csv_input import read_training_csv
from multimodal.errors import UserError
from multimodal.classifier.features import BadValueError, is_missing, parse_numeric
from multimodal.classifier.image_files import ImageFolder, ImagePathError, is_path_cell
from multimodal.classifier.labels import RARE_CLASS_ROWS
from multimodal.classifier.schema import ID_COLUMN, LABEL_COLUMN, Schema, infer_schema

ERROR, WARNING, INFO = "error", "warning", "info"
SAMPLE_IMAGES = 20


@dataclass
class Finding:
    """One line of the report."""

    level: str
    subject: str
    message: str


@dataclass
class DatasetReport:
    """Everything ``validate_dataset`` found; ``ok`` when nothing would fail a job."""

    findings: list[Finding] = field(default_factory=list)

    def add(self, level: str, subject: str, message: str) -> None:
        """Record one finding."""
        self.findings.append(Finding(level, subject, message))

    @property
    def errors(self) -> list[Finding]:
        """The findings that would fail a training job or a batch transform."""
        return [f for f in self.findings if f.level == ERROR]

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.errors

    def render(self) -> str:
        """The report as text, one finding per line, then a verdict."""
        marks = {ERROR: "ERROR  ", WARNING: "warning", INFO: "       "}
        lines = [f"{marks[f.level]} {f.subject}: {f.message}" for f in self.findings]
        warnings = sum(f.level == WARNING for f in self.findings)
        verdict = (f"OK: no problem that would fail a job ({warnings} warning(s))" if self.ok
                   else f"FAILED: {len(self.errors)} problem(s) would fail a job, {warnings} warning(s)")
        return "\n".join(lines + ["", verdict])


def validate_dataset(train: Path, test: Path | None = None, sample_images: int = SAMPLE_IMAGES,
                     image_folder: Path | None = None) -> DatasetReport:
    """Check a training CSV (and optionally a batch-transform input file) against the contract; image paths are
    relative to ``image_folder`` (the channel's top folder; default: the CSV's folder)."""
    report = DatasetReport()
    schema = _check_training(Path(train), report, sample_images, image_folder)
    if test is not None and schema is not None:
        _check_test(Path(test), schema, report, sample_images)
    return report


def _check_training(path: Path, report: DatasetReport, sample_images: int,
                    image_folder: Path | None = None) -> Schema | None:
    subject = path.name
    try:
        table = read_training_csv([path])
        schema = infer_schema(table.columns, source=path.name, warn=False)
    except UserError as error:
        report.add(ERROR, subject, str(error))
        return None
    report.add(INFO, subject, f"{len(table)} rows, {len(schema.columns)} columns: {len(schema.text)} text, "
                              f"{len(schema.numeric)} numeric, {len(schema.categorical)} categorical, "
                              f"{len(schema.image)} image")
    if schema.ignored:
        report.add(WARNING, subject, f"ignored: {len(schema.ignored)} column(s) without a feature suffix "
                                     f"(_text, _num, _cat, _image): {list(schema.ignored)[:10]}")
    if schema.has_id:
        duplicated = int(table[ID_COLUMN].duplicated().sum())
        if duplicated:
            report.add(WARNING, subject, f"{duplicated} repeated value(s) in '{ID_COLUMN}': "
                                         "predictions cannot be matched to rows by ID")
    else:
        report.add(INFO, subject, f"no '{ID_COLUMN}' column: predictions come back in input order without IDs")
    _check_labels(table, subject, report)
    _check_missing(table, schema, subject, report)
    _check_text_newlines(table, schema, subject, report)
    try:   # as uploaded: the CSV and its image files under one S3 prefix, the channel's
        folder = ImageFolder(image_folder if image_folder is not None else path.parent)
    except UserError as error:
        report.add(ERROR, subject, str(error))
        return schema
    for column in schema.image:
        _check_image_paths(table[column], column, subject, report, folder, lambda i: f"data row {i + 1}")
        _check_images(table[column], column, subject, report, sample_images, lambda i: f"data row {i + 1}", folder)
    return schema


def _check_image_paths(cells: pd.Series, column: str, subject: str, report: DatasetReport, folder: ImageFolder,
                       where) -> None:
    """Every path cell of a training image column: inside the CSV's folder and naming a file there."""
    paths = [position for position, cell in enumerate(cells.tolist()) if is_path_cell(cell)]
    if not paths:
        return
    refused = []
    for position in paths:
        try:
            folder.resolve(str(cells.iloc[position]))
        except ImagePathError as error:
            refused.append((position, str(error)))
    if not refused:
        report.add(INFO, subject, f"column '{column}': {len(paths)} image path(s), every one a file inside "
                                  f"{folder.root}")
        return
    message = (f"column '{column}': {len(refused)} of {len(paths)} image path(s) cannot be read inside {folder.root} "
               f"(first: {where(refused[0][0])}: {refused[0][1]}); paths are relative to the channel's folder "
               "(--image-folder; default: the CSV's), so upload the image files under the channel's S3 prefix")
    report.add(ERROR if len(refused) == len(paths) else WARNING, subject,
               message if len(refused) == len(paths) else message + "; such images count as missing")


def _check_labels(table: pd.DataFrame, subject: str, report: DatasetReport) -> None:
    labels = table[LABEL_COLUMN]
    empty = int(labels.isna().sum())
    if empty:
        report.add(WARNING, subject, f"{empty} row(s) without a '{LABEL_COLUMN}' value: training drops them")
    counts = labels.dropna().value_counts()
    if len(counts) < 2:
        report.add(ERROR, subject, f"'{LABEL_COLUMN}' has {len(counts)} distinct value(s); classification "
                                   "needs at least 2 classes")
        return
    shown = ", ".join(f"{value!r}: {count}" for value, count in counts.head(20).items())
    report.add(INFO, subject, f"{len(counts)} classes ({shown}{', ...' if len(counts) > 20 else ''})")
    rare = counts[counts < RARE_CLASS_ROWS]
    if len(rare):
        report.add(WARNING, subject, f"{len(rare)} class(es) with fewer than {RARE_CLASS_ROWS} rows "
                                     f"({', '.join(f'{v!r}: {c}' for v, c in rare.head(10).items())}): "
                                     "AutoGluon may leave them out; add rows")


def _check_missing(table: pd.DataFrame, schema: Schema, subject: str, report: DatasetReport) -> None:
    modalities = {"text": schema.text, "numeric": schema.numeric, "categorical": schema.categorical,
                  "image": schema.image}
    usable = 0
    for name, columns in modalities.items():
        if not columns:
            continue
        # numbers were checked on reading, so parse_numeric only reports which cells are missing
        masks = np.column_stack([parse_numeric(table, c)[1] if name == "numeric" else is_missing(table[c])
                                 for c in columns])
        rates = ", ".join(f"{c} {100 * masks[:, i].mean():.0f}%" for i, c in enumerate(columns[:10]))
        report.add(INFO, subject, f"{name} missing: {rates}{', ...' if len(columns) > 10 else ''}")
        informative = 0
        for i, column in enumerate(columns):
            if masks[:, i].all():
                report.add(WARNING, subject, f"column '{column}' is empty in every row: it carries no information")
                continue
            values = _as_trained(table[column], name)   # missing cells filled as training fills them
            if values.nunique() <= 1:
                shown = str(values.iloc[int(np.flatnonzero(~masks[:, i])[0])])[:40]
                report.add(WARNING, subject, f"column '{column}' has the same value {shown!r} in every row (missing "
                                             "cells filled as training fills them): it carries no information")
                continue
            informative += 1
        if informative == 0:
            report.add(WARNING, subject, f"every {name} column is constant or empty: training skips the {name} "
                                         "member (and its columns add nothing to the joint member)")
        else:
            usable += 1
    if usable == 0:
        report.add(ERROR, subject, "every feature column is constant or empty in every row: nothing to train on")


def _as_trained(column: pd.Series, modality: str) -> pd.Series:
    """A column's cells as the members see them: numbers parsed (missing 0), categories by the one category
    rule (missing "unknown"), text cleaned (missing "")."""
    from multimodal.classifier.features import category_text, clean_text

    if modality == "numeric":
        return pd.Series(parse_numeric(column.to_frame(), column.name)[0])
    if modality == "categorical":
        return column.map(category_text)
    if modality == "text":
        return column.map(clean_text)
    return column.astype(str).str.strip()


def _check_text_newlines(table: pd.DataFrame, schema: Schema, subject: str, report: DatasetReport) -> None:
    for column in schema.text + schema.categorical:
        broken = table[column].astype(str).str.contains(r"[\r\n]", regex=True)
        if broken.any():
            report.add(WARNING, subject, f"column '{column}': {int(broken.sum())} cell(s) contain line breaks "
                                         f"(first: data row {int(np.flatnonzero(broken.to_numpy())[0]) + 1}); "
                                         "fine for training, but batch transform with Line split cuts such "
                                         "records: send inference data as JSON Lines or remove the line breaks")


def _check_images(cells: pd.Series, column: str, subject: str, report: DatasetReport, sample: int,
                  where, folder: ImageFolder | None = None) -> None:
    """Decode a sample of the column's images (paths read in ``folder``; without one, a path is an error: a
    transform job's records carry base64)."""
    from multimodal.classifier.images import ImageDecodeError, decode_image

    present = np.flatnonzero(~is_missing(cells))
    if len(present) == 0:
        return
    chosen = present if len(present) <= sample else np.random.default_rng(0).choice(present, sample, replace=False)
    failures = []
    for position in sorted(int(p) for p in chosen):
        try:
            decode_image(str(cells.iloc[position]), folder)
        except ImageDecodeError as error:
            failures.append((position, str(error)))
    if not failures:
        report.add(INFO, subject, f"column '{column}': {len(chosen)} sampled image(s) decoded")
        return
    first_position, first_problem = failures[0]
    message = (f"column '{column}': {len(failures)} of {len(chosen)} sampled image(s) are not readable "
               f"(first: {where(first_position)}: {first_problem})")
    if len(failures) == len(chosen):
        report.add(ERROR, subject, message + ("; give each image as its file's bytes (JPEG or PNG) in base64"
                                              + (", or as the path of its file relative to the CSV's folder"
                                                 if folder is not None else
                                                 ": a transform job or an endpoint reads no image file; "
                                                 "`multimodal images inline` writes paths as base64")))
    else:
        report.add(WARNING, subject, message + "; such images count as missing")


def _check_test(path: Path, schema: Schema, report: DatasetReport, sample_images: int) -> None:
    """A batch-transform input file: CSV rows without header, in the training column order minus label
    (or JSON Lines: one object per line, keyed by column name)."""
    subject = path.name
    expected = list(schema.inference_columns)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        report.add(ERROR, subject, f"cannot be read ({error})")
        return
    except UnicodeDecodeError as error:
        report.add(ERROR, subject, f"not UTF-8 text near byte {error.start}; save the file as UTF-8")
        return
    if text.lstrip().startswith("{"):
        _check_json_lines(text, subject, expected, schema, report, sample_images)
        return
    reader = csv.reader(io.StringIO(text, newline=""))
    records, lines, spanning = [], [], []
    line = 1
    try:
        for fields in reader:
            if reader.line_num > line:
                spanning.append(line)
            records.append(fields)
            lines.append(line)
            line = reader.line_num + 1
    except csv.Error as error:
        report.add(ERROR, subject, f"line {line}: malformed CSV ({error})")
        return
    pairs = [(fields, number) for fields, number in zip(records, lines) if any(cell.strip() for cell in fields)]
    if not pairs:
        report.add(ERROR, subject, "no records")
        return
    first = [cell.strip() for cell in pairs[0][0]]
    if first in (expected, list(schema.columns)):
        report.add(ERROR, subject, "line 1 is a header: batch transform sends every line as a record; "
                                   "remove the header line")
        pairs = pairs[1:]
    if spanning:
        report.add(ERROR, subject, f"{len(spanning)} record(s) span several lines (first starts at line "
                                   f"{spanning[0]}): Line split would cut them; send JSON Lines "
                                   "(application/jsonlines) or remove line breaks inside fields")
    wrong = [(number, len(fields)) for fields, number in pairs if len(fields) != len(expected)]
    if wrong:
        with_label = all(count == len(expected) + 1 for _, count in wrong) and len(wrong) == len(pairs)
        hint = (f"every record has one field more: drop the '{LABEL_COLUMN}' column" if with_label
                else "the order is the training header without 'label'")
        report.add(ERROR, subject, f"{len(wrong)} record(s) with a wrong number of fields (first: line "
                                   f"{wrong[0][0]} has {wrong[0][1]}, expected {len(expected)}: "
                                   f"{expected[:8]}{' ...' if len(expected) > 8 else ''}); {hint}")
        return
    report.add(INFO, subject, f"{len(pairs)} records of {len(expected)} fields, as the training header "
                              "without 'label'")
    frame = pd.DataFrame([fields for fields, _ in pairs], columns=expected)
    numbers = [number for _, number in pairs]
    for column in schema.numeric:
        try:
            parse_numeric(frame, column)   # the same rule training and serving apply
        except BadValueError as error:
            report.add(ERROR, subject, f"line {numbers[error.position]}, column '{column}': "
                                       f"{str(error.value)[:40]!r} {error.problem}")
    for column in schema.image:
        _check_images(frame[column], column, subject, report, sample_images, lambda i: f"line {numbers[i]}")


def _check_json_lines(text: str, subject: str, expected: list[str], schema: Schema, report: DatasetReport,
                      sample_images: int) -> None:
    """A JSON Lines transform input: one object per line, keyed by column name (absent keys are missing)."""
    objects, numbers = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as error:
            report.add(ERROR, subject, f"line {number}: not JSON ({error})")
            return
        if not isinstance(item, dict):
            report.add(ERROR, subject, f"line {number}: a JSON {type(item).__name__}, not an object keyed by column")
            return
        objects.append(item)
        numbers.append(number)
    if not objects:
        report.add(ERROR, subject, "no records")
        return
    unknown = sorted({key for item in objects for key in item} - set(expected) - {LABEL_COLUMN})
    if unknown:
        report.add(WARNING, subject, f"keys that are not training columns are ignored: {unknown[:10]}")
    absent = [c for c in schema.feature_columns if all(c not in item for item in objects)]
    if absent:
        report.add(WARNING, subject, f"feature column(s) absent from every record (treated as missing): {absent[:10]}")
    report.add(INFO, subject, f"{len(objects)} JSON Lines records")
    frame = pd.DataFrame([{c: item.get(c) for c in expected} for item in objects], columns=expected)
    for column in schema.image:
        cells = frame[column].where(frame[column].notna(), "").astype(str)
        _check_images(cells, column, subject, report, sample_images, lambda i: f"line {numbers[i]}")
