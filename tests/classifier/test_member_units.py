"""Members' fits kept as checkpoint units: a restarted fit reuses exactly the units whose inputs are unchanged."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST

from multimodal import MultimodalClassifier
from multimodal.classifier.budget import TimeBudget
from multimodal.classifier.checkpoints import MANIFEST
from multimodal.classifier.fusion_units import BLEND_UNIT, NETWORK_UNIT
from multimodal.classifier.member_units import COST, member_fingerprint, unit_name

# No image column: the units under test are the members' fits.
SETTINGS = {**FAST, "image_components": 0}


@pytest.fixture(scope="module")
def tabular_frames(train_frame, test_frame):
    keep = [c for c in train_frame.columns if not c.endswith("_image")]
    return train_frame[keep], test_frame[[c for c in keep if c != "label"]]


@pytest.fixture(scope="module")
def first_fit(tabular_frames, tmp_path_factory):
    train, test = tabular_frames
    checkpoints = tmp_path_factory.mktemp("checkpoints")
    model = MultimodalClassifier(**SETTINGS).fit(train, checkpoint_dir=checkpoints)
    return checkpoints, model, model.predict_proba(test)


def _units(directory, prefix=""):
    return sorted(p.name for p in directory.iterdir() if (p / MANIFEST).exists() and p.name.startswith(prefix))


def test_every_member_is_a_unit_and_a_second_fit_reuses_them_all(first_fit, tabular_frames, caplog):
    checkpoints, model, proba = first_fit
    assert _units(checkpoints) == sorted([unit_name(m) for m in model.members_] + [NETWORK_UNIT, BLEND_UNIT])
    train, test = tabular_frames
    caplog.set_level("INFO", logger="multimodal")
    again = MultimodalClassifier(**SETTINGS).fit(train, checkpoint_dir=checkpoints)
    resumed = [r.getMessage() for r in caplog.records if "resumed from checkpoint unit" in r.getMessage()]
    assert len(resumed) == len(model.members_) + 2, "every member, the fusion network and the blend"
    summary = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("checkpoints in"))
    assert f"resumed {len(model.members_) + 2}" in summary and "computed 0" in summary
    np.testing.assert_allclose(again.predict_proba(test).to_numpy(), proba.to_numpy(), atol=1e-5)
    assert [m.leaderboard is not None for m in again.members_] == [True] * len(again.members_)


def test_the_saved_model_shares_the_member_units_files_instead_of_copying_them(first_fit, tmp_path):
    checkpoints, model, _ = first_fit
    model.save(tmp_path / "model")
    for member in model.members_:
        unit = Path(member.predictor.path)
        assert unit.is_relative_to(checkpoints / unit_name(member))
        files = [p for p in unit.rglob("*") if p.is_file()]
        assert files
        for path in files:
            saved = tmp_path / "model" / member.path / path.relative_to(unit)
            assert saved.stat().st_ino == path.stat().st_ino, f"{saved} is a second copy of {path}"


def _restored_from_s3(source: Path, target: Path) -> None:
    """The checkpoint directory as SageMaker restores it from S3 into a new instance: the files only (S3
    keeps no empty directory), each written anew."""
    for path in source.rglob("*"):
        if path.is_file():
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(path.read_bytes())


def test_units_restored_as_s3_restores_them_are_all_reused(first_fit, tabular_frames, tmp_path, caplog):
    checkpoints, model, proba = first_fit
    _restored_from_s3(checkpoints, tmp_path)
    caplog.set_level("INFO", logger="multimodal")
    again = MultimodalClassifier(**SETTINGS).fit(tabular_frames[0], checkpoint_dir=tmp_path)
    summary = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("checkpoints in"))
    assert f"resumed {len(model.members_) + 2}" in summary and "computed 0" in summary, summary
    np.testing.assert_allclose(again.predict_proba(tabular_frames[1]).to_numpy(), proba.to_numpy(), atol=1e-5)


def test_a_resumed_member_charges_its_cost_to_the_budget(first_fit, tabular_frames):
    checkpoints, model, _ = first_fit
    costs = {u: json.loads((checkpoints / u / COST).read_text())["seconds"] for u in _units(checkpoints)
             if (checkpoints / u / COST).exists()}
    assert NETWORK_UNIT in costs and len(costs) == len(model.members_) + 1, "the blend alone costs nothing"
    budget = TimeBudget(120.0)
    started = budget.started
    MultimodalClassifier(**SETTINGS).fit(tabular_frames[0], time_budget=budget, checkpoint_dir=checkpoints)
    assert sum(costs.values()) > 0
    assert started - budget.started == pytest.approx(sum(costs.values())), \
        "the deadline moved earlier by what the reused units cost"


@pytest.mark.slow
def test_a_corrupt_unit_is_fitted_again_and_the_others_reused(tabular_frames, tmp_path, caplog):
    train, _ = tabular_frames
    MultimodalClassifier(**SETTINGS).fit(train, checkpoint_dir=tmp_path)
    units = _units(tmp_path, "member-")
    victim = tmp_path / units[0] / "train_probabilities.npy"
    victim.write_bytes(victim.read_bytes()[:-8])
    caplog.set_level("INFO", logger="multimodal")
    MultimodalClassifier(**SETTINGS).fit(train, checkpoint_dir=tmp_path)
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"checkpoint unit '{units[0]}' is not reused (corrupt file train_probabilities.npy)" in m
               for m in messages)
    assert sum(m.startswith("member '") and "resumed from checkpoint unit" in m for m in messages) == len(units) - 1
    assert _units(tmp_path, "member-") == units


def test_the_fingerprint_follows_the_features_the_labels_and_the_options(tabular_frames):
    from multimodal.classifier.members import FitOptions, ModalityMember

    frame = tabular_frames[0].filter(like="_num").iloc[:, :1].reset_index(drop=True)
    member = ModalityMember("num", list(frame.columns))
    labels = np.arange(len(frame)) % 3
    options = FitOptions(quality="toy", eval_metric="log_loss", stacking="out_of_fold", num_folds=2, seed=0)
    key = member_fingerprint(member, frame, labels, 3, options, 120)
    assert key == member_fingerprint(member, frame.copy(), labels.copy(), 3, options, 120)
    changed = frame.copy()
    changed.iloc[0, 0] = changed.iloc[0, 0] + 1
    assert member_fingerprint(member, changed, labels, 3, options, 120) != key
    assert member_fingerprint(member, frame, np.roll(labels, 1), 3, options, 120) != key
    assert member_fingerprint(member, frame, labels, 3, FitOptions(**{**options.__dict__, "seed": 1}), 120) != key
    assert member_fingerprint(member, frame, labels, 3, options, 121) != key
    assert member_fingerprint(member, frame.set_axis(frame.index + 5), labels, 3, options, 120) == key, \
        "the index is not part of the features"


# Runs after the other tests of the shared checkpoint directory: it changes the units there.
def test_a_fusion_only_hyperparameter_keeps_the_members_and_a_member_one_refits_them(first_fit, tabular_frames):
    checkpoints, model, _ = first_fit
    train, _ = tabular_frames
    store_before = {u: (checkpoints / u / MANIFEST).read_text() for u in _units(checkpoints)}
    MultimodalClassifier(**{**SETTINGS, "n_epochs": 30}).fit(train, checkpoint_dir=checkpoints)
    store_after = {u: (checkpoints / u / MANIFEST).read_text() for u in _units(checkpoints)}
    assert store_after.keys() == store_before.keys()
    assert [u for u in store_before if store_after[u] != store_before[u]] == [BLEND_UNIT, NETWORK_UNIT], \
        "n_epochs trains the network again, and the blend over it; the members stay"
    store_before = store_after

    other = tabular_frames[0].copy()
    other.loc[0, "label"] = other.loc[1, "label"] if other.loc[0, "label"] != other.loc[1, "label"] else \
        other.loc[2, "label"]
    members = {m.name for m in model.members_}
    refit = MultimodalClassifier(**SETTINGS).fit(other, checkpoint_dir=checkpoints)
    assert {m.name for m in refit.members_} == members
    assert all((checkpoints / u / MANIFEST).read_text() != store_before[u] for u in store_before), \
        "a changed label changes every member's sentinel labels: every member is fitted again"
