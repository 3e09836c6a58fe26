"""The leader's view of its hosts on a real Ray cluster of several nodes on this machine
(``ray.cluster_utils.Cluster``: one address, one file system, so only what needs no namespaces is tested
here): a lost host named, an error inside a unit of work raised as the project's own class, a sharded
channel's edge cases, an agent's embedder made ready at placement."""
from __future__ import annotations

import time

import numpy as np
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


def _agent(host: str, root, distribution: str = "ShardedByS3Key"):
    """A ``HostAgent`` on ``host`` whose /opt/ml tree is ``root`` (its copy or shard of channel 'train')."""
    from multimodal.sagemaker.distributed.agent import HostAgent

    channels = {"train": {"TrainingInputMode": "File", "S3DistributionType": distribution}}
    options = {"resources": {host_resource(host): 0.5}, "num_cpus": 1, "max_restarts": 0,
               "runtime_env": {"env_vars": {"SAGEMAKER_BASE_DIR": str(root), "MULTIMODAL_IMAGE_WEIGHTS": "random"}}}
    return ray.remote(HostAgent).options(**options).remote(host, channels)


def _sharded_agent(host: str, tmp_path, frame):
    """A ``HostAgent`` on ``host`` whose /opt/ml tree holds ``frame`` as its shard of channel 'train' (no file
    when ``frame`` is None)."""
    from sagemaker_tree import make_tree

    return _agent(host, make_tree(tmp_path / host, {"train": [] if frame is None else [frame]}))


def test_sharded_edge_cases_a_leader_without_a_file_and_a_shard_without_a_label(cluster, tmp_path, caplog):
    """More instances than S3 objects leaves the leader without a file: every row and every embedding chunk is
    the other host's, and the embeddings equal the images' own. A shard whose rows have no label takes no
    chunk; no labelled row on any host is the user's error."""
    import numpy as np

    from multimodal.classifier.embedding_units import embed_resumable
    from multimodal.classifier.images import ImageEmbedder
    from synthetic import make_frame

    cluster.add_node(num_cpus=1, resources={host_resource("algo-2"): 1})
    cluster.wait_for_nodes()
    hosts = JobHosts("algo-1", ("algo-1", "algo-2"))
    shard = make_frame(40, seed=3)
    shard.loc[[1, 7], "label"] = ""
    executor = ClusterExecutor(hosts, node=None, agents={"algo-2": _sharded_agent("algo-2", tmp_path, shard)},
                               embedding={"weights": "random", "precision": None, "batch_size": 8})
    gathered = executor.gather_training_shards(None)
    labelled = shard.drop(index=[1, 7]).reset_index(drop=True)
    assert len(gathered) == 38 and executor.shards == {"algo-1": (0, 0), "algo-2": (0, 38)}
    assert "host algo-1 has no file of the sharded channel 'train'" in caplog.text
    assert all(not c or c.startswith("shard-image:") for c in gathered["photo_image"]), "images stay on algo-2"
    assert {place for _, _, place in executor.chunks(38, 1024)} == {"algo-2"}
    embedder = ImageEmbedder("random", batch_size=8)
    cells = gathered["photo_image"].fillna("").astype(str).tolist()
    values, missing, bad = embed_resumable(embedder, cells, "photo_image", None, None, None, executor)
    own_values, own_missing, own_bad = embedder.embed(labelled["photo_image"].fillna("").astype(str).tolist())
    np.testing.assert_allclose(values, own_values, atol=1e-5)
    assert (missing == own_missing).all() and bad == own_bad
    assert {r.place for r in executor.records} == {"algo-2"}

    ray.kill(executor.agents["algo-2"])   # the host's CPU, for the next agent
    unlabelled = shard.assign(label="")
    executor = ClusterExecutor(hosts, node=None, agents={"algo-2": _sharded_agent("algo-2", tmp_path / "b", unlabelled)})
    gathered = executor.gather_training_shards(labelled.iloc[:20])
    assert len(gathered) == 20 and executor.shards == {"algo-1": (0, 20), "algo-2": (20, 20)}
    assert "host algo-2's shard of channel 'train' has no row with a label" in caplog.text
    assert {place for _, _, place in executor.chunks(20, 1024)} == {"algo-1"}

    ray.kill(executor.agents["algo-2"])
    executor = ClusterExecutor(hosts, node=None, agents={"algo-2": _sharded_agent("algo-2", tmp_path / "c", unlabelled)})
    with pytest.raises(UserError, match="no training rows have a value in the 'label' column, on any host"):
        executor.gather_training_shards(unlabelled.iloc[:5])


def test_an_agent_gets_its_embedder_ready_at_placement_and_the_leaders_chunks_use_it(cluster, tmp_path):
    """``prepare_embedding`` builds the embedder the leader's chunks ask for (no second one is built); with no
    image column in its copy of the channel it builds none."""
    from multimodal.classifier.images import ImageEmbedder
    from sagemaker_tree import make_tree
    from synthetic import make_frame

    cluster.add_node(num_cpus=1, resources={host_resource("algo-2"): 1})
    cluster.wait_for_nodes()
    frame = make_frame(12, seed=4)
    for name, data in (("images", frame), ("tabular", frame.drop(columns=["photo_image"]))):
        root = make_tree(tmp_path / name, {"train": [data]})
        agent = _agent("algo-2", root, "FullyReplicated")
        executor = ClusterExecutor(JobHosts("algo-1", ("algo-1", "algo-2")), node=None, agents={"algo-2": agent},
                                   embedding={"weights": "random", "precision": None, "batch_size": 4})
        executor._prepare_embedding()
        ready = _get(executor._preparing["algo-2"], "algo-2", "got ready")
        if name == "tabular":
            assert ready["embedder"] is None
        else:
            assert ready["embedder"].startswith("ResNet50 random")
            embedder = ImageEmbedder("random", batch_size=4)
            cells = frame["photo_image"].fillna("").astype(str).tolist()
            values, _, _ = executor.embed_chunk("algo-2", embedder, "photo_image", 4, cells[4:10], None)
            assert _get(agent.__ray_call__.remote(lambda self: len(self._embedders)), "algo-2", "counted") == 1
            np.testing.assert_allclose(values, embedder.embed(cells[4:10])[0], atol=1e-5)
        ray.kill(agent)
