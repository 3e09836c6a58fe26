"""Builds /opt/ml trees in a temporary directory, as SageMaker lays them out for a training job."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
TRAIN = str(Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "train")


def make_tree(root: Path, channels: dict[str, list[pd.DataFrame]], hyperparameters: dict | None = None,
              input_modes: dict[str, str] | None = None, write_input_config: bool = True) -> Path:
    """Write config files and channel CSVs (one file per frame) under ``root``; return ``root``."""
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters or {}))
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"],
                                                            "network_interface_name": "eth0"}))
    if write_input_config:
        (config / "inputdataconfig.json").write_text(json.dumps({
            name: {"ContentType": "text/csv", "TrainingInputMode": (input_modes or {}).get(name, "File"),
                   "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}
            for name in channels}))
    for name, frames in channels.items():
        directory = root / "input" / "data" / name
        directory.mkdir(parents=True)
        for i, frame in enumerate(frames):
            frame.to_csv(directory / f"part-{i}.csv", index=False)
    (root / "model").mkdir()
    (root / "output").mkdir()
    return root


def run_train(root: Path, timeout: float = 600, command: list[str] | None = None,
              **popen) -> subprocess.CompletedProcess:
    """Run the real ``train`` executable (or ``command``) against the tree, as SageMaker runs the image."""
    environment = {**os.environ, "SAGEMAKER_BASE_DIR": str(root), "MULTIMODAL_IMAGE_WEIGHTS": "random",
                   "HF_HUB_OFFLINE": "1"}
    return subprocess.run(command or [TRAIN], env=environment, capture_output=True, text=True, timeout=timeout, **popen)
