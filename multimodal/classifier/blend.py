"""The final prediction: a weighted average of the fusion network and the modality models' own probabilities.

The weights come from greedy ensemble selection (Caruana et al., 2004; AutoGluon's ``WeightedEnsemble``
does the same) on the fusion network's hold-out rows, whose modality probabilities are out of fold. When
one member already says everything (on Titanic the joint member equals early fusion), the network only adds
noise to its calibration and the selection falls back on that member; where the network combines the
modalities well it keeps (nearly) all the weight. Saved as ``blend.json`` beside the network.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from multimodal.errors import PlatformError
from multimodal.classifier.fusion_network import FusionNetwork

FILE_NAME = "blend.json"
NETWORK = "fusion network"
_EPSILON = 1e-7


@dataclass
class FusionBlend:
    """``weights[0]`` times the network's probabilities plus ``weights[i]`` times member i's class probabilities
    (its columns ``member_starts[i-1]`` .. ``+ n_classes`` of the fusion input, renormalised without the
    sentinel)."""

    network: FusionNetwork
    names: list[str]
    weights: np.ndarray
    member_starts: list[int]

    @classmethod
    def network_only(cls, network: FusionNetwork) -> "FusionBlend":
        """The fusion network alone (no selection ran, or a model saved before blends existed)."""
        return cls(network, [NETWORK], np.ones(1), [])

    @classmethod
    def select(cls, network: FusionNetwork, inputs: np.ndarray, labels: np.ndarray, members: list[tuple[str, int]],
               rounds: int) -> "FusionBlend":
        """Greedy selection with replacement over the network and each member (``(name, start column)``):
        ``rounds`` times add the candidate that most lowers the log loss of the running average on
        ``inputs``/``labels`` (rows none of the candidates was trained on)."""
        n_classes = network.n_classes
        names = [NETWORK] + [name for name, _ in members]
        starts = [start for _, start in members]
        if rounds < 1 or not len(labels):
            return cls.network_only(network)
        candidates = [network.predict_proba(inputs)] + [_member_proba(inputs, start, n_classes) for start in starts]
        picked = np.zeros(len(candidates))
        total = np.zeros_like(candidates[0])
        for step in range(1, rounds + 1):
            losses = [_log_loss((total + candidate) / step, labels) for candidate in candidates]
            best = int(np.argmin(losses))  # ties go to the earliest candidate: the network
            picked[best] += 1
            total += candidates[best]
        return cls(network, names, picked / rounds, starts)

    def predict_proba(self, inputs: np.ndarray) -> np.ndarray:
        """Class probabilities (rows sum to 1) for fusion inputs."""
        proba = self.weights[0] * self.network.predict_proba(inputs) if self.weights[0] else 0.0
        n_classes = self.network.n_classes
        for weight, start in zip(self.weights[1:], self.member_starts):
            if weight:
                proba = proba + weight * _member_proba(np.asarray(inputs), start, n_classes)
        return np.asarray(proba, dtype=np.float64)

    def described(self) -> dict[str, float]:
        """The non-zero weights by candidate name, largest first."""
        order = np.argsort(-self.weights, kind="stable")
        return {self.names[i]: round(float(self.weights[i]), 4) for i in order if self.weights[i] > 0}

    def save(self, directory: Path) -> Path:
        """Write ``blend.json`` (names, weights, member start columns) under ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / FILE_NAME
        path.write_text(json.dumps({"names": self.names, "weights": [float(w) for w in self.weights],
                                    "member_starts": [int(s) for s in self.member_starts]}, indent=2))
        return path

    @classmethod
    def load(cls, directory: Path, network: FusionNetwork) -> "FusionBlend":
        """Read ``blend.json``; a model directory without one predicts with the network alone."""
        path = directory / FILE_NAME
        if not path.exists():
            return cls.network_only(network)
        try:
            data = json.loads(path.read_text())
            blend = cls(network, [str(n) for n in data["names"]], np.asarray(data["weights"], dtype=np.float64),
                        [int(s) for s in data["member_starts"]])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise PlatformError(f"{path} is not a blend file.", caused_by=error) from error
        if (len(blend.weights) != len(blend.names) or len(blend.member_starts) != len(blend.names) - 1
                or abs(blend.weights.sum() - 1) > 1e-6 or (blend.weights < 0).any()
                or any(s < 0 or s + network.n_classes > network.n_inputs for s in blend.member_starts)):
            raise PlatformError(f"{path}: weights and members do not fit the fusion network.")
        return blend


def describe_weights(weights: dict[str, float]) -> str:
    """One line, as ``described()`` orders them: ``fusion network 0.88, text 0.12``."""
    return ", ".join(f"{name} {weight:.2f}" for name, weight in weights.items())


def _member_proba(inputs: np.ndarray, start: int, n_classes: int) -> np.ndarray:
    """A member's class probabilities without its sentinel column, renormalised (uniform where all are 0)."""
    block = np.asarray(inputs[:, start:start + n_classes], dtype=np.float64)
    sums = block.sum(axis=1, keepdims=True)
    return np.where(sums > 0, block / np.where(sums > 0, sums, 1.0), 1.0 / n_classes)


def _log_loss(proba: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(proba[np.arange(len(labels)), labels], _EPSILON, None))))
