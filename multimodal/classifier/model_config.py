"""``model_config.json``: everything needed to rebuild a fitted model from its directory, as JSON."""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from dataclasses import MISSING, asdict, dataclass, field, fields
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
class MemberEntry:
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
    modalities: list[MemberEntry]
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
        if not isinstance(data, dict):
            raise PlatformError(f"{path} holds a JSON {type(data).__name__}, not the model's description object.")
        if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
            raise PlatformError(
                f"{path} has format {data.get('format')!r} version {data.get('format_version')!r}; this library "
                f"reads {FORMAT!r} version {FORMAT_VERSION}."
            )
        _check_keys(path, "", data, cls)
        for key, kind in (("schema", dict), ("classes", list), ("modalities", list), ("fusion", dict),
                          ("hyperparameters", dict), ("training", dict)):
            if key in data and not isinstance(data[key], kind):
                raise PlatformError(f"{path}: '{key}' is a JSON {type(data[key]).__name__}, expected a "
                                    f"{'object' if kind is dict else 'list'}; {_REMEDY}")
        _check_keys(path, "schema", data["schema"], required=SCHEMA_KEYS, optional=("ignored",))
        _check_keys(path, "fusion", data["fusion"], required=("path",), optional=None)
        if data.get("image_weights") is not None:
            if not isinstance(data["image_weights"], dict):
                raise PlatformError(f"{path}: 'image_weights' is not an object; {_REMEDY}")
            _check_keys(path, "image_weights", data["image_weights"], required=("name", "sha256"), optional=None)
        if len(data["classes"]) < 2 or not data["modalities"]:
            raise PlatformError(f"{path}: {len(data['classes'])} class(es) and {len(data['modalities'])} member(s); "
                                f"a fitted model has at least 2 and 1. {_REMEDY}")
        for number, entry in enumerate(data["modalities"], start=1):
            if not isinstance(entry, dict):
                raise PlatformError(f"{path}: modalities[{number}] is not an object; {_REMEDY}")
            _check_keys(path, f"modalities[{number}]", entry, MemberEntry)
        data["modalities"] = [MemberEntry(**entry) for entry in data["modalities"]]
        return cls(**data)


SCHEMA_KEYS = ("columns", "text", "numeric", "categorical", "image", "has_id")
_REMEDY = "the model directory is damaged or was written by another version: train again, or serve it with the " \
          "image that trained it."


def _check_keys(path: Path, where: str, data: dict, kind=None, required=(), optional=()) -> None:
    """Missing or unknown keys of one object of the manifest are a one-line ``PlatformError``. ``kind``: a
    dataclass whose fields are the keys (those without default required); ``optional=None``: any other key."""
    if kind is not None:
        required = [f.name for f in fields(kind) if f.default is MISSING and f.default_factory is MISSING]
        optional = [f.name for f in fields(kind)]
    missing = [key for key in required if key not in data]
    unknown = [] if optional is None else [key for key in data if key not in set(required) | set(optional)]
    if missing or unknown:
        place = f"'{where}' " if where else ""
        words = ([f"lacks key(s) {missing}"] if missing else []) + ([f"has unknown key(s) {unknown}"] if unknown else [])
        raise PlatformError(f"{path}: {place}{' and '.join(words)}; {_REMEDY}")
