"""The hosts of a training job, from ``resourceconfig.json``: which host this is, the sorted host names (the
first leads), the network interface SageMaker names, and the addresses hosts reach each other at."""
from __future__ import annotations

import fcntl
import json
import logging
import socket
import struct
import time
from dataclasses import dataclass

from multimodal.errors import PlatformError, UserError
from multimodal.sagemaker.paths import SageMakerPaths

logger = logging.getLogger(__name__)

_SIOCGIFADDR = 0x8915


@dataclass(frozen=True)
class JobHosts:
    """``current``: this host's name; ``hosts``: every host of the job, sorted (one name when the job runs on
    one instance or has no resourceconfig.json); ``interface``: the network interface hosts talk over."""

    current: str
    hosts: tuple[str, ...]
    interface: str | None = None

    @classmethod
    def read(cls, paths: SageMakerPaths) -> "JobHosts":
        """The job's hosts from ``resourceconfig.json`` (absent: one host, ``algo-1``)."""
        path = paths.resource_config_file
        if not path.is_file():
            return cls("algo-1", ("algo-1",))
        try:
            config = json.loads(path.read_text(encoding="utf-8") or "{}")
        except ValueError as error:
            raise UserError(f"{path.name} is not valid JSON ({error}).") from None
        hosts = tuple(sorted(str(h) for h in (config.get("hosts") or [])))
        current = str(config.get("current_host") or (hosts[0] if hosts else "algo-1"))
        if not hosts:
            hosts = (current,)
        if current not in hosts:
            raise PlatformError(f"{path.name}: current_host {current!r} is not one of the hosts {list(hosts)}.")
        return cls(current, hosts, config.get("network_interface_name") or None)

    @property
    def leader(self) -> str:
        """The host that reads the data, trains the fusion network and writes the model: the first host."""
        return self.hosts[0]

    @property
    def is_leader(self) -> bool:
        """True on the leader."""
        return self.current == self.leader

    @property
    def count(self) -> int:
        """How many instances the job runs on."""
        return len(self.hosts)

    @property
    def workers(self) -> tuple[str, ...]:
        """Every host but the leader."""
        return self.hosts[1:]

    def own_address(self, timeout: float = 60.0) -> str:
        """This host's IPv4 address on the job's network: that of the interface SageMaker names, else what this
        host's name resolves to."""
        if self.interface:
            address = interface_address(self.interface)
            if address:
                return address
            logger.warning("network interface %r has no IPv4 address; using what host name %s resolves to",
                           self.interface, self.current)
        return resolve(self.current, timeout)


def interface_address(interface: str) -> str | None:
    """The IPv4 address of a network interface (None when it has none or does not exist)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            packed = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, struct.pack("256s", interface[:15].encode()))
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def resolve(host: str, timeout: float = 60.0) -> str:
    """The IPv4 address of a host name, retried for up to ``timeout`` seconds (SageMaker's host names may take a
    moment to resolve); ``PlatformError`` when it never does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.gethostbyname(host)
        except OSError as error:
            if time.monotonic() >= deadline:
                raise PlatformError(f"host name {host!r} did not resolve within {timeout:.0f} s ({error}); the "
                                    "job's hosts cannot reach each other.") from error
            time.sleep(1.0)
