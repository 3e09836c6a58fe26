"""An image column's embeddings as checkpoint units, one per chunk of ``CHUNK_ROWS`` rows, so that a long
embedding interrupted mid-column resumes at the chunk it was in.

A chunk's fingerprint covers its cells (the base64 text, or the path of an image file: a file replaced under
the same path between two runs of one job is not seen), its position in the column, the ResNet50 weights
(their SHA-256) and precision, this library's code and the dependencies' versions. A row's embedding does
not depend on the batch or chunk it is computed in, so a resumed column equals one embedded in one go. A
resumed chunk charges the seconds it took when it was computed to the time budget.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from multimodal.classifier.budget import TimeBudget
from multimodal.classifier.checkpoints import (
    UnitStore, dependency_versions, fingerprint, library_digest, plain_name,
)

logger = logging.getLogger(__name__)

CHUNK_ROWS = 1024
ARRAYS = "embeddings.npz"
COST = "cost.json"


def unit_name(column: str, index: int) -> str:
    """The unit of chunk ``index`` of ``column``: the column name made safe for a folder name, with a short hash
    of the real name so that two columns never share units."""
    return f"embedding-{plain_name(column)}-{index:05d}"


def cells_digest(cells: Sequence) -> str:
    """A SHA-256 digest of a chunk's cells (each as text; a missing cell differs from an empty one)."""
    digest = hashlib.sha256()
    for cell in cells:
        text = "\0missing" if not isinstance(cell, str) else cell
        digest.update(len(text).to_bytes(8, "little"))
        digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def embed_resumable(embedder, cells: Sequence, column: str, describe_row: Callable[[int], str] | None,
                    store: UnitStore | None, budget: TimeBudget | None,
                    executor=None, folder=None) -> tuple[np.ndarray, np.ndarray, int]:
    """``embedder.embed`` of the column's cells (paths read in ``folder``, an ``image_files.ImageFolder``); with a ``store`` or an ``executor`` of several places, chunk by
    chunk: each chunk reused from the store when it is there for the same inputs, else computed at one of the
    executor's places (``multimodal.classifier.executors``) and written to the store."""
    from multimodal.classifier.executors import LocalExecutor, run_units

    executor = executor or LocalExecutor()
    if len(cells) == 0 or (store is None and len(executor.places) == 1):
        return embedder.embed(cells, column, describe_row, folder)
    chunks = executor.chunks(len(cells), CHUNK_ROWS)
    found, to_compute, pins = {}, [], []
    for index, (start, stop, place) in enumerate(chunks):
        chunk = cells[start:stop]
        key = fingerprint(unit="embedding", column=column, start=start, rows=len(chunk), cells=cells_digest(chunk),
                          weights=embedder.identity.sha256, precision=embedder.precision,
                          library=library_digest(), dependencies=dependency_versions())
        if store is not None:
            found[index] = store.read(unit_name(column, index), key, lambda unit, n=len(chunk): _read_chunk(unit, n))
        if found.get(index) is None:
            to_compute.append((f"embedding {column} rows {start + 1}-{stop}", (index, start, stop, key)))
            pins.append(place)
    resumed = sum(value is not None for value in found.values())
    for value in found.values():
        if value is not None and budget is not None:
            budget.charge(value[2]["seconds"])

    def compute(place: str, item, not_started: int):
        index, start, stop, key = item
        chunk = cells[start:stop]

        def describe(row: int, offset=start) -> str:
            return describe_row(offset + row) if describe_row is not None else f"row {offset + row + 1}"

        started = time.monotonic()
        values, absent, bad = executor.embed_chunk(place, embedder, column, start, chunk, describe, folder)
        cost = {"seconds": round(time.monotonic() - started, 3), "undecodable": int(bad)}
        if store is not None:
            def write(directory: Path) -> None:
                np.savez(directory / ARRAYS, features=values, missing=absent)
                (directory / COST).write_text(json.dumps(cost))

            store.save(unit_name(column, index), key, write)
        return index, (values, absent, cost)

    found.update(run_units(executor, to_compute, compute, pins))
    if resumed:
        logger.info("column '%s': %d of %d embedding chunks resumed from checkpoint units", column, resumed,
                    len(found))
    ordered = [found[index] for index in sorted(found)]
    return (np.concatenate([f[0] for f in ordered]), np.concatenate([f[1] for f in ordered]),
            sum(int(f[2]["undecodable"]) for f in ordered))


def _read_chunk(unit: Path, rows: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """A chunk unit's features, missing flags and cost; ``ValueError`` when it does not hold ``rows`` rows."""
    with np.load(unit / ARRAYS) as arrays:
        values, absent = arrays["features"], arrays["missing"]
    if len(values) != rows or len(absent) != rows:
        raise ValueError(f"{len(values)} rows of features for a chunk of {rows} rows")
    return values, absent, json.loads((unit / COST).read_text())
