"""Where a fit's units of work run: image-embedding chunks and member fits.

An executor names its ``places`` (the first is this process) and runs one unit at a time on each:
``embed_chunk`` and ``fit_member`` take the place as their first argument. ``LocalExecutor`` has one place,
this process, and is what a fit uses unless it is given another (the distributed training job gives one whose
other places are hosts of the job). ``run_units`` spreads a list of units over an executor's places.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

LOCAL = "local"
_THREAD_PREFIX = "units-"


@dataclass
class UnitRecord:
    """One unit of work: its name, the place it ran on and how long it took."""

    unit: str
    place: str
    seconds: float


class LocalExecutor:
    """Every unit in this process, one after the other."""

    def __init__(self, place: str = LOCAL):
        self.places: list[str] = [place]
        self.records: list[UnitRecord] = []

    @property
    def local_place(self) -> str:
        """The place that is this process."""
        return self.places[0]

    def chunks(self, rows: int, default: int) -> list[tuple[int, int, str | None]]:
        """The embedding chunks of a column of ``rows`` rows, as (start, stop, place): ``place`` is where the
        chunk must be embedded, None for any place (here: chunks of ``default`` rows, any place)."""
        return [(start, min(rows, start + default), None) for start in range(0, rows, default)]

    def embed_chunk(self, place: str, embedder, column: str, start: int, cells: Sequence,
                    describe_row: Callable[[int], str] | None, folder=None):
        """``embedder.embed`` of one chunk of a column's cells (rows ``start`` on) at ``place``; paths are read in
        ``folder`` here (a place elsewhere reads them in its own copy of the channel)."""
        return embedder.embed(cells, column, describe_row, folder)

    def fit_member(self, place: str, *args, **kwargs):
        """``multimodal.classifier.tabular.fit_member`` at ``place``."""
        from multimodal.classifier.tabular import fit_member

        return fit_member(*args, **kwargs)

    def summary(self) -> dict:
        """Per place: the units it ran and their seconds (for the model config and the log)."""
        places = {place: {"units": 0, "seconds": 0.0} for place in self.places}
        for record in self.records:
            entry = places.setdefault(record.place, {"units": 0, "seconds": 0.0})
            entry["units"] += 1
            entry["seconds"] = round(entry["seconds"] + record.seconds, 1)
        return places


@dataclass
class _Progress:
    started: int = 0
    results: dict = field(default_factory=dict)
    error: BaseException | None = None


def run_units(executor, units: Sequence[tuple[str, Any]], run: Callable[[str, Any, int], Any],
              pins: Sequence[str | None] | None = None) -> list:
    """``run(place, item, not_started)`` for each ``(name, item)`` of ``units``, taken in order, at most one
    unit at a time on each of the executor's places (the first round dealt to the other places first and to
    this process last); ``pins[i]``, when given and not None, is the only place
    unit ``i`` may run at. ``not_started`` counts the units not started yet, this one included (a member's
    share of the budget depends on it). Returns the results in ``units``' order. The first error is raised as
    soon as it happens (units still running elsewhere are abandoned). With one place this is a plain loop in
    this thread."""
    places = list(executor.places)
    pins = list(pins) if pins is not None else [None] * len(units)
    strays = sorted({pin for pin in pins if pin is not None and pin not in places})
    if strays:
        raise ValueError(f"units pinned to {strays}, which are not among the executor's places {places}")
    if len(places) == 1 or len(units) <= 1:
        results = []
        for position, (name, item) in enumerate(units):
            place = pins[position] or places[0]
            results.append(_timed(executor, name, place, lambda: run(place, item, len(units) - position)))
        return results

    progress, lock, finished = _Progress(), threading.Lock(), queue.Queue()
    waiting = list(range(len(units)))

    def take(place: str) -> int | None:
        position = next((i for i in waiting if pins[i] in (None, place)), None)
        if position is not None:
            waiting.remove(position)
        return position

    # The first units are dealt before any thread starts, the other places first and this process last: the
    # first units are the largest, and this process also runs the executor (and, in a distributed job, the
    # Ray head), so it is the slowest place.
    first: dict[str, tuple[int, int] | None] = {}
    for place in places[1:] + places[:1]:
        position = take(place)
        first[place] = None if position is None else (position, len(units) - progress.started)
        progress.started += position is not None

    def serve(place: str) -> None:
        dealt = first[place]
        while True:
            with lock:
                if progress.error is not None:
                    return
                if dealt is not None:
                    (position, not_started), dealt = dealt, None
                else:
                    position = take(place)
                    if position is None:
                        return
                    progress.started += 1
                    not_started = len(units) - progress.started + 1
            name, item = units[position]
            try:
                result = _timed(executor, name, place, lambda: run(place, item, not_started))
            except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
                with lock:
                    progress.error = progress.error or error
                finished.put(None)
                return
            with lock:
                progress.results[position] = result
            finished.put(position)

    for place in places:
        threading.Thread(target=serve, args=(place,), name=f"{_THREAD_PREFIX}{place}", daemon=True).start()
    done = 0
    while done < len(units):
        try:
            position = finished.get(timeout=1.0)   # a timeout keeps this thread responsive to signals
        except queue.Empty:
            continue
        if position is None:
            raise progress.error
        done += 1
    return [progress.results[i] for i in range(len(units))]


def abandoned_units_running() -> bool:
    """True while a thread of ``run_units`` still runs a unit after the call ended on an error (abandoned)."""
    return any(t.is_alive() and t.name.startswith(_THREAD_PREFIX) for t in threading.enumerate())


def _timed(executor, name: str, place: str, call: Callable[[], Any]):
    started = time.monotonic()
    result = call()
    executor.records.append(UnitRecord(name, place, round(time.monotonic() - started, 1)))
    return result
