"""The fusion network and the blend kept as checkpoint units: reused for the same inputs, recomputed when an
input, a setting or the unit's files change."""
from __future__ import annotations

import json

import numpy as np
import pytest

from multimodal.classifier.budget import TimeBudget
from multimodal.classifier.checkpoints import MANIFEST, UnitStore
from multimodal.classifier.fusion_units import (
    BLEND_UNIT, COST, NETWORK_UNIT, blend_or_resume, network_or_resume,
)
from multimodal.classifier.hyperparameters import defaults

PARAMS = {**defaults(), "n_epochs": 20, "learning_rate": 0.01}


def _inputs(seed: int = 0, rows: int = 200):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, rows)
    blocks = []
    for _ in range(2):   # two members, each three classes and a sentinel column
        raw = np.concatenate([np.eye(3)[labels] * 0.6 + rng.random((rows, 3)) * 0.4, np.zeros((rows, 1))], axis=1)
        blocks.append(raw / raw.sum(axis=1, keepdims=True))
    return np.concatenate(blocks, axis=1).astype(np.float32), labels


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    store = UnitStore(tmp_path_factory.mktemp("checkpoints"))
    inputs, labels = _inputs()
    network, rows = network_or_resume(inputs, labels, 3, PARAMS, TimeBudget(120), store)
    return store.root, inputs, labels, network, rows


def _manifest(root, unit):
    return (root / unit / MANIFEST).read_text()


def test_a_trained_network_is_a_unit_and_is_reused_with_its_hold_out_rows(trained, caplog):
    root, inputs, labels, network, rows = trained
    before = _manifest(root, NETWORK_UNIT)
    store = UnitStore(root)
    budget = TimeBudget(120)
    started = budget.started
    caplog.set_level("INFO", logger="multimodal")
    again, again_rows = network_or_resume(inputs, labels, 3, PARAMS, budget, store)
    assert store.resumed == [NETWORK_UNIT] and store.computed == []
    assert any("fusion network: resumed from checkpoint unit fusion-network" in r.getMessage() for r in caplog.records)
    assert np.array_equal(again.predict_proba(inputs), network.predict_proba(inputs))
    assert np.array_equal(again_rows, rows) and len(rows) == round(0.2 * len(labels))
    cost = json.loads((root / NETWORK_UNIT / COST).read_text())["seconds"]
    assert cost > 0 and started - budget.started == pytest.approx(cost), "the reused network's cost is charged"
    assert _manifest(root, NETWORK_UNIT) == before


@pytest.mark.parametrize("change", ["inputs", "labels", "setting", "budget"])
def test_a_changed_input_setting_or_budget_trains_the_network_again(trained, tmp_path, change):
    _, inputs, labels, _, _ = trained
    store = UnitStore(tmp_path)
    network_or_resume(inputs, labels, 3, PARAMS, TimeBudget(120), store)
    params, budget = dict(PARAMS), TimeBudget(120)
    if change == "inputs":
        inputs = inputs.copy()
        inputs[0, 0] += 0.01
    elif change == "labels":
        labels = np.roll(labels, 1)
    elif change == "setting":
        params["early_stopping_patience"] += 1
    else:
        budget = TimeBudget(121)
    store = UnitStore(tmp_path)
    network_or_resume(inputs, labels, 3, params, budget, store)
    assert store.resumed == [] and store.computed == [NETWORK_UNIT] and store.discarded == [NETWORK_UNIT]


def test_a_corrupt_network_unit_is_trained_again(trained, tmp_path, caplog):
    _, inputs, labels, network, _ = trained
    caplog.set_level("INFO", logger="multimodal")
    store = UnitStore(tmp_path)
    network_or_resume(inputs, labels, 3, PARAMS, TimeBudget(120), store)
    weights = tmp_path / NETWORK_UNIT / "fusion.npz"
    data = weights.read_bytes()
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    store = UnitStore(tmp_path)
    again, _ = network_or_resume(inputs, labels, 3, PARAMS, TimeBudget(120), store)
    assert store.discarded == [NETWORK_UNIT] and store.computed == [NETWORK_UNIT]
    assert "corrupt file fusion.npz" in caplog.text
    # The same seed trains the same network.
    np.testing.assert_allclose(again.predict_proba(inputs), network.predict_proba(inputs), atol=1e-5)


def test_the_blend_is_a_unit_that_follows_the_network_the_rows_and_the_rounds(trained, tmp_path):
    _, inputs, labels, network, rows = trained
    members = [("a", 0), ("b", 4)]
    store = UnitStore(tmp_path)
    blend = blend_or_resume(network, inputs[rows], labels[rows], members, 10, store)
    assert store.computed == [BLEND_UNIT]
    store = UnitStore(tmp_path)
    again = blend_or_resume(network, inputs[rows], labels[rows], members, 10, store)
    assert store.resumed == [BLEND_UNIT]
    assert again.names == blend.names and np.array_equal(again.weights, blend.weights)
    assert again.member_starts == blend.member_starts
    other, _ = network_or_resume(inputs, labels, 3, {**PARAMS, "seed": 1}, TimeBudget(120), None)
    for changed in [dict(rounds=11), dict(network=other), dict(members=[("a", 0), ("c", 4)]),
                    dict(codes=np.roll(labels[rows], 1))]:
        arguments = dict(network=network, inputs=inputs[rows], codes=labels[rows], members=members, rounds=10)
        store = UnitStore(tmp_path)
        blend_or_resume(**{**arguments, **changed}, store=store)
        assert store.computed == [BLEND_UNIT] and store.discarded == [BLEND_UNIT], changed
        blend_or_resume(**arguments, store=UnitStore(tmp_path))


def test_without_a_store_nothing_is_written(trained):
    _, inputs, labels, network, rows = trained
    fresh, fresh_rows = network_or_resume(inputs, labels, 3, PARAMS, TimeBudget(120), None)
    np.testing.assert_allclose(fresh.predict_proba(inputs), network.predict_proba(inputs), atol=1e-5)
    assert np.array_equal(fresh_rows, rows)
