"""Multi-instance training jobs, run for real: every host is the real `train` in a network namespace of its own
(its own address, host names and /opt/ml tree), pinned to its own core, as SageMaker runs one container per
instance."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from multimodal import MultimodalClassifier
from multimodal.tooling.local_hosts import NamespacedHosts
from sagemaker_tree import TRAIN, make_tree
from synthetic import make_frame

UNAVAILABLE = NamespacedHosts.available()
pytestmark = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"no network namespaces here: {UNAVAILABLE}")

HP = {"quality": "toy", "n_mins": "4", "num_folds": "2", "n_epochs": "40", "learning_rate": "0.01"}
CORES = max(1, len(os.sched_getaffinity(0)))


def _tree(directory: Path, frame, host: str, hosts: list[str], hyperparameters=HP) -> Path:
    root = make_tree(directory, {"train": [frame]}, hyperparameters)
    (root / "input" / "config" / "resourceconfig.json").write_text(json.dumps(
        {"current_host": host, "hosts": hosts, "network_interface_name": "eth0"}))
    (root / "tmp").mkdir()
    return root


def _environment(root: Path) -> dict:
    return {"SAGEMAKER_BASE_DIR": str(root), "TMPDIR": str(root / "tmp"), "MULTIMODAL_IMAGE_WEIGHTS": "random",
            "HF_HUB_OFFLINE": "1", "HOME": str(root / "tmp"), "RAY_USAGE_STATS_ENABLED": "0"}


def _start_job(net: NamespacedHosts, directory: Path, frame, hyperparameters=HP):
    trees, processes = [], []
    for i, host in enumerate(net.names):
        root = _tree(directory / host, frame, host, net.names, hyperparameters)
        log = open(root / "train.log", "w")
        processes.append(net.start(i, [TRAIN], _environment(root), cpus=str(i % CORES), stdout=log,
                                   stderr=subprocess.STDOUT))
        trees.append(root)
    return trees, processes


def _wait(processes, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    codes = []
    for process in processes:
        codes.append(process.wait(timeout=max(1.0, deadline - time.monotonic())))
    return codes


def _log(root: Path) -> str:
    return (root / "train.log").read_text(errors="replace")


FRAME, TEST = make_frame(160, seed=5), make_frame(30, seed=6).drop(columns=["label"])


@pytest.fixture(scope="module")
def one_host_model(tmp_path_factory):
    """The model of a one-host job on ``FRAME``, pinned to core 0 like each host of the namespaced jobs."""
    single = _tree(tmp_path_factory.mktemp("single"), FRAME, "algo-1", ["algo-1"])
    with open(single / "train.log", "w") as log:
        subprocess.run(["taskset", "-c", "0", TRAIN], env={**os.environ, **_environment(single)}, stdout=log,
                       stderr=subprocess.STDOUT, timeout=600, check=False)
    assert (single / "model" / "model_config.json").is_file(), _log(single)[-3000:]
    return single / "model"


def _check_two_host_model(leader: Path, one_host_model: Path) -> list[dict]:
    """The leader's model used both hosts and predicts what the one-host model predicts; returns the
    embedding units algo-2 ran."""
    config = json.loads((leader / "model" / "model_config.json").read_text())
    assert config["training"]["rows"] == len(FRAME)
    distributed = config["training"]["distributed"]
    assert distributed["joined"] == ["algo-1", "algo-2"]
    assert distributed["work"]["algo-2"]["units"] >= 1 and distributed["work"]["algo-1"]["units"] >= 1
    embedded = [u for u in distributed["units"] if u["place"] == "algo-2" and u["unit"].startswith("embedding")]
    assert embedded and any(u["place"] == "algo-2" and u["unit"].startswith("member") for u in distributed["units"])
    two_hosts = MultimodalClassifier.load(leader / "model").predict_proba(TEST).to_numpy()
    one_host = MultimodalClassifier.load(one_host_model).predict_proba(TEST).to_numpy()
    np.testing.assert_allclose(two_hosts, one_host, atol=1e-6)
    return embedded


def test_a_two_host_job_uses_both_hosts_and_predicts_what_a_one_host_job_predicts(tmp_path, one_host_model):
    """FullyReplicated: every host reads its own copy of the channel; the model is the one-host model."""
    with NamespacedHosts(2) as net:
        trees, processes = _start_job(net, tmp_path / "pair", FRAME)
        codes = _wait(processes, 600)
    leader, worker = trees
    assert codes == [0, 0], _log(leader)[-4000:] + "\n---\n" + _log(worker)[-3000:]
    assert not any((worker / "model").iterdir()), "only the leader writes the model"
    _check_two_host_model(leader, one_host_model)
    assert "reports the job done" in _log(worker)


def _wait_for_work(leader: Path, worker: Path, timeout: float = 300) -> None:
    """Until the worker joined and the leader's fit is under way."""
    deadline = time.monotonic() + timeout
    while "working for it until the job ends" not in _log(worker) and time.monotonic() < deadline:
        time.sleep(0.5)
    while "ready in" not in _log(leader) and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(3)


@pytest.mark.parametrize("stopped, sig", [
    (1, signal.SIGKILL),
    pytest.param(1, signal.SIGTERM, marks=pytest.mark.slow),
    pytest.param(0, signal.SIGTERM, marks=pytest.mark.slow),
], ids=["worker-killed", "worker-sigterm", "leader-sigterm"])
def test_a_host_stopped_mid_job_stops_every_host_within_a_minute(tmp_path, stopped, sig):
    """SIGKILL or SIGTERM (as `docker stop` sends it to the container's first process) to one host mid-job:
    every host exits non-zero within a minute, the leader's failure file names the reason, and no model."""
    frame = make_frame(160, seed=5)
    with NamespacedHosts(2) as net:
        trees, processes = _start_job(net, tmp_path / "pair", frame)
        leader, worker = trees
        _wait_for_work(leader, worker)
        signalled = time.monotonic()
        if sig == signal.SIGKILL:
            net.stop(processes[stopped], sig)
        else:
            processes[stopped].send_signal(sig)
        codes = _wait(processes, 120)
        took = time.monotonic() - signalled
    logs = _log(leader)[-3000:] + "\n---\n" + _log(worker)[-3000:]
    assert all(code != 0 for code in codes), (codes, logs)
    assert took < 60, f"the job took {took:.0f} s to stop\n{logs}"
    headline = (leader / "output" / "failure").read_text().splitlines()[0]
    if stopped == 0:
        assert codes[0] == 143 and "stopped by SIGTERM" in headline, (headline, logs)
        assert "the leader algo-1 failed" in _log(worker), logs
    else:
        assert "algo-2" in headline, (headline, logs)
    if sig == signal.SIGTERM and stopped == 1:
        assert codes[1] == 143 and "stopped by SIGTERM" in (worker / "output" / "failure").read_text()
    assert not (leader / "model" / "model_config.json").exists()


@pytest.mark.slow
def test_an_error_inside_a_task_fails_the_job_with_its_own_class_and_message(tmp_path):
    """The worker's copy of the channel is not the leader's: the embedding task fails on the worker, the
    leader fails with that PlatformError and its message, and the worker exits non-zero."""
    with NamespacedHosts(2) as net:
        trees, processes = [], []
        for i, (host, seed) in enumerate(zip(net.names, (5, 7))):
            root = _tree(tmp_path / host, make_frame(160, seed=seed), host, net.names)
            log = open(root / "train.log", "w")
            processes.append(net.start(i, [TRAIN], _environment(root), cpus=str(i % CORES), stdout=log,
                                       stderr=subprocess.STDOUT))
            trees.append(root)
        codes = _wait(processes, 600)
    leader, worker = trees
    logs = _log(leader)[-3000:] + "\n---\n" + _log(worker)[-3000:]
    assert codes[0] == 1 and codes[1] != 0, (codes, logs)
    headline = (leader / "output" / "failure").read_text().splitlines()[0]
    assert headline.startswith("PlatformError: host algo-2: rows ") and "differ from the leader's" in headline, logs
    assert "the leader algo-1 failed: PlatformError: host algo-2: rows" in _log(worker), logs


@pytest.mark.slow
def test_a_host_that_joins_too_late_is_left_out_with_a_warning_and_still_told_the_job_is_done(tmp_path):
    """The leader waits 5 s for algo-2, which starts only once the leader gave up: the leader trains alone
    with a WARNING, and algo-2, whose node joined without work, is told at the end and exits 0."""
    frame = make_frame(160, seed=5)
    with NamespacedHosts(2) as net:
        trees = [_tree(tmp_path / host, frame, host, net.names) for host in net.names]
        logs = [open(root / "train.log", "w") for root in trees]
        leader = net.start(0, [TRAIN], {**_environment(trees[0]), "MULTIMODAL_HOST_WAIT_SECONDS": "5"}, cpus="0",
                           stdout=logs[0], stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while "did not join" not in _log(trees[0]) and time.monotonic() < deadline:
            time.sleep(0.5)
        worker = net.start(1, [TRAIN], {**_environment(trees[1]), "MULTIMODAL_HOST_WAIT_SECONDS": "60"},
                           cpus=str(1 % CORES), stdout=logs[1], stderr=subprocess.STDOUT)
        codes = _wait([leader, worker], 600)
    log = _log(trees[0])
    assert codes == [0, 0], log[-3000:] + "\n---\n" + _log(trees[1])[-2000:]
    assert "WARNING" in log and "host(s) ['algo-2'] did not join within 5 s" in log, log[-3000:]
    distributed = json.loads((trees[0] / "model" / "model_config.json").read_text())["training"]["distributed"]
    assert distributed["joined"] == ["algo-1"] and distributed["hosts"] == ["algo-1", "algo-2"]
    assert "reports the job done" in _log(trees[1])


@pytest.mark.slow
def test_local_train_with_a_sharded_channel_on_two_hosts_predicts_what_a_one_host_job_predicts(
        tmp_path, capsys, monkeypatch, one_host_model):
    """`multimodal local-train --hosts 2 --shard-train` with the rows in two files: each host gets one file
    (ShardedByS3Key), embeds its own images, and the leader gathers the rest: the one-host model again."""
    from multimodal.tooling.cli import main

    monkeypatch.setenv("MULTIMODAL_IMAGE_WEIGHTS", "random")
    channel = tmp_path / "train"
    channel.mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(FRAME)), 2)):
        FRAME.iloc[part].to_csv(channel / f"part-{i}.csv", index=False)
    code = main(["local-train", "--train", str(channel), "--output", str(tmp_path / "job"), "--hosts", "2",
                 "--shard-train"] + [f"--hp={k}={v}" for k, v in HP.items()])
    printed = capsys.readouterr().out
    job = tmp_path / "job"
    worker_log = (job / "hosts" / "algo-2" / "train.log").read_text(errors="replace")
    assert code == 0, printed[-3000:] + "\n---\n" + worker_log[-2000:]
    assert (job / "model.tar.gz").is_file()
    assert sorted(p.name for p in (job / "hosts" / "algo-2" / "opt_ml" / "input" / "data" / "train").iterdir()) \
        == ["00000-part-1.csv"], "host 2 got the second of the two files"
    assert "gathered the sharded channel 'train'" in printed and "reports the job done" in worker_log
    embedded = _check_two_host_model(job / "opt_ml", one_host_model)
    assert all(int(u["unit"].split("rows ")[1].split("-")[0]) > len(FRAME) // 2 for u in embedded), \
        "algo-2 embeds only the rows of its own shard"
