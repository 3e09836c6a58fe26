"""Local SageMaker training job: the /opt/ml tree a training job sees, the ``train`` run (in this
environment or in the training image), and the artifacts the service makes of it.

SageMaker writes ``hyperparameters.json`` (all values strings), ``inputdataconfig.json`` and
``resourceconfig.json``, copies each channel's files (File mode) under ``input/data/<channel>/``, runs
``docker run IMAGE train`` with the tree at ``/opt/ml``, and afterwards packs ``/opt/ml/model`` into
``model.tar.gz`` and ``/opt/ml/output/data`` into ``output.tar.gz``; a failed job reports the first
1024 characters of ``/opt/ml/output/failure`` as its FailureReason. With a ``CheckpointConfig`` it also writes
``checkpointconfig.json``, copies the checkpoints from S3 into ``/opt/ml/checkpoints`` before the job starts and
syncs that directory back (deletions included) while it runs; here a local directory stands for S3, synced
back once the job has ended, however it ended.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from multimodal.sagemaker.channels import validate_input_data_config
from multimodal.tooling.containers import container_run
from multimodal.errors import UserError

logger = logging.getLogger(__name__)

FAILURE_REASON_LIMIT = 1024
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"   # CheckpointConfig.LocalPath's default


@dataclass
class LocalTrainingResult:
    """What a local training job left, as DescribeTrainingJob and S3 would show it."""

    job_name: str
    status: str                    # "Completed" or "Failed"
    exit_code: int
    failure_reason: str | None    # the first 1024 characters of /opt/ml/output/failure
    model_artifact: Path | None    # model.tar.gz (only for a completed job)
    output_artifact: Path | None   # output.tar.gz of /opt/ml/output/data (when the job wrote any)
    ml_root: Path                  # the /opt/ml tree, kept for inspection
    log_path: Path
    seconds: float


def lay_out_training_job(ml_root: Path, channels: dict[str, Path | list[Path]], hyperparameters: dict[str, str],
                         instance_type: str = "local", checkpoints: Path | None = None, host: str = "algo-1",
                         hosts: Sequence[str] = ("algo-1",), sharded: Sequence[str] = ()) -> Path:
    """Write the /opt/ml tree of a File-mode training job's host ``host`` (of ``hosts``) under ``ml_root``;
    returns it. A channel is a CSV file, a folder of them, or a list of files (this host's shard; the channels
    named in ``sharded`` are declared ShardedByS3Key). With ``checkpoints`` (the directory standing for
    ``CheckpointConfig.S3Uri``), the job gets a checkpoint configuration and what that directory holds is copied
    into the tree's ``checkpoints/``."""
    input_data_config = validate_input_data_config({   # the channel checks SageMaker makes when the job is created
        name: {"ContentType": "text/csv", "TrainingInputMode": "File",
               "S3DistributionType": "ShardedByS3Key" if name in sharded else "FullyReplicated",
               "RecordWrapperType": "None", "CompressionType": "None"} for name in channels}, hosts=len(hosts))
    if ml_root.exists():
        shutil.rmtree(ml_root)
    config = ml_root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(
        json.dumps({str(k): str(v) for k, v in hyperparameters.items()}, indent=2))
    (config / "resourceconfig.json").write_text(json.dumps(
        {"current_host": host, "current_instance_type": instance_type, "hosts": list(hosts),
         "network_interface_name": "eth0"}))
    (config / "inputdataconfig.json").write_text(json.dumps(input_data_config, indent=2))
    for name, source in channels.items():
        target = ml_root / "input" / "data" / name
        _copy_channel(source if isinstance(source, list) else Path(source), target, name)
    (ml_root / "model").mkdir()
    (ml_root / "output" / "data").mkdir(parents=True)
    if checkpoints is not None:
        (config / "checkpointconfig.json").write_text(json.dumps({"LocalPath": CHECKPOINT_LOCAL_PATH}))
        local = ml_root / "checkpoints"
        if Path(checkpoints).is_dir():
            shutil.copytree(checkpoints, local)
        else:
            local.mkdir()
    return ml_root


def sync_checkpoints(ml_root: Path, checkpoints: Path) -> None:
    """Make ``checkpoints`` (standing for the S3 prefix) hold what the tree's ``checkpoints/`` holds, deleting
    what was deleted there, as SageMaker's sync does."""
    local = ml_root / "checkpoints"
    checkpoints = Path(checkpoints)
    if checkpoints.exists():
        shutil.rmtree(checkpoints)
    shutil.copytree(local, checkpoints) if local.is_dir() else checkpoints.mkdir(parents=True)


def _copy_channel(source: Path | list[Path], target: Path, name: str) -> None:
    if isinstance(source, list):
        target.mkdir(parents=True)
        for position, path in enumerate(source):
            shutil.copy2(path, target / f"{position:05d}-{path.name}")
    elif source.is_file():
        target.mkdir(parents=True)
        shutil.copy2(source, target / source.name)
    elif source.is_dir():
        shutil.copytree(source, target)
    else:
        raise UserError(f"channel '{name}': {source} is neither a file nor a directory.")


def pack_directory(source: Path, archive: Path) -> Path:
    """``archive`` (.tar.gz) holding the contents of ``source`` at its top level, as SageMaker packs them."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for item in sorted(source.iterdir()):
            tar.add(item, arcname=item.name)
    return archive


def training_invocation(ml_root: Path, job_name: str, image: str | None) -> tuple[list[str], dict]:
    """The command and environment that run ``train`` on ``ml_root``: this environment's entrypoint, or
    ``docker run --rm -v ROOT:/opt/ml IMAGE train`` as SageMaker runs the image."""
    job_environment = {"TRAINING_JOB_NAME": job_name,
                       "TRAINING_JOB_ARN": f"arn:aws:sagemaker:local:000000000000:training-job/{job_name}"}
    if image is None:
        return [str(Path(sys.executable).with_name("train"))], {**os.environ, **job_environment,
                                                                  "SAGEMAKER_BASE_DIR": str(ml_root)}
    return container_run(image, "train", job_name, {str(ml_root.resolve()): "/opt/ml"}, job_environment), \
        dict(os.environ)


def run_local_training(job_dir: Path, train: Path, validation: Path | None = None,
                       hyperparameters: dict[str, str] | None = None, image: str | None = None,
                       job_name: str | None = None, checkpoints: Path | None = None, hosts: int = 1,
                       shard_train: bool = False) -> LocalTrainingResult:
    """Run one training job locally under ``job_dir`` and pack its artifacts next to the tree.

    ``job_dir`` gets ``opt_ml/`` (the tree), ``train.log``, and for a completed job ``model.tar.gz``
    (and ``output.tar.gz`` when the job wrote reports). ``checkpoints``: a directory standing for
    ``CheckpointConfig.S3Uri``, copied in before the job and synced back after it, however it ended.
    ``hosts`` above 1: a multi-instance job, each host in a network namespace of its own (root only; see
    ``_run_namespaced_training``), ``shard_train``: channel 'train' sharded by S3 key over the hosts.
    """
    if hosts > 1 and (image is not None or checkpoints is not None):
        raise UserError("--hosts runs this environment's train on each host: leave out --image and "
                        "--checkpoint-dir.")
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    job_name = job_name or f"multimodal-local-{time.strftime('%Y%m%d-%H%M%S')}"
    channels = {"train": Path(train), **({"validation": Path(validation)} if validation else {})}
    if hosts > 1:
        return run_namespaced_training(job_dir, channels, hyperparameters or {}, job_name, hosts, shard_train)
    ml_root = lay_out_training_job(job_dir / "opt_ml", channels, hyperparameters or {}, checkpoints=checkpoints)
    for stale in ("model.tar.gz", "output.tar.gz"):
        (job_dir / stale).unlink(missing_ok=True)
    command, environment = training_invocation(ml_root, job_name, image)
    log_path = job_dir / "train.log"
    logger.info("training job %s: %s", job_name, " ".join(command))
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        _echo(process, log)
        try:
            exit_code = process.wait()
        finally:
            if checkpoints is not None:
                sync_checkpoints(ml_root, checkpoints)
    return _job_result(job_dir, job_name, ml_root, [exit_code], log_path, time.monotonic() - started)


def _echo(process: subprocess.Popen, log) -> None:
    for line in process.stdout:   # echo, as CloudWatch would show it, and keep a copy
        log.write(line)
        sys.stdout.buffer.write(line)
        sys.stdout.flush()


def _job_result(job_dir: Path, job_name: str, ml_root: Path, exit_codes: list[int], log_path: Path,
                seconds: float, failures: Sequence[Path] = ()) -> LocalTrainingResult:
    """The job as DescribeTrainingJob shows it: Failed when any host exited non-zero, the reason from the
    first host's failure file (``ml_root``'s, else the first of ``failures``); the artifacts packed."""
    exit_code = next((code for code in exit_codes if code != 0), 0)
    failure = None
    for failure_file in [ml_root / "output" / "failure", *failures]:
        if failure_file.exists():
            failure = failure_file.read_text(errors="replace")[:FAILURE_REASON_LIMIT]
            break
    completed = exit_code == 0
    if not completed and not failure:
        failure = f"AlgorithmError: train exited with code {exit_code} and wrote no /opt/ml/output/failure"
    model_artifact = pack_directory(ml_root / "model", job_dir / "model.tar.gz") if completed else None
    data_dir = ml_root / "output" / "data"
    output_artifact = (pack_directory(data_dir, job_dir / "output.tar.gz")
                       if data_dir.is_dir() and any(data_dir.iterdir()) else None)
    return LocalTrainingResult(job_name, "Completed" if completed else "Failed", exit_code, failure,
                               model_artifact, output_artifact, ml_root, log_path, seconds)


def shard_files(source: Path, count: int) -> list[list[Path]]:
    """A channel's data files dealt to ``count`` hosts as ShardedByS3Key deals S3 objects: about 1/count of the
    files each, in order (host 1 the first block); a host may get none when there are fewer files than hosts."""
    from multimodal.sagemaker.csv_input import list_data_files

    files = [source] if source.is_file() else list_data_files(source)
    size, extra = divmod(len(files), count)
    shards, start = [], 0
    for index in range(count):
        stop = start + size + (1 if index < extra else 0)
        shards.append(files[start:stop])
        start = stop
    return shards


def run_namespaced_training(job_dir: Path, channels: dict[str, Path], hyperparameters: dict[str, str],
                            job_name: str, count: int, shard_train: bool = False,
                            cores: list[list[int]] | None = None) -> LocalTrainingResult:
    """A job on ``count`` instances: host ``algo-i`` is this environment's ``train`` in a network namespace of
    its own (``multimodal.tooling.local_hosts``), with its own tree (``opt_ml/`` for algo-1, which writes the
    model; ``hosts/algo-i/opt_ml/`` for the others) and log (``train.log``; ``hosts/algo-i/train.log``), pinned
    to ``cores[i]`` (default: this machine's cores dealt to the hosts)."""
    from multimodal.tooling.local_hosts import NamespacedHosts

    reason = NamespacedHosts.available()
    if reason is not None:
        raise UserError(f"--hosts {count} needs network namespaces, and {reason}; run as root on Linux with "
                        "iproute2, or train on one host.")
    names = [f"algo-{i}" for i in range(1, count + 1)]
    shards = shard_files(channels["train"], count) if shard_train else None
    available = sorted(os.sched_getaffinity(0))
    started = time.monotonic()
    trees, logs = [], []
    for index, host in enumerate(names):
        own = {**channels, "train": shards[index]} if shards else channels
        base = job_dir if index == 0 else job_dir / "hosts" / host
        trees.append(lay_out_training_job(base / "opt_ml", own, hyperparameters, host=host, hosts=names,
                                          sharded=("train",) if shards else ()))
        (base / "tmp").mkdir(parents=True, exist_ok=True)
        logs.append(base / "train.log")
    share = cores or [available[i::count] or [available[i % len(available)]] for i in range(count)]
    logger.info("training job %s: %d hosts in network namespaces, cores %s", job_name, count, share)
    with NamespacedHosts(count) as net, contextlib.ExitStack() as stack:
        processes = []
        for index, root in enumerate(trees):
            environment = {"SAGEMAKER_BASE_DIR": str(root), "TMPDIR": str(root.parent / "tmp"),
                           "HOME": str(root.parent / "tmp"), "RAY_USAGE_STATS_ENABLED": "0",
                           "TRAINING_JOB_NAME": job_name, **_passed_environment()}
            output = subprocess.PIPE if index == 0 else stack.enter_context(open(logs[index], "wb"))
            processes.append(net.start(index, [str(Path(sys.executable).with_name("train"))], environment,
                                       cpus=",".join(map(str, share[index])), stdout=output,
                                       stderr=subprocess.STDOUT))
        with open(logs[0], "wb") as log:
            _echo(processes[0], log)
        exit_codes = [process.wait() for process in processes]
    return _job_result(job_dir, job_name, trees[0], exit_codes, logs[0], time.monotonic() - started,
                       [root / "output" / "failure" for root in trees[1:]])


def _passed_environment() -> dict[str, str]:
    """What a host's `train` takes from this environment: the MULTIMODAL_* settings and the thread limits."""
    return {name: value for name, value in os.environ.items()
            if name.startswith(("MULTIMODAL_", "OMP_", "HF_"))}
