"""Training channels as data (``train`` required, ``validation`` optional) and how to read each one.

File and FastFile mode: every data file under ``input/data/<channel>/``, recursively and whatever its name
(S3 keys keep their producers' names: ``part-00000`` without extension, partition folders), skipping hidden
files and ``_SUCCESS``-style markers; gzip is told by its first bytes. Pipe mode: the FIFO
``input/data/<channel>_0``, streamed once: CSV objects one after another (every S3 object's header line
arrives in the stream and is dropped); with ``RecordWrapperType=RecordIO`` one RecordIO record per S3 object,
or, for an augmented manifest, one per attribute of each manifest line (``augmented_manifest``; the
attributes are the channel's ``AttributeNames``, which ``inputdataconfig.json`` may not carry: hyperparameter
``attribute_names`` gives them). The stream's first bytes tell RecordIO from CSV. The channel settings that
cannot work are refused before anything is read.

Image cells may be paths of image files relative to the channel directory (``image_files``' rule), delivered
beside the CSV files in File and FastFile mode; Pipe mode streams the CSV alone, and ShardedByS3Key on
several hosts deals the image files apart from the rows that name them, so a path there is refused.
"""
from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from multimodal.sagemaker import recordio
from multimodal.sagemaker.augmented_manifest import AttributeNames, attribute_columns, read_manifest_records
from multimodal.sagemaker.csv_input import (
    GZIP_MAGIC, CsvSource, CsvTable, PrefixedStream, list_data_files, read_csv_table,
)
from multimodal.classifier.image_files import extension_of, find_path_cell
from multimodal.errors import PlatformError, UserError
from multimodal.sagemaker.paths import SageMakerPaths

logger = logging.getLogger(__name__)

INPUT_MODES = ("File", "FastFile", "Pipe")
CONTENT_TYPES = ("text/csv", "text/csv;header=present", "application/x-csv", "application/x-recordio")
WRAPPER_TYPES = ("None", "RecordIO")
COMPRESSION_TYPES = ("None", "Gzip")
PIPE_WAIT_SECONDS = 30.0
# The training job's own hyperparameters (how to read the channels), apart from the classifier's; package data.
JOB_SPEC_PATH = Path(str(resources.files("multimodal.sagemaker").joinpath("job_hyperparameters.json")))


@dataclass(frozen=True)
class ChannelSpec:
    """A channel the algorithm accepts: name, whether required, and what it may contain."""

    name: str
    required: bool
    description: str
    content_types: tuple[str, ...] = CONTENT_TYPES
    input_modes: tuple[str, ...] = INPUT_MODES
    compression_types: tuple[str, ...] = COMPRESSION_TYPES


CHANNELS = (
    ChannelSpec("train", True, "Training CSV files with a header: 'label', optional 'ID', feature columns "
                               "ending in _text, _num, _cat, _image."),
    ChannelSpec("validation", False, "Optional CSV files with the training header, for validation metrics."),
)


def validate_input_data_config(config: dict, hosts: int = 1, attribute_names: AttributeNames = AttributeNames()
                               ) -> dict[str, dict]:
    """Check ``inputdataconfig.json``: known channels only, the required ones present, supported settings;
    ``hosts`` is the job's instance count (above 1, only channel 'train' may be sharded by S3 key: the leader
    gathers its shards; the validation report is the leader's alone). Returns the channels' settings, the
    ``AttributeNames`` of each Pipe-mode RecordIO channel filled in from hyperparameter ``attribute_names``
    where the config does not list them, and checked (each attribute has a column, a label among them)."""
    specs = {spec.name: spec for spec in CHANNELS}
    unknown = sorted(set(config) - set(specs))
    if unknown:
        raise UserError(f"unknown channel(s) {unknown}; this algorithm takes {sorted(specs)}.")
    missing = [spec.name for spec in CHANNELS if spec.required and spec.name not in config]
    if missing:
        raise UserError(f"the '{missing[0]}' channel is required (CSV files with a header and a 'label' column).")
    unknown = sorted(set(attribute_names.by_channel) - set(config))
    if unknown:
        raise UserError(f"hyperparameter 'attribute_names' names channel(s) {unknown} that this job does not have "
                        f"(its channels: {sorted(config)}).")
    checked = {}
    for name, settings in config.items():
        checked[name] = settings = _checked_channel(name, settings, specs[name], attribute_names)
        if is_sharded(settings) and hosts > 1 and name != "train":
            raise UserError(f"channel '{name}': S3DataDistributionType ShardedByS3Key on {hosts} instances would "
                            "report on part of the data (the first instance reports alone); use FullyReplicated "
                            "for this channel (channel 'train' may be sharded).")
    if attribute_names.shared and not any(s.get("AttributeNames") for s in checked.values()):
        logger.warning("hyperparameter attribute_names %s is not used: no channel is in Pipe mode with "
                       "RecordWrapperType RecordIO (an augmented manifest's channel needs both)",
                       list(attribute_names.shared))
    return checked


def _checked_channel(name: str, settings: dict, spec: ChannelSpec, attribute_names: AttributeNames) -> dict:
    """One channel's settings checked, its ``AttributeNames`` filled in (see ``validate_input_data_config``)."""
    mode = settings.get("TrainingInputMode", "File")
    if mode not in spec.input_modes:
        raise UserError(f"channel '{name}': input mode {mode!r} is not supported; use one of {list(spec.input_modes)}.")
    content_type = (settings.get("ContentType") or "text/csv").replace(" ", "").lower()
    if content_type not in spec.content_types:
        raise UserError(f"channel '{name}': content type {settings.get('ContentType')!r} is not supported; "
                        f"use one of {list(spec.content_types)}.")
    compression = settings.get("CompressionType", "None") or "None"
    if compression not in spec.compression_types:
        raise UserError(f"channel '{name}': compression {compression!r} is not supported; "
                        f"use one of {list(spec.compression_types)}.")
    wrapper = settings.get("RecordWrapperType", "None") or "None"
    if wrapper not in WRAPPER_TYPES:
        raise UserError(f"channel '{name}': RecordWrapperType {wrapper!r} is not supported; use one of "
                        f"{list(WRAPPER_TYPES)}.")
    if wrapper == "RecordIO" and mode != "Pipe":
        raise UserError(f"channel '{name}': RecordWrapperType RecordIO applies in Pipe mode only; set it to None "
                        f"in {mode} mode (the files are read as they are).")
    listed = settings.get("AttributeNames")
    if listed is not None and (not isinstance(listed, list) or not all(isinstance(n, str) and n for n in listed)):
        raise UserError(f"channel '{name}': AttributeNames must be a list of names; got {json.dumps(listed)[:200]}.")
    given = attribute_names.for_channel(name)
    framed = mode == "Pipe" and wrapper == "RecordIO"
    if name in attribute_names.by_channel and not framed:
        raise UserError(f"hyperparameter 'attribute_names' lists attributes for channel '{name}', which is not in "
                        "Pipe mode with RecordWrapperType RecordIO (an augmented manifest's channel needs both).")
    if given and framed:
        if not listed:
            settings = {**settings, "AttributeNames": list(given)}
        elif list(given) != listed:
            logger.warning("channel '%s': AttributeNames %s in inputdataconfig.json, hyperparameter attribute_names "
                           "%s: reading the channel's own", name, listed, list(given))
    data_type = settings.get("S3DataType") or ("AugmentedManifestFile" if settings.get("AttributeNames")
                                               else "S3Prefix")
    if data_type == "AugmentedManifestFile" and mode != "Pipe":
        raise UserError(f"channel '{name}': an AugmentedManifestFile streams in Pipe mode only; set the channel's "
                        "TrainingInputMode to Pipe (and RecordWrapperType to RecordIO).")
    if data_type == "AugmentedManifestFile" and wrapper == "None":
        raise UserError(f"channel '{name}': an AugmentedManifestFile with RecordWrapperType None streams its "
                        "attributes with nothing between them (an image's bytes run into the next value); set "
                        "RecordWrapperType to RecordIO.")
    if settings.get("AttributeNames"):
        try:
            attribute_columns(settings["AttributeNames"])
        except UserError as error:
            raise UserError(f"channel '{name}': {error}") from None
    return settings


def channels_on_disk(paths: SageMakerPaths) -> dict[str, dict]:
    """A File-mode config for the channel directories present, for runs without inputdataconfig.json."""
    if not paths.data_dir.is_dir():
        return {}
    return {p.name: {"TrainingInputMode": "File"} for p in sorted(paths.data_dir.iterdir()) if p.is_dir()}


def _wait_for_pipe(path) -> None:
    deadline = time.monotonic() + PIPE_WAIT_SECONDS
    while not path.exists():
        if time.monotonic() > deadline:
            raise PlatformError(f"Pipe-mode FIFO {path} did not appear within {PIPE_WAIT_SECONDS:.0f} s.")
        time.sleep(0.2)


def channel_files(paths: SageMakerPaths, name: str) -> list[Path]:
    """The data files a File-mode channel holds (none when its directory is absent or holds only markers)."""
    directory = paths.channel_dir(name)
    return list_data_files(directory) if directory.is_dir() else []


def read_channel(paths: SageMakerPaths, name: str, settings: dict) -> CsvTable:
    """The channel's rows as one table of text cells, labels still text (see ``read_csv_table``)."""
    mode = settings.get("TrainingInputMode", "File")
    started = time.monotonic()
    if mode == "Pipe":
        pipe = paths.channel_pipe(name)
        _wait_for_pipe(pipe)
        with open(pipe, "rb", buffering=0) as raw:
            table, sources = _read_stream(pipe, raw, name, tuple(settings.get("AttributeNames") or ()))
    else:
        directory = paths.channel_dir(name)
        if not directory.is_dir():
            raise UserError(f"channel '{name}': directory {directory} does not exist.")
        files = list_data_files(directory)
        if not files:
            skipped = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())[:10]
            raise UserError(f"channel '{name}' has no data files (skipped: {skipped or 'nothing'}; hidden files, "
                            "markers such as _SUCCESS and empty files are not read).")
        sources = [CsvSource.file(f, str(f.relative_to(directory))) for f in files]
        table = read_csv_table(sources)
    logger.info("channel '%s' (%s mode): %d rows from %d source(s) in %.1f s", name, mode, len(table.frame),
                len(sources), time.monotonic() - started)
    return table


def _read_stream(pipe: Path, raw, name: str, attribute_names: tuple[str, ...]) -> tuple[CsvTable, list]:
    """A Pipe-mode stream's table and sources: CSV, RecordIO records of CSV objects, or an augmented manifest's
    attribute records (``attribute_names`` given), told by the stream's first bytes."""
    where = f"channel '{name}' (Pipe mode stream)"
    head = recordio.read_exactly(raw, len(recordio.MAGIC_BYTES))
    stream = PrefixedStream(head, raw)
    if head != recordio.MAGIC_BYTES:
        if attribute_names and not head:
            raise UserError(f"{where}: the stream is empty; the channel's augmented manifest streamed no record.")
        if attribute_names:
            raise UserError(f"{where}: attribute_names {list(attribute_names)} name an augmented manifest's "
                            "attributes, but the stream is not RecordIO-framed; set the channel's RecordWrapperType "
                            "to RecordIO (or leave attribute_names out for CSV files).")
        sources = [CsvSource(pipe, where, stream=stream)]
        table = read_csv_table(sources)
        refuse_image_paths(table.frame, where, PIPE_PATHS)
        return table, sources
    records = recordio.read_records(io.BufferedReader(stream, buffer_size=1 << 20), where)
    if attribute_names:
        source = CsvSource(pipe, f"channel '{name}' (augmented manifest, Pipe mode)")
        table = read_manifest_records(records, attribute_names, source)
        refuse_image_paths(table.frame, source.label, "an augmented manifest streams no image file: list the "
                                                      "attribute with the suffix '-ref' (for example "
                                                      "'photo_image-ref') so that SageMaker streams the object's "
                                                      "bytes.")
        return table, [source]
    objects = _ObjectSources(records, pipe, where)
    table = read_csv_table(objects)
    refuse_image_paths(table.frame, where, PIPE_PATHS)
    return table, objects.sources


class _ObjectSources:
    """The CSV objects of a RecordIO stream of an S3 prefix, one record each, as sources made one at a time: empty
    records (markers such as ``_SUCCESS``) and image files skipped, as File mode skips them. A first record that
    is an image, or whose first line names no 'label', means an augmented manifest read without its attribute
    names: an error that says so."""

    def __init__(self, records, pipe: Path, where: str):
        self._records, self._pipe, self._where = records, pipe, where
        self.sources: list[CsvSource] = []

    def __iter__(self):
        skipped = 0
        for index, record in enumerate(self._records):
            label = f"{self._where}, RecordIO record {index + 1}"
            if not record or extension_of(record[:16]) != "img":
                if record and not self.sources:
                    raise UserError(f"{label} is an image, not a CSV file: {MANIFEST_HINT}")
                skipped += 1
                continue
            if not self.sources and not record.startswith(GZIP_MAGIC):
                first_line = record.split(b"\n", 1)[0]
                if b"label" not in first_line:
                    raise UserError(f"{label}: its first line {first_line[:80].decode('utf-8', 'replace')!r} names no "
                                    f"'label' column, so it is not a training CSV file with a header: {MANIFEST_HINT}")
            self.sources.append(CsvSource(self._pipe, label))
            yield CsvSource(self._pipe, label, data=record)
        if skipped:
            logger.info("%s: %d RecordIO record(s) skipped (empty objects or image files)", self._where, skipped)


MANIFEST_HINT = ("for an augmented manifest, set hyperparameter attribute_names to the channel's AttributeNames "
                 "(for example '[\"photo_image-ref\", \"label\"]').")


PIPE_PATHS = ("Pipe mode streams the CSV files alone and delivers no image file: use File or FastFile mode for "
              "images given as paths (or give them in base64).")
SHARDED_PATHS = ("ShardedByS3Key deals each S3 object to one host, the image files apart from the CSV rows that "
                 "name them: use FullyReplicated for images given as paths (or give them in base64).")


def refuse_image_paths(frame: pd.DataFrame, where: str, why: str) -> None:
    """``UserError`` at the first image cell of ``frame`` that is a path (``where`` names the channel, ``why``
    says why paths cannot be read there)."""
    found = find_path_cell(frame, [c for c in frame.columns if str(c).endswith("_image")])
    if found is not None:
        column, position, cell = found
        raise UserError(f"{where}, data row {position + 1}, column '{column}': {cell!r} is an image path, but {why}")


def image_folder(paths: SageMakerPaths, name: str, settings: dict):
    """The ``image_files.ImageFolder`` that channel ``name``'s image paths are relative to (its directory), or
    None in Pipe mode or when the directory is absent."""
    from multimodal.classifier.image_files import ImageFolder

    directory = paths.channel_dir(name)
    if settings.get("TrainingInputMode", "File") == "Pipe" or not directory.is_dir():
        return None
    return ImageFolder(directory)


def is_sharded(settings: dict) -> bool:
    """True when a channel's S3 data is sharded by key (each host gets part of the objects)."""
    return (settings.get("S3DistributionType") or settings.get("S3DataDistributionType")) == "ShardedByS3Key"


def read_channels(paths: SageMakerPaths, channels: dict[str, dict],
                  gather: Callable[[pd.DataFrame | None], pd.DataFrame] | None = None
                  ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The training and validation tables, checked against each other before any fit: the same columns, the
    labels typed by one rule over both channels, no validation class that training lacks. ``gather`` turns
    this host's shard of channel 'train' (None when it holds no file) into the whole table (a distributed
    job's sharded channel)."""
    from multimodal.classifier.labels import integer_labels, label_values, unseen_labels
    from multimodal.classifier.schema import LABEL_COLUMN, infer_schema

    if gather is not None:
        # A shard may hold no file at all (more instances than S3 objects): the other hosts' shards are the data.
        settings = channels["train"]
        empty = settings.get("TrainingInputMode", "File") != "Pipe" and not channel_files(paths, "train")
        own = None if empty else read_channel(paths, "train", settings).frame
        if own is not None:
            infer_schema(own.columns, source="channel 'train'", warn=False)
            refuse_image_paths(own, "channel 'train' (ShardedByS3Key)", SHARDED_PATHS)
        train = gather(own)
    else:
        train = read_channel(paths, "train", channels["train"]).frame
    infer_schema(train.columns, source="channel 'train'", warn=False)   # fail fast; fit() warns once
    validation = None
    if "validation" in channels:
        validation = read_channel(paths, "validation", channels["validation"]).frame
        if set(validation.columns) != set(train.columns):
            raise UserError(
                f"channel 'validation' has other columns than channel 'train': extra "
                f"{sorted(set(validation.columns) - set(train.columns))}, missing "
                f"{sorted(set(train.columns) - set(validation.columns))}; use the training header."
            )
    tables = [t for t in (train, validation) if t is not None]
    as_integers = integer_labels(t[LABEL_COLUMN] for t in tables)
    for table in tables:
        table[LABEL_COLUMN] = label_values(table[LABEL_COLUMN], as_integers)
    if validation is not None:
        if validation[LABEL_COLUMN].isna().all():
            raise UserError("channel 'validation' has no row with a 'label' value; the validation report needs "
                            "labelled rows (or leave the channel out).")
        unseen = unseen_labels(train[LABEL_COLUMN].dropna(), validation[LABEL_COLUMN])
        if unseen:
            raise UserError(f"channel 'validation' has label value(s) {unseen[:10]} that channel 'train' never has; "
                            "the model can only predict classes it was trained on: drop those rows or add "
                            "training rows of these classes.")
    return train, validation
