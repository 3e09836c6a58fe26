"""The leader's view of its hosts on a real Ray cluster of several nodes on this machine
(``ray.cluster_utils.Cluster``: one address, one file system, so only what needs no namespaces is tested
here): a lost host named, an error inside a unit of work raised as the project's own class."""
from __future__ import annotations

import time

import pytest

ray = pytest.importorskip("ray")

from ray.cluster_utils import Cluster  # noqa: E402

from multimodal.errors import PlatformError, UserError  # noqa: E402
from multimodal.sagemaker import environment  # noqa: E402
from multimodal.sagemaker.distributed.cluster import ClusterExecutor, _get  # noqa: E402
from multimodal.sagemaker.distributed.ray_node import host_resource, wait_for_port  # noqa: E402
from multimodal.sagemaker.hosts import JobHosts  # noqa: E402


@pytest.fixture()
def cluster(monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    cluster = Cluster(initialize_head=True, connect=True,
                      head_node_args={"num_cpus": 1, "resources": {host_resource("algo-1"): 1}})
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_a_host_lost_between_units_fails_the_check_before_the_model_is_written(cluster):
    worker = cluster.add_node(num_cpus=1, resources={host_resource("algo-2"): 1})
    cluster.wait_for_nodes()
    executor = ClusterExecutor(JobHosts("algo-1", ("algo-1", "algo-2")), node=None, agents={"algo-2": None})
    executor.check_hosts()
    cluster.remove_node(worker)
    deadline = time.monotonic() + 60
    while True:
        try:
            executor.check_hosts()
        except PlatformError as error:
            assert "['algo-2'] were lost during the job" in str(error) and "no model is written" in str(error)
            break
        assert time.monotonic() < deadline, "the lost node was never noticed"
        time.sleep(0.5)


def test_an_error_inside_a_task_comes_back_as_its_own_class_and_a_lost_host_is_named(cluster):
    worker = cluster.add_node(num_cpus=1, resources={host_resource("algo-2"): 1})
    cluster.wait_for_nodes()
    # A function of the library (tasks run in fresh worker processes: test modules do not import there).
    task = ray.remote(environment.host_wait_seconds).options(resources={host_resource("algo-2"): 0.5}, max_retries=0)
    with pytest.raises(UserError, match="MULTIMODAL_HOST_WAIT_SECONDS must be a number of seconds above 0; got 'soon'"):
        _get(task.remote({environment.HOST_WAIT_ENV: "soon"}), "algo-2", "embedded rows 1-3")

    # Something that keeps the host busy for a minute: waiting for a port nobody listens on.
    slow = ray.remote(wait_for_port).options(resources={host_resource("algo-2"): 0.5}, max_retries=0)
    reference = slow.remote("127.0.0.1", 9, 60)
    time.sleep(2)
    cluster.remove_node(worker)
    with pytest.raises(PlatformError, match=r"host algo-2 was lost while it fitted member 'text' \(\w+Error: "):
        _get(reference, "algo-2", "fitted member 'text'", timeout=90)
