"""Training channels as data (``train`` required, ``validation`` optional) and how to read each one.

File and FastFile mode: every ``.csv``/``.csv.gz`` in ``input/data/<channel>/``, read as one table.
Pipe mode: the FIFO ``input/data/<channel>_0``, streamed once (gzip when the channel says so).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import pandas as pd

from multimodal.csv_input import CsvSource, list_csv_files, read_training_csv
from multimodal.errors import PlatformError, UserError
from multimodal.paths import SageMakerPaths

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


def validate_input_data_config(config: dict) -> dict[str, dict]:
    """Check ``inputdataconfig.json``: known channels only, the required ones present, supported settings."""
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


def read_channel(paths: SageMakerPaths, name: str, settings: dict) -> pd.DataFrame:
    """The channel's rows as one table of text cells (see ``read_training_csv``)."""
    mode = settings.get("TrainingInputMode", "File")
    started = time.monotonic()
    if mode == "Pipe":
        pipe = paths.channel_pipe(name)
        _wait_for_pipe(pipe)
        sources = [CsvSource(pipe, gzip=settings.get("CompressionType") == "Gzip", rereadable=False)]
    else:
        directory = paths.channel_dir(name)
        if not directory.is_dir():
            raise UserError(f"channel '{name}': directory {directory} does not exist.")
        files = list_csv_files(directory)
        if not files:
            present = sorted(p.name for p in directory.rglob("*") if p.is_file())[:10]
            raise UserError(f"channel '{name}' has no .csv or .csv.gz files (found: {present or 'nothing'}).")
        sources = [CsvSource.file(f) for f in files]
    table = read_training_csv(sources)
    logger.info("channel '%s' (%s mode): %d rows from %d source(s) in %.1f s", name, mode, len(table), len(sources),
                time.monotonic() - started)
    return table
