"""Managed spot training, run for real: `train` stopped by SIGTERM after some units are checkpointed, then
restarted on a fresh /opt/ml tree with the same checkpoint directory, as SageMaker restarts a spot job."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from multimodal import MultimodalClassifier
from multimodal.classifier.checkpoints import _TEMPORARY_PREFIX, MANIFEST
from multimodal.sagemaker.paths import SageMakerPaths
from sagemaker_tree import ROOT, TRAIN, make_tree, run_train
from synthetic import make_frame

HP = {"quality": "toy", "n_mins": "3", "num_folds": "2", "n_epochs": "40", "learning_rate": "0.01"}


def _frames():
    train, test = make_frame(72, seed=3), make_frame(20, seed=4)
    keep = [c for c in train.columns if not c.endswith("_image")]
    return train[keep], test[[c for c in keep if c != "label"]]


def _tree(directory: Path, checkpoints: Path | None) -> Path:
    root = make_tree(directory, {"train": [_frames()[0]]}, HP)
    return root if checkpoints is None else _checkpoint_config(root, checkpoints)


def _checkpoint_config(root: Path, checkpoints: Path) -> Path:
    (root / "input" / "config" / "checkpointconfig.json").write_text(json.dumps({"LocalPath": str(checkpoints)}))
    return root


def _finished_units(checkpoints: Path) -> list[str]:
    # A unit being written is sealed with its manifest under a temporary name, then renamed: not finished yet.
    return sorted(p.name for p in checkpoints.iterdir() if (p / MANIFEST).exists() and
                  not p.name.startswith(_TEMPORARY_PREFIX)) if checkpoints.exists() else []


def _stop_once(command: list[str], root: Path, checkpoints: Path, units: int, prefix: str = "") -> list[str]:
    """Run ``command`` (a train) on ``root``, SIGTERM it once ``units`` units whose names start with ``prefix``
    are finished, check that it stopped as SageMaker expects; return the finished units."""
    environment = {**os.environ, "SAGEMAKER_BASE_DIR": str(root), "MULTIMODAL_IMAGE_WEIGHTS": "random"}
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               cwd=ROOT)
    seen = []
    threading.Thread(target=lambda: seen.extend(process.stdout), daemon=True).start()
    deadline = time.monotonic() + 300
    while len([u for u in _finished_units(checkpoints) if u.startswith(prefix)]) < units:
        assert time.monotonic() < deadline and process.poll() is None, "".join(seen)[-3000:]
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143, "".join(seen)[-3000:]
    assert (root / "output" / "failure").read_text().startswith("TrainingStopped")
    kept = _finished_units(checkpoints)
    assert sorted(p.name for p in checkpoints.iterdir()) == kept, "no half-written unit is left behind"
    return kept


def _member_seconds(root: Path) -> float:
    timings = json.loads((root / "model" / "model_config.json").read_text())["training"]["timings"]["members"]
    return sum(entry["seconds"] or 0.0 for entry in timings.values())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = _tree(tmp_path_factory.mktemp("full"), None)
    started = time.monotonic()
    result = run_train(root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root, time.monotonic() - started


def test_a_stopped_job_resumes_from_its_checkpoints_and_predicts_as_an_uninterrupted_one(uninterrupted, tmp_path):
    full_root, _ = uninterrupted
    checkpoints = tmp_path / "s3-checkpoints"
    # Three of the four members: the first fit of a process also pays AutoGluon's warm-up, wherever it lands.
    kept = _stop_once([TRAIN], _tree(tmp_path / "first", checkpoints), checkpoints, 3)
    assert len(kept) >= 3

    # SageMaker restarts the job on a new instance: a fresh tree, the checkpoints copied in.
    second = _tree(tmp_path / "second", checkpoints)
    result = run_train(second)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = result.stdout + result.stderr
    for unit in kept:
        assert f"resumed from checkpoint unit {unit}" in log
    assert f"resumed {len(kept)} (" in log
    assert "checkpoints: cleared" in log and not any(checkpoints.iterdir()), "a finished job keeps no second copy"
    assert _member_seconds(second) < 0.8 * _member_seconds(full_root), (_member_seconds(second),
                                                                        _member_seconds(full_root))
    test = _frames()[1]
    resumed = MultimodalClassifier.load(second / "model").predict_proba(test).to_numpy()
    reference = MultimodalClassifier.load(full_root / "model").predict_proba(test).to_numpy()
    np.testing.assert_allclose(resumed, reference, atol=2e-3)
    assert (resumed.argmax(axis=1) == reference.argmax(axis=1)).all()


def test_without_a_checkpoint_config_nothing_is_checkpointed(uninterrupted):
    root, _ = uninterrupted
    assert not (root / "checkpoints").exists()


def test_local_path_under_opt_ml_stays_inside_a_local_tree(tmp_path):
    paths = SageMakerPaths(tmp_path)
    assert paths.checkpoint_dir(None) == tmp_path / "checkpoints"
    assert paths.checkpoint_dir("/opt/ml/checkpoints/job") == tmp_path / "checkpoints" / "job"
    assert paths.checkpoint_dir("/mnt/spot") == Path("/mnt/spot")
    assert SageMakerPaths(Path("/opt/ml")).checkpoint_dir(None) == Path("/opt/ml/checkpoints")


def test_a_malformed_checkpoint_config_fails_the_job_with_a_user_error(tmp_path):
    root = _tree(tmp_path, None)
    (root / "input" / "config" / "checkpointconfig.json").write_text(json.dumps({"LocalPath": 7}))
    result = run_train(root)
    assert result.returncode == 2
    assert "checkpointconfig.json" in (root / "output" / "failure").read_text().splitlines()[0]
    shutil.rmtree(root)


# The real train with embedding chunks of 16 rows (the product's are 1024): 72 images make 5 chunks, so the
# SIGTERM lands while the column is being embedded.
SMALL_CHUNKS = [sys.executable, "-c", "import sys; import multimodal.classifier.embedding_units as units; "
                "units.CHUNK_ROWS = 16; from multimodal.sagemaker.entrypoints import train_main; "
                "sys.exit(train_main())"]


@pytest.mark.slow
def test_a_job_stopped_while_it_embeds_an_image_column_resumes_mid_column(tmp_path):
    train, test = make_frame(72, seed=3), make_frame(20, seed=4).drop(columns="label")
    checkpoints = tmp_path / "s3-checkpoints"
    first = _checkpoint_config(make_tree(tmp_path / "first", {"train": [train]}, HP), checkpoints)
    kept = _stop_once(SMALL_CHUNKS, first, checkpoints, 2, prefix="embedding-")
    assert all(u.startswith("embedding-photo_image-") for u in kept) and 2 <= len(kept) < 5, kept

    second = _checkpoint_config(make_tree(tmp_path / "second", {"train": [train]}, HP), checkpoints)
    resumed = run_train(second, command=SMALL_CHUNKS, cwd=ROOT)
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-3000:]
    assert f"column 'photo_image': {len(kept)} of 5 embedding chunks resumed" in log

    reference = make_tree(tmp_path / "reference", {"train": [train]}, HP)
    result = run_train(reference)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    proba = MultimodalClassifier.load(second / "model").predict_proba(test).to_numpy()
    expected = MultimodalClassifier.load(reference / "model").predict_proba(test).to_numpy()
    np.testing.assert_allclose(proba, expected, atol=2e-3)
