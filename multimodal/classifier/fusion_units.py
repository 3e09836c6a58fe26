"""The fusion network and the blend as checkpoint units, the last two units of a fit: a job stopped while it
writes its reports or saves the model resumes with every trained part.

The network's fingerprint covers the fusion inputs (the members' out-of-fold probabilities, themselves a
function of every member unit), the label codes, the network's hyperparameters, the job's whole time budget,
this library's code and the dependencies' versions. The blend's covers the network's weights, the hold-out
rows' inputs and labels, the members' columns and the number of selection rounds. A resumed network charges
the seconds it took when it was computed to the time budget.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np

from multimodal.classifier.blend import FusionBlend
from multimodal.classifier.budget import TimeBudget
from multimodal.classifier.checkpoints import (
    UnitStore, array_digest, dependency_versions, fingerprint, library_digest,
)
from multimodal.classifier.fusion_network import FusionNetwork

logger = logging.getLogger(__name__)

NETWORK_UNIT = "fusion-network"
BLEND_UNIT = "blend"
VALIDATION_ROWS = "validation_rows.npy"
COST = "cost.json"
# The hyperparameters the network's training reads.
NETWORK_SETTINGS = ("n_epochs", "batch_size", "validation_fraction", "early_stopping_patience", "learning_rate",
                    "seed")


def network_digest(network: FusionNetwork) -> str:
    """A SHA-256 digest of the network's layers (weights and activations)."""
    digest = hashlib.sha256(json.dumps(network.activations).encode())
    for array in (*network.kernels, *network.biases):
        digest.update(array_digest(array).encode())
    return digest.hexdigest()


def network_or_resume(inputs: np.ndarray, codes: np.ndarray, n_classes: int, params: dict, budget: TimeBudget,
                      store: UnitStore | None) -> tuple[FusionNetwork, np.ndarray]:
    """``(network, validation_rows)`` of ``fusion.train_network`` on the fusion inputs, within what the budget
    leaves it; with a ``store`` holding the finished unit for the same inputs, loaded from it instead, and a
    fresh network written to it."""
    def train() -> tuple[FusionNetwork, np.ndarray]:
        from multimodal.classifier import fusion

        return fusion.train_network(
            inputs, codes, n_classes, epochs=params["n_epochs"], batch_size=params["batch_size"],
            validation_fraction=params["validation_fraction"], patience=params["early_stopping_patience"],
            learning_rate=params["learning_rate"], seed=params["seed"], time_limit=budget.fusion_seconds())

    if store is None:
        return train()
    key = fingerprint(unit="fusion-network", inputs=array_digest(inputs),
                      codes=array_digest(np.asarray(codes, dtype=np.int64)), n_classes=n_classes,
                      settings={name: params[name] for name in NETWORK_SETTINGS},
                      budget_seconds=round(budget.seconds, 3), library=library_digest(),
                      dependencies=dependency_versions())
    resumed = store.read(NETWORK_UNIT, key, lambda unit: (FusionNetwork.load(unit), np.load(unit / VALIDATION_ROWS),
                                                          float(json.loads((unit / COST).read_text())["seconds"])))
    if resumed is not None:
        network, rows, seconds = resumed
        budget.charge(seconds)
        logger.info("fusion network: resumed from checkpoint unit %s (trained in %.1f s when it was computed)",
                    NETWORK_UNIT, seconds)
        return network, rows

    trained = {}

    def write(directory: Path) -> None:
        started = time.monotonic()
        trained["network"], trained["rows"] = train()
        trained["network"].save(directory)
        np.save(directory / VALIDATION_ROWS, trained["rows"])
        (directory / COST).write_text(json.dumps({"seconds": round(time.monotonic() - started, 3)}))

    store.save(NETWORK_UNIT, key, write)
    return trained["network"], trained["rows"]


def blend_or_resume(network: FusionNetwork, inputs: np.ndarray, codes: np.ndarray, members: list[tuple[str, int]],
                    rounds: int, store: UnitStore | None) -> FusionBlend:
    """``FusionBlend.select`` over the network and ``members`` (``(name, start column)``) on hold-out rows'
    ``inputs``/``codes``; with a ``store``, reused from it or written to it as the blend unit."""
    def select() -> FusionBlend:
        return FusionBlend.select(network, inputs, codes, members, rounds)

    if store is None:
        return select()
    key = fingerprint(unit="blend", network=network_digest(network), inputs=array_digest(inputs),
                      codes=array_digest(np.asarray(codes, dtype=np.int64)), members=members, rounds=rounds,
                      library=library_digest())
    resumed = store.read(BLEND_UNIT, key, lambda unit: FusionBlend.load(unit, network))
    if resumed is not None:
        logger.info("blend: resumed from checkpoint unit %s", BLEND_UNIT)
        return resumed
    blend = select()
    store.save(BLEND_UNIT, key, blend.save)
    return blend
