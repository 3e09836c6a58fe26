"""Why this prediction: exact Shapley values of the modalities for each row's probabilities.

The players are the modalities of the schema (``text``, ``num``, ``cat``, and ``img/<column>`` per image
column: the names of ``modality_importance``). A coalition's value is the blend's probability when the
modalities outside it are missing: every member already predicts for "this modality is missing" (its
sentinel label, learnt from rows where it was), so a member that reads one modality gives its own output or
its output for a row without that modality (the same for every row: computed once), and the joint member
predicts again with the absent modalities' columns missing. For m modalities the 2^m coalitions then need
only the fusion network and the blend over member outputs (plus, per batch, one more joint-member call).
The values are exact: ``baseline`` (every modality missing) plus the modalities' values is the probability.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from multimodal.classifier.features import describe_row, split_modalities
from multimodal.errors import RowsWithoutData

MAX_MODALITIES = 12   # 4096 coalitions


@dataclass(frozen=True)
class Player:
    """One modality: its name and the columns that make it up."""

    name: str
    columns: tuple[str, ...]


def players_of(schema) -> list[Player]:
    """The modalities of a schema, in ``modality_importance``'s order (text, num, cat, then image columns)."""
    players = [Player(name, tuple(columns)) for name, columns in
               (("text", schema.text), ("num", schema.numeric), ("cat", schema.categorical)) if columns]
    return players + [Player(f"img/{column}", (column,)) for column in schema.image]


def shapley_weights(m: int) -> np.ndarray:
    """|S|! (m - |S| - 1)! / m! for |S| = 0..m-1."""
    return np.array([math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m) for s in range(m)])


def shapley_values(values: np.ndarray) -> np.ndarray:
    """Exact Shapley values from every coalition's value: ``values[S]`` (S a bit mask over m players, shape
    ``(2**m, ...)``) gives ``(m, ...)``; they sum to ``values[-1] - values[0]``."""
    m = int(round(math.log2(len(values))))
    if 2 ** m != len(values):
        raise ValueError(f"{len(values)} coalition values are not 2**m")
    weights = shapley_weights(m)
    sizes = np.array([bin(s).count("1") for s in range(2 ** m)])
    result = np.zeros((m,) + values.shape[1:])
    for i in range(m):
        without = np.array([s for s in range(2 ** m) if not s >> i & 1])
        result[i] = np.tensordot(weights[sizes[without]], values[without | (1 << i)] - values[without], axes=1)
    return result


class ModalityExplainer:
    """The coalition values of a fitted ``FusionLearner``'s predictions (see the module's docstring); each
    member's output for a row without its modalities is computed once and kept."""

    def __init__(self, learner):
        self.learner = learner
        self.players = players_of(learner.schema)
        if len(self.players) > MAX_MODALITIES:
            raise ValueError(f"{len(self.players)} modalities: exact explanations take at most {MAX_MODALITIES}")
        self._absent: dict[str, tuple[object, np.ndarray]] = {}

    def _reads(self, member) -> list[int]:
        """The players whose columns the member reads."""
        return [i for i, p in enumerate(self.players) if set(p.columns) & set(member.columns)]

    def _without_data(self, member) -> np.ndarray:
        """The member's output for a row in which every modality it reads is missing."""
        cached = self._absent.get(member.name)
        if cached is None or cached[0] is not member.predictor:
            columns = list(self.learner.schema.inference_columns)
            empty = pd.DataFrame([[None] * len(columns)], columns=columns, dtype=object)
            features, missing = member.features_and_missing(split_modalities(empty, self.learner.schema))
            cached = (member.predictor, member.predict_rows(features, missing)[0])
            self._absent[member.name] = cached
        return cached[1]

    def coalition_values(self, data: pd.DataFrame, image_folder=None, require_data: bool = False) -> np.ndarray:
        """The blend's probabilities of ``data``'s rows for every coalition: shape ``(2**m, rows, classes)``,
        ``[-1]`` the prediction itself, ``[0]`` every modality missing. ``require_data``: raise
        ``RowsWithoutData`` for rows whose every feature is missing (as ``predict_proba`` does)."""
        learner, m = self.learner, len(self.players)
        data = data.reset_index(drop=True)
        frames = split_modalities(data, learner.schema, image_folder)
        informed = np.zeros(len(data), dtype=bool)
        for kind, _ in frames.tabular():
            informed |= frames.missing_fraction[kind] < 1.0
        inputs_of = [member.features_and_missing(frames, lambda row: describe_row(data, row))
                     for member in learner.members]
        for _, missing in inputs_of:
            informed |= missing < 1.0
        if require_data and not informed.all():
            raise RowsWithoutData(np.flatnonzero(~informed))
        blocks = []   # per member: (players it reads, {subset mask over those players: outputs})
        for member, (features, missing) in zip(learner.members, inputs_of):
            reads = self._reads(member)
            outputs = {(1 << len(reads)) - 1: member.predict_rows(features, missing),
                       0: np.broadcast_to(self._without_data(member), (len(data), len(member.layout)))}
            outputs.update(self._partial_outputs(member, reads, data, image_folder))
            blocks.append((reads, outputs))
        width = sum(len(member.layout) for member in learner.members)
        inputs = np.empty((2 ** m, len(data), width), dtype=np.float32)
        for coalition in range(2 ** m):
            start = 0
            for reads, outputs in blocks:
                subset = sum(1 << k for k, i in enumerate(reads) if coalition >> i & 1)
                block = outputs[subset]
                inputs[coalition, :, start:start + block.shape[1]] = block
                start += block.shape[1]
        proba = learner.blend.predict_proba(inputs.reshape(-1, width))
        return proba.reshape(2 ** m, len(data), -1)

    def _partial_outputs(self, member, reads: list[int], data: pd.DataFrame, image_folder) -> dict[int, np.ndarray]:
        """A member that reads several modalities (the joint member): its outputs with some of them missing,
        all such variants of the rows predicted in one call."""
        subsets = list(range(1, (1 << len(reads)) - 1))
        if not subsets:
            return {}
        # Only the member's own columns matter; the others (images) are left out of the copies.
        own = data.assign(**{c: None for c in self.learner.schema.feature_columns if c not in member.columns})
        variants = []
        for subset in subsets:
            absent = [c for k, i in enumerate(reads) if not subset >> k & 1 for c in self.players[i].columns]
            variants.append(own.assign(**{c: None for c in absent}))
        stacked = pd.concat(variants, ignore_index=True)
        features, missing = member.features_and_missing(split_modalities(stacked, self.learner.schema, image_folder))
        proba = member.predict_rows(features, missing)
        n = len(data)
        return {subset: proba[k * n:(k + 1) * n] for k, subset in enumerate(subsets)}
