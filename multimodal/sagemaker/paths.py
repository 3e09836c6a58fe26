"""The SageMaker container file layout. Only this module knows ``/opt/ml``.

The root is ``$SAGEMAKER_BASE_DIR`` when set (the sagemaker-training toolkit's own variable), else
``/opt/ml``; tests and local runs point it at a temporary tree.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BASE_DIR_ENV = "SAGEMAKER_BASE_DIR"
DEFAULT_BASE_DIR = "/opt/ml"


@dataclass(frozen=True)
class SageMakerPaths:
    """Every path of the training and inference contract under one root."""

    root: Path

    @classmethod
    def from_environment(cls, environ: dict | None = None) -> "SageMakerPaths":
        """The layout rooted at ``$SAGEMAKER_BASE_DIR``, else ``/opt/ml``."""
        environ = os.environ if environ is None else environ
        return cls(Path(environ.get(BASE_DIR_ENV) or DEFAULT_BASE_DIR))

    @property
    def config_dir(self) -> Path:
        """``input/config``: hyperparameters.json, inputdataconfig.json, resourceconfig.json."""
        return self.root / "input" / "config"

    @property
    def hyperparameters_file(self) -> Path:
        return self.config_dir / "hyperparameters.json"

    @property
    def input_data_config_file(self) -> Path:
        return self.config_dir / "inputdataconfig.json"

    @property
    def resource_config_file(self) -> Path:
        return self.config_dir / "resourceconfig.json"

    @property
    def checkpoint_config_file(self) -> Path:
        """``input/config/checkpointconfig.json``: present only when the job has a ``CheckpointConfig``."""
        return self.config_dir / "checkpointconfig.json"

    def checkpoint_dir(self, local_path: str | None) -> Path:
        """The checkpoint directory for ``CheckpointConfig.LocalPath`` (default ``/opt/ml/checkpoints``); a
        path under ``/opt/ml`` is taken under this layout's root, so a local tree keeps its checkpoints inside."""
        path = Path(local_path or f"{DEFAULT_BASE_DIR}/checkpoints")
        base = Path(DEFAULT_BASE_DIR)
        if path.is_relative_to(base) and self.root != base:
            return self.root / path.relative_to(base)
        return path

    @property
    def data_dir(self) -> Path:
        return self.root / "input" / "data"

    def channel_dir(self, name: str) -> Path:
        """``input/data/<channel>``: the channel's files in File and FastFile mode."""
        return self.data_dir / name

    def channel_pipe(self, name: str, epoch: int = 0) -> Path:
        """``input/data/<channel>_<epoch>``: the channel's FIFO in Pipe mode."""
        return self.data_dir / f"{name}_{epoch}"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def output_data_dir(self) -> Path:
        return self.output_dir / "data"

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"
