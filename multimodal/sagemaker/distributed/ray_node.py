"""This host's Ray processes: ``ray start --block`` (the head on the leader, a joining node elsewhere) in its own
session, so that stopping it stops exactly what this host started (``ray stop`` would kill every Ray process
on the machine, other hosts of a test on one machine included)."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)

HEAD_PORT = 6379
# Each host's node carries one unit of its own resource, so work can be placed on a named host.
HOST_RESOURCE_PREFIX = "multimodal-host-"
# AutoGluon's own multi-node mode needs S3 or a shared file system and fails on entry in 1.6.3: never on.
_UNSET = ("AG_DISTRIBUTED_MODE", "AG_MODEL_SYNC_PATH", "AG_DISTRIBUTED_FILESYSTEM")


def host_resource(host: str) -> str:
    """The custom Ray resource that names ``host``."""
    return HOST_RESOURCE_PREFIX + host


def ray_environment(extra: dict | None = None) -> dict:
    """The environment of this host's Ray processes (and so of the work they run): this process's, without usage
    reporting or AutoGluon's distributed mode, plus ``extra``."""
    environment = {k: v for k, v in os.environ.items() if k not in _UNSET}
    # Ray's memory monitor kills a task at 95 % of the host's memory; a member fit on one host is not killed
    # there, so it is not killed on several either (the kernel's OOM killer still applies).
    environment.update(RAY_USAGE_STATS_ENABLED="0", RAY_DISABLE_IMPORT_WARNING="1", RAY_memory_monitor_refresh_ms="0")
    environment.update(extra or {})
    return environment


def host_cpus() -> int:
    """The CPUs this process may run on (its affinity: a host pinned to one core has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def host_gpus() -> int:
    """The GPUs torch sees on this host."""
    from multimodal.classifier.gpu import visible_gpus

    return visible_gpus()


def _temp_dir(host: str) -> str:
    # Ray's Unix sockets live under its temp dir, and a socket path has at most 107 characters.
    base = tempfile.gettempdir()
    if len(base) > 40:
        base = "/tmp"
    return os.path.join(base, f"mm-ray-{host}-{os.getpid()}")


class RayNode:
    """A running ``ray start --block`` and the Ray processes it started; ``log`` has their console output."""

    def __init__(self, process: subprocess.Popen, log: Path, address: str):
        self.process = process
        self.log = log
        self.address = address

    @classmethod
    def start(cls, host: str, address: str, head: str | None, environment: dict | None = None) -> "RayNode":
        """Start this host's node at ``address`` (its IP on the job's network): the head when ``head`` is None,
        else a node joining the head at ``head`` (``IP:PORT``)."""
        temp = _temp_dir(host)
        os.makedirs(temp, exist_ok=True)
        command = [str(Path(sys.executable).with_name("ray")), "start", "--block", "--disable-usage-stats",
                   f"--node-ip-address={address}", f"--num-cpus={host_cpus()}", f"--num-gpus={host_gpus()}",
                   f"--resources={json.dumps({host_resource(host): 1})}",
                   f"--object-store-memory={_object_store_bytes()}"]
        command += [f"--temp-dir={temp}"]   # per node: nothing relies on another host's files
        if head is None:
            command += ["--head", f"--port={HEAD_PORT}", "--include-dashboard=false"]
        else:
            command += [f"--address={head}"]
        log = Path(temp) / "ray-start.log"
        with open(log, "wb") as output:
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=ray_environment(environment), start_new_session=True)
        logger.info("ray: %s node of host %s started at %s (pid %d, %d CPUs, log %s)",
                    "head" if head is None else "worker", host, address, process.pid, host_cpus(), log)
        return cls(process, log, address)

    def alive(self) -> bool:
        """True while ``ray start`` runs (it ends when one of its Ray processes dies)."""
        return self.process.poll() is None

    def tail(self, characters: int = 2000) -> str:
        """The end of the node's console output."""
        try:
            return self.log.read_text(errors="replace")[-characters:]
        except OSError:
            return ""

    def stop(self, grace: float = 3.0) -> None:
        """Stop every process this node started: SIGTERM, then SIGKILL after ``grace`` seconds. Ray's worker
        processes run in sessions of their own, so they are found as descendants first."""
        import psutil

        try:
            tree = [psutil.Process(self.process.pid)]
            tree += tree[0].children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        for process in tree:
            try:
                process.send_signal(signal.SIGTERM)
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(tree, timeout=grace)
        for process in alive:
            try:
                process.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=grace)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except OSError:
            pass
        self.process.wait()


def _object_store_bytes() -> int:
    """Ray's shared-memory object store: a fifth of the memory, from 256 MB to 4 GB (member features and
    fitted predictors pass through it)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        total = 8 << 30
    return int(min(4 << 30, max(256 << 20, total // 5)))


def wait_for_port(address: str, port: int, timeout: float) -> bool:
    """True once a TCP connection to ``address:port`` succeeds within ``timeout`` seconds."""
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, port), timeout=2.0):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)
