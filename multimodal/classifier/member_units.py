"""A member's fit as a checkpoint unit: its AutoGluon predictor, its training rows' (out-of-fold) probabilities,
its leaderboard and what it cost, reused by a restarted job when nothing it depends on has changed.

The fingerprint covers the member (name, kind, columns), its feature values and sentinel labels, the fit
options, the job's whole time budget, this library's code and the dependencies' versions; not the share the
member was given, which depends on when the job (re)started. A resumed member charges the seconds it took
when it was computed to the budget, so the members after it get the shares they would have had without the
interruption.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from multimodal.classifier.budget import TimeBudget
from multimodal.classifier.checkpoints import (
    UnitStore, array_digest, dependency_versions, fingerprint, library_digest, plain_name,
)
from multimodal.classifier.members import FitOptions, Member

logger = logging.getLogger(__name__)

PROBABILITIES = "train_probabilities.npy"
LEADERBOARD = "leaderboard.csv"
COST = "cost.json"
PREDICTOR = "predictor"


def unit_name(member: Member) -> str:
    """The checkpoint unit of a member's fit."""
    return f"member-{plain_name(member.name)}"


def frame_digest(frame: pd.DataFrame) -> str:
    """A SHA-256 digest of a frame's column names, dtypes and values (row order counts, the index does not)."""
    digest = hashlib.sha256(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def member_fingerprint(member: Member, frame: pd.DataFrame, labels: np.ndarray, n_classes: int,
                       options: FitOptions, budget_seconds: float) -> str:
    """What a member's fit depends on (see the module doc), as one digest."""
    return fingerprint(unit="member", name=member.name, kind=member.kind, columns=member.columns,
                       features=frame_digest(frame),
                       labels=array_digest(np.asarray(labels, dtype=np.int64)), n_classes=n_classes,
                       options=asdict(options), budget_seconds=round(float(budget_seconds), 3),
                       library=library_digest(), dependencies=dependency_versions())


def fit_or_resume(member: Member, frame: pd.DataFrame, labels: np.ndarray, n_classes: int, work_dir: Path, *,
                  budget: TimeBudget, members_left: int, options: FitOptions,
                  store: UnitStore | None, fit_member=None) -> np.ndarray:
    """The member fitted (``Member.fit``, with ``fit_member``) or, with a ``store`` holding its finished unit,
    loaded from it; returns the training rows' probabilities either way. With a store, a fresh fit is written to
    it as a unit."""
    if store is None:
        return member.fit(frame, labels, n_classes, work_dir, budget=budget, members_left=members_left,
                          options=options, fit_member=fit_member)
    name = unit_name(member)
    key = member_fingerprint(member, frame, labels, n_classes, options, budget.seconds)

    def read(unit: Path) -> tuple[np.ndarray, dict]:
        cost = json.loads((unit / COST).read_text())
        proba = np.load(unit / PROBABILITIES)
        member.load_predictor(unit / PREDICTOR, cost["layout"])
        member.predictor.leaderboard = pd.read_csv(unit / LEADERBOARD)
        return proba, cost

    resumed = store.read(name, key, read)
    if resumed is not None:
        proba, cost = resumed
        member.share = float(cost["share"])
        budget.charge(float(cost["seconds"]))
        logger.info("member '%s': resumed from checkpoint unit %s (fitted in %.1f s when it was computed)",
                    member.name, name, cost["seconds"])
        return proba

    def write(directory: Path) -> None:
        started = time.monotonic()
        proba = member.fit(frame, labels, n_classes, directory / PREDICTOR, budget=budget,
                           members_left=members_left, options=options, fit_member=fit_member)
        seconds = time.monotonic() - started
        np.save(directory / PROBABILITIES, proba)
        member.leaderboard.to_csv(directory / LEADERBOARD, index=False)
        (directory / COST).write_text(json.dumps({"seconds": round(seconds, 3), "share": member.share,
                                                  "layout": member.layout}))

    unit = store.save(name, key, write)
    leaderboard = member.leaderboard
    # The predictor was written under the unit's temporary name: load it from where the unit now lies.
    member.load_predictor(unit / PREDICTOR, member.layout)
    member.predictor.leaderboard = leaderboard
    return np.load(unit / PROBABILITIES)
