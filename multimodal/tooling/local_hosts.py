"""Several real hosts on one machine, for a local multi-instance training job: each host is a network namespace
with its own address and host name resolution (``algo-1``, ``algo-2``, ...), joined by a bridge, as SageMaker's
hosts are joined by the job's network. Needs root (``ip netns``); ``NamespacedHosts.available()`` says why not.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

INTERFACE = "eth0"


class NamespacedHosts:
    """``count`` hosts named ``algo-1`` ... in namespaces of their own; a context manager that tears down
    everything it made (the processes it started included)."""

    def __init__(self, count: int, subnet: str = "10.77.0"):
        self.count = count
        self.tag = "mm" + uuid.uuid4().hex[:5]
        self.subnet = subnet
        self.names = [f"algo-{i}" for i in range(1, count + 1)]
        self.processes: list[subprocess.Popen] = []
        self._made: list[list[str]] = []

    @staticmethod
    def available() -> str | None:
        """None when namespaces can be made here, else the reason they cannot."""
        if shutil.which("ip") is None:
            return "the `ip` command (iproute2) is not installed"
        if os.geteuid() != 0:
            return "network namespaces need root"
        probe = f"mmprobe{uuid.uuid4().hex[:5]}"
        made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
        if made.returncode != 0:
            return f"`ip netns add` failed: {made.stderr.strip()}"
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
        return None

    def namespace(self, index: int) -> str:
        """The namespace of host ``index`` (0-based)."""
        return f"{self.tag}-{index + 1}"

    def address(self, index: int) -> str:
        """The IPv4 address of host ``index`` (0-based)."""
        return f"{self.subnet}.{index + 1}"

    def __enter__(self) -> "NamespacedHosts":
        try:
            bridge = f"{self.tag}br"
            self._ip("link", "add", bridge, "type", "bridge")
            self._made.append(["ip", "link", "del", bridge])
            self._ip("link", "set", bridge, "up")
            hosts_file = "127.0.0.1 localhost\n" + "".join(
                f"{self.address(i)} {name}\n" for i, name in enumerate(self.names))
            for i in range(self.count):
                namespace, veth = self.namespace(i), f"{self.tag}v{i + 1}"
                self._ip("netns", "add", namespace)
                self._made.append(["ip", "netns", "del", namespace])
                self._ip("link", "add", veth, "type", "veth", "peer", "name", INTERFACE, "netns", namespace)
                self._ip("link", "set", veth, "master", bridge, "up")
                self._ip("-n", namespace, "addr", "add", f"{self.address(i)}/24", "dev", INTERFACE)
                self._ip("-n", namespace, "link", "set", INTERFACE, "up")
                self._ip("-n", namespace, "link", "set", "lo", "up")
                etc = Path("/etc/netns") / namespace
                etc.mkdir(parents=True, exist_ok=True)
                (etc / "hosts").write_text(hosts_file)
                self._made.append(["rm", "-rf", str(etc)])
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def start(self, index: int, command: list[str], environment: dict, cpus: str | None = None,
              **popen) -> subprocess.Popen:
        """Start ``command`` on host ``index`` (0-based) in a session of its own, pinned to ``cpus`` (a
        ``taskset`` list such as ``"0"``) when given."""
        prefix = ["ip", "netns", "exec", self.namespace(index)]
        if cpus is not None:
            prefix += ["taskset", "-c", cpus]
        process = subprocess.Popen(prefix + ["env"] + [f"{k}={v}" for k, v in environment.items()] + command,
                                   env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, start_new_session=True,
                                   **popen)
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the process and every process it started (its session and their descendants)."""
        import psutil

        try:
            tree = [psutil.Process(process.pid)] + psutil.Process(process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        for member in tree:
            try:
                member.send_signal(sig)
            except psutil.Error:
                pass

    def __exit__(self, *exc) -> None:
        for process in self.processes:
            if process.poll() is None:
                self.stop(process, signal.SIGKILL)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        for command in reversed(self._made):
            subprocess.run(command, capture_output=True)
        self._made.clear()

    def _ip(self, *arguments: str) -> None:
        result = subprocess.run(["ip", *arguments], capture_output=True, text=True)
        if result.returncode != 0:
            raise OSError(f"ip {' '.join(arguments)}: {result.stderr.strip()}")
