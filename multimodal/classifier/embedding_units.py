"""An image column's embeddings as checkpoint units, one per chunk of ``CHUNK_ROWS`` rows, so that a long
embedding interrupted mid-column resumes at the chunk it was in.

A chunk's fingerprint covers its cells (the base64 text), its position in the column, the ResNet50 weights
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
                    store: UnitStore | None, budget: TimeBudget | None) -> tuple[np.ndarray, np.ndarray, int]:
    """``embedder.embed`` of the column's cells; with a ``store``, chunk by chunk, each chunk reused from the
    store when it is there for the same inputs and written to it when it is computed."""
    if store is None or len(cells) == 0:
        return embedder.embed(cells, column, describe_row)
    features, missing, undecodable, resumed = [], [], 0, 0
    starts = range(0, len(cells), CHUNK_ROWS)
    for index, start in enumerate(starts):
        chunk = cells[start:start + CHUNK_ROWS]
        name = unit_name(column, index)
        key = fingerprint(unit="embedding", column=column, start=start, rows=len(chunk), cells=cells_digest(chunk),
                          weights=embedder.identity.sha256, precision=embedder.precision,
                          library=library_digest(), dependencies=dependency_versions())
        found = store.read(name, key, lambda unit, rows=len(chunk): _read_chunk(unit, rows))
        if found is None:
            def describe(row: int, offset=start) -> str:
                return describe_row(offset + row) if describe_row is not None else f"row {offset + row + 1}"

            computed = {}

            def write(directory: Path, chunk=chunk, describe=describe, computed=computed) -> None:
                started = time.monotonic()
                values, absent, bad = embedder.embed(chunk, column, describe)
                cost = {"seconds": round(time.monotonic() - started, 3), "undecodable": int(bad)}
                np.savez(directory / ARRAYS, features=values, missing=absent)
                (directory / COST).write_text(json.dumps(cost))
                computed["chunk"] = (values, absent, cost)

            store.save(name, key, write)
            found = computed["chunk"]
        else:
            resumed += 1
            if budget is not None:
                budget.charge(found[2]["seconds"])
        features.append(found[0])
        missing.append(found[1])
        undecodable += int(found[2]["undecodable"])
    if resumed:
        logger.info("column '%s': %d of %d embedding chunks (%d rows each) resumed from checkpoint units", column,
                    resumed, len(starts), CHUNK_ROWS)
    return np.concatenate(features), np.concatenate(missing), undecodable


def _read_chunk(unit: Path, rows: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """A chunk unit's features, missing flags and cost; ``ValueError`` when it does not hold ``rows`` rows."""
    with np.load(unit / ARRAYS) as arrays:
        values, absent = arrays["features"], arrays["missing"]
    if len(values) != rows or len(absent) != rows:
        raise ValueError(f"{len(values)} rows of features for a chunk of {rows} rows")
    return values, absent, json.loads((unit / COST).read_text())
