"""Where units of work run: ``run_units`` over an executor's places (the distributed job's hosts are places)."""
from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multimodal.classifier.executors import LocalExecutor, run_units


def _executor(places: list[str]) -> LocalExecutor:
    executor = LocalExecutor(places[0])
    executor.places = list(places)
    return executor


class _Watch:
    """What each place ran, and the most units a place ever ran at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.active: dict[str, int] = {}
        self.most = 0
        self.ran: dict[int, str] = {}
        self.not_started: list[int] = []

    def run(self, place, item, not_started):
        index, pause = item
        with self.lock:
            self.active[place] = self.active.get(place, 0) + 1
            self.most = max(self.most, self.active[place])
            self.not_started.append(not_started)
        time.sleep(pause)
        with self.lock:
            self.active[place] -= 1
            self.ran[index] = place
        return index * 10


@settings(max_examples=40, deadline=None)
@given(places=st.integers(1, 4), units=st.lists(st.tuples(st.integers(-1, 3), st.sampled_from([0.0, 0.001, 0.003])),
                                                max_size=12))
def test_every_unit_runs_once_where_it_is_pinned_one_at_a_time_per_place(places, units):
    names = [f"host-{i}" for i in range(places)]
    pins = [names[p] if 0 <= p < places else None for p, _ in units]
    watch = _Watch()
    executor = _executor(names)
    results = run_units(executor, [(f"unit {i}", (i, pause)) for i, (_, pause) in enumerate(units)], watch.run, pins)
    assert results == [i * 10 for i in range(len(units))], "results in the units' order"
    assert sorted(watch.ran) == list(range(len(units)))
    assert all(watch.ran[i] == pin for i, pin in enumerate(pins) if pin is not None)
    assert watch.most <= 1, "at most one unit at a time on a place"
    assert sorted(watch.not_started) == list(range(1, len(units) + 1))
    assert sorted(r.unit for r in executor.records) == sorted(f"unit {i}" for i in range(len(units)))
    assert all(r.place == watch.ran[int(r.unit.split()[1])] for r in executor.records)


def test_unpinned_units_spread_over_the_places():
    watch = _Watch()
    executor = _executor(["a", "b"])
    run_units(executor, [(f"unit {i}", (i, 0.05)) for i in range(6)], watch.run)
    assert set(watch.ran.values()) == {"a", "b"}
    assert executor.summary()["a"]["units"] + executor.summary()["b"]["units"] == 6


@settings(max_examples=30, deadline=None)
@given(places=st.integers(2, 4), units=st.integers(2, 8))
def test_the_first_units_go_to_the_other_places_and_this_process_takes_the_last_of_them(places, units):
    # The first units are the largest (image members first); this process also drives the job (and runs the
    # Ray head), so it starts the last of the first round, whatever the threads' timing.
    names = [f"host-{i}" for i in range(places)]
    watch = _Watch()
    run_units(_executor(names), [(f"unit {i}", (i, 0.01)) for i in range(units)], watch.run)
    expected = (names[1:] + names[:1])[:units]
    assert [watch.ran[i] for i in range(min(units, places))] == expected


def test_the_first_error_is_raised_and_no_unit_starts_after_it():
    started = []

    def run(place, item, not_started):
        started.append(item)
        if item == 1:
            raise ValueError("unit 1 failed")
        time.sleep(0.05)
        return item

    with pytest.raises(ValueError, match="unit 1 failed"):
        run_units(_executor(["a", "b"]), [(f"unit {i}", i) for i in range(20)], run)
    time.sleep(0.2)
    assert len(started) < 20


def test_a_unit_pinned_to_a_place_the_executor_lacks_is_refused():
    with pytest.raises(ValueError, match=r"pinned to \['c'\]"):
        run_units(_executor(["a", "b"]), [("unit", 0)], lambda place, item, n: item, ["c"])


def test_local_chunks_cover_the_rows_in_order():
    chunks = LocalExecutor().chunks(2500, 1024)
    assert chunks == [(0, 1024, None), (1024, 2048, None), (2048, 2500, None)]
    assert LocalExecutor().chunks(0, 1024) == []
