"""A host other than the leader: join the leader's Ray head, let the leader's work run on this host, and exit
when the leader says the job ended (0 when it is done), or fail when the leader goes away."""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from multimodal.errors import PlatformError
from multimodal.sagemaker import environment
from multimodal.sagemaker.distributed.agent import STATE_FILE_VARIABLE
from multimodal.sagemaker.distributed.ray_node import HEAD_PORT, RayNode, wait_for_port
from multimodal.sagemaker.hosts import JobHosts, resolve

logger = logging.getLogger(__name__)

# How long a host waits for the leader's head to accept connections (unless $MULTIMODAL_HOST_WAIT_SECONDS says),
# and how long the leader may be out of reach once joined before this host gives up (Ray's own reconnection
# takes a minute).
REACH_SECONDS = 300.0
LOST_SECONDS = 15.0


def run_worker(hosts: JobHosts) -> None:
    """Serve the leader until the job ends; returns when the leader reports it done, raises ``PlatformError``
    when the leader reports a failure, cannot be reached, or goes away."""
    started = time.monotonic()
    reach = environment.host_wait_seconds() or REACH_SECONDS
    address = hosts.own_address(timeout=reach)
    leader = resolve(hosts.leader, timeout=reach)
    if not wait_for_port(leader, HEAD_PORT, max(0.0, reach - (time.monotonic() - started))):
        raise PlatformError(f"host {hosts.current}: the leader {hosts.leader} ({leader}) did not accept connections "
                            f"on port {HEAD_PORT} within {reach:.0f} s.")
    state = Path(tempfile.mkdtemp(prefix="multimodal-host-")) / "outcome"
    node = RayNode.start(hosts.current, address, head=f"{leader}:{HEAD_PORT}",
                         environment={STATE_FILE_VARIABLE: str(state)})
    logger.info("host %s: its Ray node is joining the leader %s at %s:%d (started in %.1f s); working for it "
                "until the job ends",
                hosts.current, hosts.leader, leader, HEAD_PORT, time.monotonic() - started)
    try:
        _serve(hosts, leader, node, state)
    finally:
        node.stop()


def _serve(hosts: JobHosts, leader: str, node: RayNode, state: Path) -> None:
    unreachable_since = None
    last_check = 0.0
    while True:
        outcome = _outcome(state)
        if outcome is not None:
            if outcome == "done":
                logger.info("host %s: the leader %s reports the job done", hosts.current, hosts.leader)
                return
            raise PlatformError(f"host {hosts.current}: the leader {hosts.leader} failed: "
                                f"{outcome.removeprefix('failed: ')}")
        if not node.alive():
            time.sleep(0.5)   # the outcome may have been written just before the node went down
            if _outcome(state) is None:
                raise PlatformError(f"host {hosts.current}: its Ray node stopped before the leader {hosts.leader} "
                                    f"reported the end of the job: {node.tail(600)}")
            continue
        now = time.monotonic()
        if now - last_check >= 2.0:
            last_check = now
            if wait_for_port(leader, HEAD_PORT, 0.0):
                unreachable_since = None
            elif unreachable_since is None:
                unreachable_since = now
            elif now - unreachable_since > LOST_SECONDS:
                raise PlatformError(f"host {hosts.current}: lost the leader {hosts.leader} ({leader}:{HEAD_PORT} "
                                    f"unreachable for {LOST_SECONDS:.0f} s) before it reported the end of the job.")
        time.sleep(0.25)


def _outcome(state: Path) -> str | None:
    try:
        return state.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None
