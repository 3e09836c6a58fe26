"""Training channels as data (``train`` required, ``validation`` optional) and how to read each one.

File and FastFile mode: every data file under ``input/data/<channel>/``, recursively and whatever its name
(S3 keys keep their producers' names: ``part-00000`` without extension, partition folders), skipping hidden
files and ``_SUCCESS``-style markers; gzip is told by its first bytes. Pipe mode: the FIFO
``input/data/<channel>_0``, streamed once (every S3 object's header line arrives in the stream and is
dropped). The channel settings that cannot work are refused before anything is read.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from multimodal.sagemaker.csv_input import CsvSource, CsvTable, list_data_files, read_csv_table
from multimodal.errors import PlatformError, UserError
from multimodal.sagemaker.paths import SageMakerPaths

logger = logging.getLogger(__name__)

INPUT_MODES = ("File", "FastFile", "Pipe")
CONTENT_TYPES = ("text/csv", "text/csv;header=present", "application/x-csv")
COMPRESSION_TYPES = ("None", "Gzip")
PIPE_WAIT_SECONDS = 30.0


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


def validate_input_data_config(config: dict, hosts: int = 1) -> dict[str, dict]:
    """Check ``inputdataconfig.json``: known channels only, the required ones present, supported settings;
    ``hosts`` is the job's instance count (ShardedByS3Key needs distributed training when it is above 1)."""
    specs = {spec.name: spec for spec in CHANNELS}
    unknown = sorted(set(config) - set(specs))
    if unknown:
        raise UserError(f"unknown channel(s) {unknown}; this algorithm takes {sorted(specs)}.")
    missing = [spec.name for spec in CHANNELS if spec.required and spec.name not in config]
    if missing:
        raise UserError(f"the '{missing[0]}' channel is required (CSV files with a header and a 'label' column).")
    for name, settings in config.items():
        spec = specs[name]
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
        if wrapper != "None":
            raise UserError(f"channel '{name}': RecordWrapperType {wrapper!r} is not supported; this algorithm "
                            "reads plain CSV files (RecordWrapperType None).")
        data_type = settings.get("S3DataType") or ("AugmentedManifestFile" if settings.get("AttributeNames")
                                                   else "S3Prefix")
        if data_type == "AugmentedManifestFile":
            raise UserError(f"channel '{name}': an AugmentedManifestFile is not supported; give the channel an S3 "
                            "prefix (or a ManifestFile) of CSV files with a header.")
        distribution = settings.get("S3DistributionType") or settings.get("S3DataDistributionType") \
            or "FullyReplicated"
        if distribution == "ShardedByS3Key" and hosts > 1:
            raise UserError(f"channel '{name}': S3DataDistributionType ShardedByS3Key on {hosts} instances would "
                            "train on part of the data (distributed training is not supported yet); use "
                            "FullyReplicated, or one instance.")
    return config


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


def read_channel(paths: SageMakerPaths, name: str, settings: dict) -> CsvTable:
    """The channel's rows as one table of text cells, labels still text (see ``read_csv_table``)."""
    mode = settings.get("TrainingInputMode", "File")
    started = time.monotonic()
    if mode == "Pipe":
        pipe = paths.channel_pipe(name)
        _wait_for_pipe(pipe)
        sources = [CsvSource(pipe, f"channel '{name}' (Pipe mode stream)")]
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
