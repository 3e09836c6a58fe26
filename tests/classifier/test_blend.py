"""The blend (multimodal/classifier/blend.py): ensemble selection over the fusion network and the members, and blend.json."""
import json

import numpy as np
import pytest

from multimodal.classifier.blend import NETWORK, FusionBlend
from multimodal.errors import PlatformError
from multimodal.classifier.fusion_network import FusionNetwork


def _uniform_network(n_inputs, n_classes):
    """A real network whose output is uniform whatever the input (zero weights): an uninformative candidate."""
    return FusionNetwork([np.zeros((n_inputs, n_classes), np.float32)], [np.zeros(n_classes, np.float32)], ["softmax"])


def _inputs(labels, rng, n_classes=2):
    """Two members: a sharp one (columns 0-1), and a noisy one with a sentinel column (2-4)."""
    sharp = np.eye(n_classes)[labels] * 0.9 + 0.05
    noisy = np.concatenate([rng.dirichlet(np.ones(n_classes), len(labels)) * 0.8, np.full((len(labels), 1), 0.2)], 1)
    return np.concatenate([sharp, noisy], axis=1)


def test_selection_falls_back_on_a_member_that_beats_the_network():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    inputs = _inputs(labels, rng)
    blend = FusionBlend.select(_uniform_network(5, 2), inputs, labels, [("sharp", 0), ("noisy", 2)], rounds=25)
    assert blend.described() == {"sharp": 1.0}
    np.testing.assert_allclose(blend.predict_proba(inputs), inputs[:, :2])


def test_a_good_network_keeps_the_weight_and_ties_go_to_it():
    labels = np.array([0, 1] * 50)
    noisy_copy = np.eye(2)[labels] * 0.4 + 0.3
    inputs = np.concatenate([np.full((100, 2), 0.5), noisy_copy], axis=1)
    sharp = FusionNetwork([np.array([[0, 0], [0, 0], [10, -10], [-10, 10]], np.float32)], [np.zeros(2, np.float32)],
                          ["softmax"])   # reads the copy's columns, far more sure of them
    blend = FusionBlend.select(sharp, inputs, labels, [("flat", 0), ("copy", 2)], rounds=10)
    assert blend.described() == {NETWORK: 1.0} and blend.names == [NETWORK, "flat", "copy"]
    tie = FusionBlend.select(_uniform_network(4, 2), inputs, labels, [("flat", 0)], rounds=10)
    assert tie.described() == {NETWORK: 1.0}, "the network and a member saying the same: the network is kept"
    assert FusionBlend.select(sharp, inputs, labels, [("copy", 2)], rounds=0).described() == {NETWORK: 1.0}


def test_weights_sum_to_one_and_predictions_are_probabilities():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 300)
    members = [np.eye(3)[labels] * 0.5 + rng.dirichlet(np.ones(3), 300) * 0.5 for _ in range(2)]
    inputs = np.concatenate(members, axis=1)
    blend = FusionBlend.select(_uniform_network(6, 3), inputs, labels, [("a", 0), ("b", 3)], rounds=40)
    assert blend.weights.sum() == pytest.approx(1.0)
    assert set(blend.described()) == {"a", "b"}, "two members with independent noise: their average beats each"
    np.testing.assert_allclose(blend.predict_proba(inputs).sum(axis=1), 1.0)


def test_round_trip_and_damaged_or_missing_files(tmp_path):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 100)
    inputs = _inputs(labels, rng)
    network = _uniform_network(5, 2)
    blend = FusionBlend.select(network, inputs, labels, [("sharp", 0), ("noisy", 2)], rounds=25)
    blend.save(tmp_path)
    loaded = FusionBlend.load(tmp_path, network)
    assert np.array_equal(loaded.predict_proba(inputs), blend.predict_proba(inputs)) and loaded.names == blend.names
    assert FusionBlend.load(tmp_path / "older-model", network).described() == {NETWORK: 1.0}
    (tmp_path / "blend.json").write_text(json.dumps({"names": [NETWORK, "x"], "weights": [0.5, 0.5],
                                                     "member_starts": [4]}))
    with pytest.raises(PlatformError, match="do not fit"):
        FusionBlend.load(tmp_path, network)
    (tmp_path / "blend.json").write_text("{")
    with pytest.raises(PlatformError, match="not a blend file"):
        FusionBlend.load(tmp_path, network)
