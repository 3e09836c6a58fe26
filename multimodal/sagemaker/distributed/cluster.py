"""The leader's side of a distributed job: start the Ray head, wait for the other hosts to join, place one
``HostAgent`` on each, and run units of work there as an executor (``multimodal.classifier.executors``): the
leader's own units run in this process, the others' through their agents. At the end every host is told
how the job ended, and the head is stopped."""
from __future__ import annotations

import logging
import math
import signal
import threading
import time
from pathlib import Path

from multimodal.classifier.executors import LocalExecutor
from multimodal.errors import MultimodalError, PlatformError, UserError
from multimodal.sagemaker import environment
from multimodal.sagemaker.channels import is_sharded
from multimodal.sagemaker.distributed.ray_node import HEAD_PORT, HOST_RESOURCE_PREFIX, RayNode, host_resource
from multimodal.sagemaker.hosts import JobHosts

logger = logging.getLogger(__name__)

MIN_CHUNK_ROWS = 32


def join_seconds(budget_seconds: float) -> float:
    """How long the leader waits for the other hosts: ``$MULTIMODAL_HOST_WAIT_SECONDS`` when set, else a tenth
    of the budget, from 30 s to 2 minutes."""
    return environment.host_wait_seconds() or min(120.0, max(30.0, 0.1 * budget_seconds))


class ClusterExecutor(LocalExecutor):
    """Units of work on every host that joined: ``places`` are host names, the leader first."""

    def __init__(self, hosts: JobHosts, node: RayNode, agents: dict[str, object],
                 messengers: dict[str, object] | None = None, embedding: dict | None = None):
        super().__init__(hosts.leader)
        self.hosts = hosts
        self.node = node
        self.agents = agents
        self.messengers = messengers or {}
        self.places = [hosts.leader] + sorted(agents)
        # With a sharded training channel: host -> (start, stop), the rows of the gathered table it holds.
        self.shards: dict[str, tuple[int, int]] = {}
        # The job's image settings (``prepare_embedding``'s arguments), and per host its answer, until its
        # first chunk collects it.
        self.embedding = embedding
        self._preparing: dict[str, object] = {}

    # -- start ------------------------------------------------------------------------------------
    @classmethod
    def start(cls, hosts: JobHosts, channels: dict, wait_seconds: float,
              embedding: dict | None = None) -> "ClusterExecutor":
        """Start the head on this host (the leader), wait up to ``wait_seconds`` for the other hosts and place an
        agent on each that joined; a host that did not join is left out with a warning. ``embedding`` (the
        weights and precision settings and the batch size of the job's images): each agent gets its embedder
        ready while the leader reads the data."""
        started = time.monotonic()
        address = hosts.own_address()
        node = RayNode.start(hosts.current, address, head=None)
        try:
            _connect(f"{address}:{HEAD_PORT}", node, timeout=max(60.0, wait_seconds))
            joined = _wait_for_hosts(hosts, started + wait_seconds)
            missing = [h for h in hosts.workers if h not in joined]
            if missing:
                logger.warning("distributed: host(s) %s did not join within %.0f s; training on %s without them "
                               "(check that every host runs this image and can reach %s on port %d)", missing,
                               wait_seconds, [hosts.leader] + sorted(joined), hosts.leader, HEAD_PORT)
            agents = {host: _place_agent(host, channels, resources) for host, resources in joined.items()}
            messengers = {host: _place_messenger(host) for host in joined}
            described = {}
            for host, agent in agents.items():
                described[host] = _get(agent.describe.remote(), host, "started its agent", timeout=120)
            executor = cls(hosts, node, agents, messengers, embedding)
            if not is_sharded(channels["train"]):
                executor._prepare_embedding()   # with a sharded channel, once each host has read its shard
        except BaseException:
            node.stop()
            raise
        logger.info("distributed: %d host(s) ready in %.1f s: %s", 1 + len(agents), time.monotonic() - started,
                    ", ".join([f"{hosts.leader} (leader)"] + [f"{h} ({d['cpus']} CPUs)" for h, d in described.items()]))
        return executor

    # -- units of work ----------------------------------------------------------------------------
    def chunks(self, rows: int, default: int) -> list[tuple[int, int, str | None]]:
        """About four chunks per host, so that a faster host takes more of them; with a sharded channel each
        host's rows are chunked apart and pinned to it (only that host has their images)."""
        size = int(min(default, max(MIN_CHUNK_ROWS, math.ceil(rows / (4 * len(self.places))))))
        if not self.shards:
            return [(start, min(rows, start + size), None) for start in range(0, rows, size)]
        if max(stop for _, stop in self.shards.values()) != rows:
            raise PlatformError(f"an image column of {rows} rows, but the gathered shards hold "
                                f"{max(stop for _, stop in self.shards.values())} rows")
        return [(start, min(stop, start + size), host) for host, (first, stop) in self.shards.items()
                for start in range(first, stop, size)]

    def _prepare_embedding(self) -> None:
        """Ask every agent to get its embedder ready (``HostAgent.prepare_embedding``), without waiting."""
        if self.embedding is not None:
            self._preparing = {host: agent.prepare_embedding.remote(**self.embedding)
                               for host, agent in self.agents.items()}

    def embed_chunk(self, place, embedder, column, start, cells, describe_row, folder=None):
        if place == self.local_place:
            return embedder.embed(cells, column, describe_row, folder)
        from multimodal.classifier.embedding_units import cells_digest

        preparing = self._preparing.pop(place, None)
        if preparing is not None:
            ready = _get(preparing, place, "got its image embedder ready", timeout=None)
            logger.info("host %s: ready to embed in %.1f s (%s)", place, ready["seconds"], ready["embedder"])

        offset = self.shards[place][0] if self.shards else 0
        reference = self.agents[place].embed_chunk.remote(
            column, start - offset, len(cells), cells_digest(cells), embedder.weights, embedder.identity.sha256,
            embedder.precision, embedder.batch_size, bool(self.shards))
        return _get(reference, place, f"embedded rows {start + 1}-{start + len(cells)} of column {column!r}")

    def gather_training_shards(self, own: "pd.DataFrame | None") -> "pd.DataFrame":
        """The whole training table of a channel sharded by S3 key: this host's shard (``own``, as read; None
        when this host got no file) and every other host's, rows without a label dropped, in host order. The
        other hosts' image cells come as digests (``agent.shard_token``): their images stay on their hosts,
        which embed them (``chunks``)."""
        import pandas as pd

        from multimodal.classifier.labels import drop_missing_labels
        from multimodal.classifier.schema import LABEL_COLUMN

        started = time.monotonic()
        absent = [host for host in self.hosts.workers if host not in self.agents]
        if absent:
            logger.warning("distributed: channel 'train' is sharded by S3 key: the shards of host(s) %s, which did "
                           "not join, are left out of training", absent)
        references = {host: agent.shard.remote() for host, agent in self.agents.items()}
        self._prepare_embedding()   # runs on each host after its shard is read
        shards = {self.local_place: None if own is None else drop_missing_labels(own, LABEL_COLUMN, allow_empty=True)}
        for host in sorted(references):
            shards[host] = _get(references[host], host, "read its shard of channel 'train'", timeout=None)
        first = next((host for host, shard in shards.items() if shard is not None), None)
        if first is None:
            raise UserError("channel 'train' is sharded by S3 key and no host got a data file of it.")
        columns = list(shards[first].columns)
        tables, self.shards, rows = [], {}, 0
        for host, shard in shards.items():
            if shard is None:
                logger.warning("distributed: host %s has no file of the sharded channel 'train' (more instances "
                               "than S3 objects); it takes no embedding chunk", host)
                shard = pd.DataFrame(columns=columns)
            elif shard.empty:
                logger.warning("distributed: host %s's shard of channel 'train' has no row with a label; it takes "
                               "no embedding chunk", host)
            if set(shard.columns) != set(columns):
                raise UserError(
                    f"channel 'train' is sharded by S3 key, and host {host}'s files have other columns than host "
                    f"{first}'s: extra {sorted(set(shard.columns) - set(columns))}, missing "
                    f"{sorted(set(columns) - set(shard.columns))}; every file needs the same header.")
            tables.append(shard[columns])
            self.shards[host] = (rows, rows + len(shard))
            rows += len(shard)
        if rows == 0:
            raise UserError(f"no training rows have a value in the '{LABEL_COLUMN}' column, on any host.")
        logger.info("distributed: gathered the sharded channel 'train' in %.1f s: %d rows (%s)",
                    time.monotonic() - started, rows,
                    ", ".join(f"{h} {b - a}" for h, (a, b) in self.shards.items()))
        return pd.concat([table for table in tables if len(table)], ignore_index=True)

    def fit_member(self, place, name, features, labels, n_classes, path, **options):
        from multimodal.classifier.tabular import MemberPredictor, fit_member
        from multimodal.sagemaker.distributed.agent import unpack_directory

        if place == self.local_place:
            return fit_member(name, features, labels, n_classes, path, **options)
        result = _get(self.agents[place].fit_member.remote(name, features, labels, n_classes, options), place,
                      f"fitted member '{name}'")
        unpack_directory(result["archive"], Path(path))
        predictor = MemberPredictor.load(name, Path(path), result["layout"])
        predictor.leaderboard = result["leaderboard"]
        logger.info("member '%s': fitted on host %s in %.1f s", name, place, result["seconds"])
        return predictor, result["proba"]

    def describe(self) -> dict:
        """The hosts for ``model_config.json``: every host of the job, those that took part, and what each did."""
        return {"hosts": list(self.hosts.hosts), "joined": list(self.places), "leader": self.hosts.leader,
                "work": self.summary(), "units": [vars(r) for r in self.records]}

    # -- the end ----------------------------------------------------------------------------------
    def check_hosts(self) -> None:
        """``PlatformError`` naming a host that joined and is gone (its node died between units of work): its
        container has failed, so the job fails, and the leader must not write a model."""
        import ray

        alive = {key for node in ray.nodes() if node.get("Alive") for key in node.get("Resources", {})}
        lost = [host for host in self.agents if host_resource(host) not in alive]
        if lost:
            raise PlatformError(f"host(s) {lost} were lost during the job (their Ray node is gone); the job "
                                "fails with them and no model is written: their own logs tell why.")

    def finish(self, outcome: str) -> None:
        """Tell every host whose node is up how the job ended (``done`` or ``failed: ...``), then stop the
        head. Hosts with an agent hear it from their messenger (an actor of its own, so that the message
        arrives while the agent is still busy); a host that joined too late to get an agent, from a task."""
        import ray

        from multimodal.sagemaker.distributed.agent import write_outcome

        try:
            preparing, self._preparing = self._preparing, {}
            for reference in preparing.values():   # hosts that got no chunk: their answer is not needed
                try:
                    ray.get(reference, timeout=0.1)
                except Exception:  # noqa: BLE001 - an unused answer, an error in it included, changes nothing
                    pass
            references = {host: messenger.tell.remote(outcome) for host, messenger in self.messengers.items()}
            try:
                late = [key.removeprefix(HOST_RESOURCE_PREFIX) for node in ray.nodes() if node.get("Alive")
                        for key in node.get("Resources", {}) if key.startswith(HOST_RESOURCE_PREFIX)]
            except Exception:  # noqa: BLE001 - the head itself may be failing; the agents' hosts are told anyway
                late = []
            tell = ray.remote(write_outcome)
            for host in sorted(set(late) - set(references) - {self.local_place}):
                references[host] = tell.options(num_cpus=0, resources={host_resource(host): 0.5},
                                                max_retries=0).remote(outcome)
            ready, _ = ray.wait(list(references.values()), num_returns=len(references), timeout=20)
            for host, reference in references.items():
                try:
                    if reference not in ready:
                        raise TimeoutError("no answer in 20 s")
                    ray.get(reference, timeout=1)
                except Exception as error:  # noqa: BLE001 - a lost host cannot be told; it stops on its own
                    logger.warning("distributed: could not tell host %s that the job ended (%s)", host,
                                   type(error).__name__)
        finally:
            try:
                self._disconnect(wait=outcome == "done")
            finally:
                self.node.stop()

    @staticmethod
    def _disconnect(wait: bool) -> None:
        """``ray.shutdown``; after a failure, units abandoned in other threads may still wait on Ray, so the
        shutdown gets 10 s and the head is stopped under it after that."""
        import ray

        if wait:
            ray.shutdown()
            return
        closing = threading.Thread(target=ray.shutdown, name="ray-shutdown", daemon=True)
        closing.start()
        closing.join(10)


def _connect(address: str, node: RayNode, timeout: float) -> None:
    """``ray.init`` as the driver of the head at ``address``, once the head accepts it."""
    import ray

    handler = signal.getsignal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while True:
        if not node.alive():
            raise PlatformError(f"the Ray head did not start: {node.tail()}")
        try:
            ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING)
            break
        except (ConnectionError, RuntimeError) as error:
            if time.monotonic() >= deadline:
                raise PlatformError(f"could not connect to the Ray head at {address}: {error}; {node.tail()}",
                                    caused_by=error) from error
            time.sleep(1.0)
    signal.signal(signal.SIGTERM, handler)   # the job's own SIGTERM handling stays in charge


def _wait_for_hosts(hosts: JobHosts, deadline: float) -> dict[str, dict]:
    """The other hosts whose Ray node joined before ``deadline``: host name → the node's resources."""
    import ray

    joined: dict[str, dict] = {}
    while True:
        for entry in ray.nodes():
            if not entry.get("Alive"):
                continue
            for host in hosts.workers:
                if host_resource(host) in entry.get("Resources", {}):
                    joined[host] = entry["Resources"]
        if len(joined) == len(hosts.workers) or time.monotonic() >= deadline:
            return {host: joined[host] for host in sorted(joined)}
        time.sleep(0.5)


def _place_agent(host: str, channels: dict, resources: dict):
    """A ``HostAgent`` on ``host``, holding all of that host's CPUs and GPUs (Ray then sets its thread counts
    and visible devices)."""
    import ray

    from multimodal.sagemaker.distributed.agent import HostAgent

    # Half the host's marker resource: the other half places its messenger beside a busy agent.
    options = {"resources": {host_resource(host): 0.5}, "num_cpus": resources.get("CPU", 1),
               "num_gpus": resources.get("GPU", 0), "max_restarts": 0, "max_concurrency": 1}
    return ray.remote(HostAgent).options(**options).remote(host, channels)


def _place_messenger(host: str):
    """A ``HostMessenger`` on ``host``: no CPU, the other half of the host's marker resource."""
    import ray

    from multimodal.sagemaker.distributed.agent import HostMessenger

    return ray.remote(HostMessenger).options(num_cpus=0, resources={host_resource(host): 0.5},
                                             max_restarts=0).remote()


def _get(reference, host: str, what: str, timeout: float | None = None):
    """``ray.get``, with a failure on the host as the project's own error: an error the work raised comes back as
    itself; a host that was lost is a ``PlatformError`` that names it."""
    import ray
    from ray import exceptions

    try:
        return ray.get(reference, timeout=timeout)
    except exceptions.RayTaskError as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, Exception) and _is_own(cause):
            raise cause from None
        raise PlatformError(f"host {host} failed while it {what}: {cause or error}") from None
    except exceptions.RayError as error:   # the actor or its node died, the object was lost, a timeout
        reason = " ".join(str(error).split())[:300]
        raise PlatformError(f"host {host} was lost while it {what} ({type(error).__name__}: {reason}); the job "
                            "stops: that host's own log tells why (its agent's lines are in this log too)") from None


def _is_own(error: Exception) -> bool:
    from multimodal.classifier.tabular import MemberNotTrained

    return isinstance(error, (MultimodalError, MemberNotTrained))
