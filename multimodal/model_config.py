"""``model_config.json``: everything needed to rebuild a fitted model from its directory, as JSON."""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

from multimodal.errors import PlatformError

FILE_NAME = "model_config.json"
FORMAT = "multimodal-classifier"
FORMAT_VERSION = 1
_VERSIONED_PACKAGES = ("multimodal", "autogluon.tabular", "tensorflow-cpu", "keras", "torch", "torchvision",
                       "pandas", "numpy", "scikit-learn")


def library_versions() -> dict[str, str]:
    """Python and the versions of the packages a saved model depends on."""
    versions = {"python": platform.python_version()}
    for package in _VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


@dataclass
class ModalityEntry:
    """One AutoGluon member of the fusion: its name, kind (``text``, ``num``, ``cat``, ``image``, or ``joint`` for
    the model of all non-image columns), columns, sub-directory, label layout and, for an image column, its
    feature projection file."""

    name: str
    kind: str
    columns: list[str]
    path: str
    layout: list[int]
    projection: str | None = None  # image modalities: the .npz of their principal-component projection


@dataclass
class ModelConfig:
    """The JSON manifest of a saved model directory."""

    schema: dict
    classes: list
    modalities: list[ModalityEntry]
    fusion: dict
    hyperparameters: dict
    image_weights: dict | None
    training: dict = field(default_factory=dict)
    versions: dict = field(default_factory=library_versions)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def write(self, directory: Path) -> None:
        """Write ``model_config.json`` atomically (a model directory is complete once it exists)."""
        target = directory / FILE_NAME
        temporary = directory / (FILE_NAME + ".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2, sort_keys=False) + "\n", encoding="utf-8")
        os.replace(temporary, target)

    @classmethod
    def read(cls, directory: Path) -> "ModelConfig":
        """Read and check the manifest of a model directory; ``PlatformError`` when absent or foreign."""
        path = directory / FILE_NAME
        if not path.is_file():
            raise PlatformError(f"{directory} is not a complete model directory: {FILE_NAME} is missing.")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise PlatformError(f"{path} is not valid JSON.", caused_by=error) from error
        if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
            raise PlatformError(
                f"{path} has format {data.get('format')!r} version {data.get('format_version')!r}; this library "
                f"reads {FORMAT!r} version {FORMAT_VERSION}."
            )
        data["modalities"] = [ModalityEntry(**entry) for entry in data["modalities"]]
        return cls(**data)
