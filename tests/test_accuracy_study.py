"""The accuracy study's own arithmetic (bench/accuracy.py): the paired bootstrap, the README section and
its rewrite between the markers. The study itself fits real models for half an hour; see the README."""
import importlib
import os
import sys

import numpy as np
import pytest
from sklearn.metrics import log_loss

from sagemaker_tree import ROOT


@pytest.fixture(scope="module")
def study():
    weights = os.environ.get("MULTIMODAL_IMAGE_WEIGHTS")
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        yield importlib.import_module("accuracy")
    finally:
        sys.path.remove(str(ROOT / "bench"))
        # bench/common.py asks for random image weights for the whole process; the other tests choose their own
        if weights is None:
            os.environ.pop("MULTIMODAL_IMAGE_WEIGHTS", None)
        else:
            os.environ["MULTIMODAL_IMAGE_WEIGHTS"] = weights


def test_the_paired_bootstrap_gives_the_observed_difference_inside_its_interval(study):
    random = np.random.default_rng(0)
    truth = random.integers(0, 3, 200)
    sharp = np.full((200, 3), 0.1)
    sharp[np.arange(200), truth] = 0.8                       # right on every row
    vague = random.dirichlet(np.ones(3), 200)
    differences = study.paired_bootstrap(truth, sharp, vague, rounds=300)
    observed_loss = log_loss(truth, sharp, labels=[0, 1, 2]) - log_loss(truth, vague, labels=[0, 1, 2])
    assert differences["log_loss"][0] == pytest.approx(observed_loss)
    assert differences["accuracy"][0] == pytest.approx(1.0 - (vague.argmax(1) == truth).mean())
    for metric, (observed, low, high) in differences.items():
        assert low <= observed <= high and low < high, metric
    assert differences["log_loss"][2] < 0 < differences["accuracy"][1]   # sharp is better beyond the noise
    same = study.paired_bootstrap(truth, vague, vague, rounds=50)
    assert all(values == pytest.approx((0.0, 0.0, 0.0)) for values in same.values())


def test_the_readme_section_has_a_table_per_dataset_and_replaces_only_the_marked_text(study, tmp_path, monkeypatch):
    row = {"accuracy": 0.75, "balanced_accuracy": 0.7, "macro_f1": 0.72, "log_loss": 0.5}
    results = {"toy": ("a toy dataset, 10 rows", [{"model": study.DEFAULT, **row, "seconds": 12.3},
                                                  {"model": study.EARLY, **row, "seconds": None}],
                       {study.EARLY: {"accuracy": (0.01, -0.02, 0.04), "log_loss": (-0.03, -0.05, -0.01)}},
                       {"importance": {"text": {"log_loss_increase": 0.2, "accuracy_drop": 0.1}},
                        "blend": {"fusion network": 0.8, "text": 0.2}})}
    section = study.markdown(results, {"quality": "light", "n_mins": 3})
    assert f"| {study.DEFAULT} | 0.7500 | 0.7000 | 0.7200 | 0.5000 | 12 |" in section
    assert f"| {study.EARLY} | 0.7500 | 0.7000 | 0.7200 | 0.5000 | — |" in section
    assert "accuracy +0.010 [-0.020, +0.040], log loss -0.030 [-0.050, -0.010]" in section
    assert "text +0.200 log loss / -10.0 pt accuracy" in section and "fusion network 0.80, text 0.20" in section
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{study.README_START}\nold table\n{study.README_END}\nverdict stays\n")
    monkeypatch.setattr(study.common, "ROOT", tmp_path)
    study.write_readme(section)
    text = readme.read_text()
    assert text.startswith(f"before\n{study.README_START}\nMeasured by") and "old table" not in text
    assert text.endswith(f"{study.README_END}\nverdict stays\n") and section in text


@pytest.fixture(scope="module")
def broad_study(study):
    return importlib.import_module("study")


def _record(model, split_seed, proba, truth):
    return {"dataset": "titanic", "split": split_seed, "model": model, "shapes": ["few rows"], "classes": ["a", "b"],
            "truth": truth, "proba": proba, "majority": "a", "seconds": 10.0}


def test_a_retired_default_keeps_its_results_and_is_compared_with_the_new_one(broad_study, tmp_path, monkeypatch):
    import json

    monkeypatch.setattr(broad_study, "RESULTS", tmp_path)
    truth = [0, 1, 0, 1, 1, 0, 0, 1]
    sharp = [[0.9, 0.1] if t == 0 else [0.1, 0.9] for t in truth]
    vague = [[0.6, 0.4] if i % 4 else [0.4, 0.6] for i, t in enumerate(truth)]
    for split_seed in (0, 1):
        folder = tmp_path / "4min" / "titanic" / f"split{split_seed}"
        folder.mkdir(parents=True)
        (folder / "ours.json").write_text(json.dumps(_record("ours", split_seed, vague, truth)))
    broad_study.retire(["titanic"], "ours@old", 4.0)
    kept = sorted(tmp_path.glob("4min/titanic/split*/*.json"))
    assert [p.name for p in kept] == ["ours@old.json", "ours@old.json"]
    assert all(json.loads(p.read_text())["model"] == "ours@old" for p in kept), "the record is renamed with its file"
    with pytest.raises(SystemExit):
        broad_study.retire(["titanic"], "old", 4.0)
    for split_seed in (0, 1):
        folder = tmp_path / "4min" / "titanic" / f"split{split_seed}"
        (folder / "ours.json").write_text(json.dumps(_record("ours", split_seed, sharp, truth)))
    row = [line for line in broad_study.compare(4.0, "ours", "ours@old").splitlines()
           if line.startswith("| titanic")]
    observed = log_loss(truth * 2, sharp * 2) - log_loss(truth * 2, vague * 2)
    accuracy_gain = 1.0 - np.mean(np.argmax(vague, 1) == truth)
    assert row and row[0].startswith("| titanic | 2 | 1.000 | ")
    assert f"{accuracy_gain:+.3f} [" in row[0] and f"{observed:+.3f} [" in row[0]
