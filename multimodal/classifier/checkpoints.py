"""Finished units of training work, kept in a checkpoint directory so that a restarted job reuses them.

A unit is one directory under the store's root, named by the unit (``embedding-photo_image-<hash>-00000``,
``member-text-<hash>``, ...), holding the unit's files and, written last, ``UNIT.json``: the unit's fingerprint (a
hash of everything its result depends on) and each file's size and SHA-256. A unit is written under a
temporary name and renamed into place, so a reader (another process, or the job restarted after an
interruption) sees either the whole unit or none of it; a unit whose files do not match its manifest is
reported as corrupt, removed and recomputed. Nothing here assumes that all units of a job run in one process:
two writers of different units never touch the same path, and two writers of the same unit each rename a
complete directory (the last one stays).
"""
from __future__ import annotations

import errno
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

logger = logging.getLogger(__name__)

MANIFEST = "UNIT.json"
FORMAT = 1
_TEMPORARY_PREFIX = ".writing-"
_RETIRED_PREFIX = ".retired-"
_CHUNK = 1 << 20
T = TypeVar("T")
# Distributions whose versions change what a unit computes (a unit fitted by another version is recomputed);
# each with the other names its wheels go by.
DEPENDENCIES = {"multimodal": (), "autogluon.tabular": (), "autogluon.core": (), "lightgbm": (), "catboost": (),
                "xgboost": ("xgboost-cpu",), "scikit-learn": (), "numpy": (), "pandas": (), "torch": (),
                "torchvision": (), "tensorflow": ("tensorflow-cpu",), "keras": (), "pillow": ()}


def plain_name(text: str) -> str:
    """``text`` as it may appear in a unit name: letters, digits, ``_`` and ``-`` kept (60 at most), with a short
    hash of the whole text so that two texts never share a name (``img/photo`` and ``img_photo`` differ)."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", text)[:60]
    return f"{safe}-{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def fingerprint(**parts) -> str:
    """A SHA-256 hex digest of ``parts`` (JSON-serialisable values; keys in any order)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@functools.cache
def dependency_versions() -> dict[str, str]:
    """The installed version of each distribution in ``DEPENDENCIES`` (``"absent"`` when not installed); read
    once per process (every unit's fingerprint needs it)."""
    from importlib import metadata

    versions = {}
    for name, aliases in DEPENDENCIES.items():
        versions[name] = "absent"
        for distribution in (name, *aliases):
            try:
                versions[name] = metadata.version(distribution)
                break
            except metadata.PackageNotFoundError:
                continue
    return versions


@functools.cache
def library_digest() -> str:
    """A SHA-256 hex digest of this library's source files: a development build keeps its version number while
    its code changes, and a unit computed by other code is recomputed. Read once per process."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".json"):
            digest.update(path.relative_to(package).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def array_digest(array: np.ndarray) -> str:
    """A SHA-256 digest of an array's dtype, shape and values."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    """The SHA-256 hex digest of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class UnitStore:
    """The finished units under ``root``; ``resumed`` and ``computed`` name the units this job took from the
    store and the ones it wrote, for the log's summary."""

    root: Path
    resumed: list[str] = field(default_factory=list)
    computed: list[str] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)

    def unit_dir(self, name: str) -> Path:
        """Where unit ``name`` lives once finished."""
        if not name or "/" in name or name.startswith(".") or name != name.strip():
            raise ValueError(f"not a unit name: {name!r}")
        return self.root / name

    def load(self, name: str, expected: str) -> Path | None:
        """The directory of unit ``name`` when it is finished, intact and its fingerprint is ``expected``; else
        None, after removing a unit that is stale (another fingerprint: its inputs changed) or corrupt."""
        directory = self.unit_dir(name)
        if not directory.exists():
            return None
        problem = self._problem(directory, expected)
        if problem is None:
            self.resumed.append(name)
            return directory
        logger.warning("checkpoint unit '%s' is not reused (%s): computing it again", name, problem)
        self.discarded.append(name)
        self._retire(directory)
        return None

    def read(self, name: str, expected: str, reader: Callable[[Path], T]) -> T | None:
        """``reader(directory)`` of unit ``name`` when ``load`` finds it; None when it is not there or when the
        reader fails on it (files that a checkpoint's round trip through S3 left unreadable, e.g. without the
        empty directories S3 does not keep): such a unit is logged, removed and counted as discarded."""
        directory = self.load(name, expected)
        if directory is None:
            return None
        try:
            return reader(directory)
        except MemoryError:
            raise
        except Exception as error:  # noqa: BLE001 - any unit that cannot be read is computed again
            logger.warning("checkpoint unit '%s' is not reused (it could not be read: %s: %s): computing it again",
                           name, type(error).__name__, error)
            self.resumed.remove(name)
            self.discarded.append(name)
            self._retire(directory)
            return None

    def save(self, name: str, unit_fingerprint: str, write: Callable[[Path], None]) -> Path:
        """Run ``write(directory)`` on a fresh temporary directory, seal it with its manifest and move it into
        place as unit ``name``; return the unit's directory. When ``write`` raises (or the process is stopped
        meanwhile) no unit is left behind under that name, only a temporary directory that ``sweep`` removes."""
        final = self.unit_dir(name)
        temporary = self.root / f"{_TEMPORARY_PREFIX}{name}-{uuid.uuid4().hex[:12]}"
        temporary.mkdir()
        try:
            write(temporary)
            files = {}
            for path in sorted(p for p in temporary.rglob("*") if p.is_file()):
                relative = path.relative_to(temporary).as_posix()
                if relative == MANIFEST:
                    raise ValueError(f"a unit may not write its own {MANIFEST}")
                files[relative] = {"bytes": path.stat().st_size, "sha256": file_digest(path)}
            manifest = {"format": FORMAT, "unit": name, "fingerprint": unit_fingerprint, "files": files}
            with open(temporary / MANIFEST, "w") as handle:
                json.dump(manifest, handle, indent=1)
                handle.flush()
                os.fsync(handle.fileno())
            if final.exists():
                self._retire(final)
            try:
                os.replace(temporary, final)
            except OSError as error:
                if error.errno not in (errno.ENOTEMPTY, errno.EEXIST) or self._problem(final, unit_fingerprint):
                    raise
                # Another writer sealed the same unit in the meantime: its copy is as good as ours.
                shutil.rmtree(temporary, ignore_errors=True)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        self.computed.append(name)
        return final

    def sweep(self) -> None:
        """Remove what interrupted writers and replacements left: temporary and retired directories. Call it
        before any writer of this job starts (a writer's temporary directory is removed too)."""
        for path in self.root.iterdir():
            if path.name.startswith((_TEMPORARY_PREFIX, _RETIRED_PREFIX)):
                shutil.rmtree(path, ignore_errors=True)

    def size_bytes(self) -> int:
        """Bytes of every file under the store (what the checkpoint directory needs on disk)."""
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    def summary(self) -> str:
        """One line for the log: which units were resumed, computed and discarded."""
        def names(units: list[str]) -> str:
            return ", ".join(units) if units else "none"

        return (f"checkpoints in {self.root}: resumed {len(self.resumed)} ({names(self.resumed)}); computed "
                f"{len(self.computed)} ({names(self.computed)}); discarded {len(self.discarded)} "
                f"({names(self.discarded)})")

    def _problem(self, directory: Path, expected: str) -> str | None:
        try:
            manifest = json.loads((directory / MANIFEST).read_text())
            recorded, files = manifest["fingerprint"], manifest["files"]
            if manifest.get("format") != FORMAT:
                return f"format {manifest.get('format')!r}, this version writes {FORMAT}"
        except FileNotFoundError:
            return f"no {MANIFEST}: the unit was never finished"
        except (OSError, ValueError, KeyError, TypeError) as error:
            return f"its {MANIFEST} is unreadable: {error}"
        if recorded != expected:
            return "its inputs, hyperparameters or library versions changed"
        present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()} - {MANIFEST}
        if present != set(files):
            extra, missing = sorted(present - set(files)), sorted(set(files) - present)
            return f"its files differ from its manifest (missing {missing[:3]}, unexpected {extra[:3]})"
        for relative, entry in files.items():
            path = directory / relative
            if path.stat().st_size != entry.get("bytes") or file_digest(path) != entry.get("sha256"):
                return f"corrupt file {relative}"
        return None

    def _retire(self, directory: Path) -> None:
        retired = self.root / f"{_RETIRED_PREFIX}{directory.name}-{uuid.uuid4().hex[:12]}"
        try:
            os.replace(directory, retired)
        except FileNotFoundError:   # another writer retired it first
            return
        shutil.rmtree(retired, ignore_errors=True)
