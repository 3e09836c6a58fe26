"""The hosts of a training job (resourceconfig.json), how a distributed job chunks its embedding work over
them, and how a local multi-host job deals a sharded channel's files; no Ray here (test_distributed runs it)."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multimodal.errors import PlatformError, UserError
from multimodal.sagemaker import environment
from multimodal.sagemaker.distributed.cluster import ClusterExecutor, join_seconds
from multimodal.sagemaker.hosts import JobHosts
from multimodal.sagemaker.paths import SageMakerPaths
from multimodal.tooling.local_job import shard_files


def _paths(tmp_path, config) -> SageMakerPaths:
    paths = SageMakerPaths(tmp_path)
    paths.resource_config_file.parent.mkdir(parents=True, exist_ok=True)
    if config is not None:
        paths.resource_config_file.write_text(config if isinstance(config, str) else json.dumps(config))
    return paths


def test_the_first_of_the_sorted_hosts_leads(tmp_path):
    hosts = JobHosts.read(_paths(tmp_path, {"current_host": "algo-10", "hosts": ["algo-2", "algo-10", "algo-1"],
                                            "network_interface_name": "eth0"}))
    assert hosts.hosts == ("algo-1", "algo-10", "algo-2") and hosts.leader == "algo-1"
    assert not hosts.is_leader and hosts.count == 3 and hosts.workers == ("algo-10", "algo-2")
    assert hosts.interface == "eth0"


def test_no_resource_config_is_one_host_that_leads(tmp_path):
    hosts = JobHosts.read(_paths(tmp_path, None))
    assert hosts.is_leader and hosts.count == 1


@pytest.mark.parametrize("config, error, words", [
    ("{not json", UserError, "resourceconfig.json is not valid JSON"),
    ({"current_host": "algo-3", "hosts": ["algo-1", "algo-2"]}, PlatformError, "'algo-3' is not one of the hosts"),
])
def test_a_bad_resource_config_is_refused_with_the_reason(tmp_path, config, error, words):
    with pytest.raises(error, match=words):
        JobHosts.read(_paths(tmp_path, config))


def _cluster(places: list[str], shards=None) -> ClusterExecutor:
    executor = ClusterExecutor(JobHosts(places[0], tuple(places)), node=None, agents={p: None for p in places[1:]})
    executor.shards = shards or {}
    return executor


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 300), min_size=1, max_size=4), default=st.integers(1, 2048))
def test_sharded_chunks_cover_every_row_once_each_on_the_host_that_holds_it(sizes, default):
    places = [f"algo-{i + 1}" for i in range(len(sizes))]
    shards, start = {}, 0
    for place, size in zip(places, sizes):
        shards[place] = (start, start + size)
        start += size
    chunks = _cluster(places, shards).chunks(start, default)
    covered = [row for first, stop, _ in chunks for row in range(first, stop)]
    assert covered == list(range(start))
    for first, stop, place in chunks:
        assert shards[place][0] <= first < stop <= shards[place][1]
        assert stop - first <= default


def test_unsharded_chunks_are_about_four_per_host_and_free_to_go_anywhere():
    chunks = _cluster(["algo-1", "algo-2"]).chunks(800, 1024)
    assert len(chunks) == 8 and all(place is None for *_, place in chunks)
    assert chunks[-1][1] == 800


def test_shards_that_do_not_hold_the_rows_are_a_platform_error():
    with pytest.raises(PlatformError, match="the gathered shards hold 10 rows"):
        _cluster(["algo-1", "algo-2"], {"algo-1": (0, 5), "algo-2": (5, 10)}).chunks(12, 1024)


def test_hosts_wait_for_each_other_as_long_as_the_environment_says(monkeypatch):
    assert join_seconds(240) == 30 and join_seconds(3600) == 120 and join_seconds(600) == 60
    monkeypatch.setenv(environment.HOST_WAIT_ENV, "7.5")
    assert join_seconds(3600) == 7.5
    monkeypatch.setenv(environment.HOST_WAIT_ENV, "soon")
    with pytest.raises(UserError, match="MULTIMODAL_HOST_WAIT_SECONDS must be a number of seconds"):
        join_seconds(240)


@pytest.mark.parametrize("files, hosts, expected", [
    (5, 2, [3, 2]), (2, 3, [1, 1, 0]), (6, 3, [2, 2, 2]), (1, 1, [1]),
])
def test_a_sharded_channel_deals_its_files_in_order_about_evenly(tmp_path, files, hosts, expected):
    for i in range(files):
        (tmp_path / f"part-{i}.csv").write_text("label,a_num\n1,2\n")
    shards = shard_files(tmp_path, hosts)
    assert [len(s) for s in shards] == expected
    assert [p.name for s in shards for p in s] == [f"part-{i}.csv" for i in range(files)]
