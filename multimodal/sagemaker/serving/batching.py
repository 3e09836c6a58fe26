"""One worker's predictions, one batch at a time: requests that arrive while a batch runs are predicted
together in the next one.

A prediction costs a fixed overhead per call (one AutoGluon call per member, one fusion call) on top of its
cost per row, so concurrent single-record requests answered in one call share that overhead instead of
queueing behind one another. There is no batching thread and no waiting for a batch to fill: the request
that finds the model idle predicts at once, with whatever else is queued; when it is done, the oldest queued
request runs the next batch. A batch that fails is predicted again request by request, so that one request's
bad rows fail that request only.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

MAX_BATCH_ROWS = 4096   # a batch takes queued requests up to this many rows (a larger request runs alone)


@dataclass
class _Request:
    frame: pd.DataFrame | None
    work: Callable[[], object] | None = None   # runs alone, in turn with the batches (``exclusive``)
    done: threading.Event = field(default_factory=threading.Event)
    leads: bool = False             # woken to run the next batch, not with its answer
    answered: bool = False
    result: object = None
    error: BaseException | None = None


class PredictionBatcher:
    """``predict(frame)`` for many threads over one ``predict_rows(frame) -> array`` that must not run twice at
    once; concurrent requests are concatenated into one call (see the module's docstring)."""

    def __init__(self, predict_rows: Callable[[pd.DataFrame], np.ndarray], max_rows: int = MAX_BATCH_ROWS):
        self._predict_rows = predict_rows
        self._max_rows = max_rows
        self._lock = threading.Lock()
        self._queue: list[_Request] = []
        self._busy = False
        self.batches = 0             # batches run (a batch that failed and was answered request by request: one)
        self.batched_requests = 0    # requests that shared a call with others

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """``predict_rows(frame)``, possibly computed in one call with other threads' frames."""
        return self._submit(_Request(frame))

    def exclusive(self, work: Callable[[], object]):
        """``work()``, run alone in turn with the batches (other work on the same model, such as explanations)."""
        return self._submit(_Request(None, work))

    def _submit(self, request: _Request):
        with self._lock:
            self._queue.append(request)
            leads = not self._busy
            self._busy = True
        while True:
            if leads:
                self._run_batches(request)
            request.done.wait()
            if request.answered:
                break
            leads, request.leads = request.leads, False
            request.done.clear()
        if request.error is not None:
            raise request.error
        return request.result

    def _run_batches(self, own: _Request) -> None:
        """Run batches until ``own`` is answered; then hand the next batch to the oldest queued request.
        Whatever happens inside a batch, every request in it is answered and the next batch is handed on."""
        try:
            while not own.answered:
                with self._lock:
                    batch, rows = [], 0
                    while self._queue and (not batch or (self._queue[0].work is None and batch[0].work is None
                                                         and rows + len(self._queue[0].frame) <= self._max_rows)):
                        rows += len(self._queue[0].frame) if self._queue[0].work is None else 0
                        batch.append(self._queue.pop(0))
                try:
                    self._answer(batch)
                finally:
                    for request in batch:
                        if not request.answered:
                            request.error = RuntimeError("the prediction was interrupted")
                            request.answered = True
                            request.done.set()
        finally:
            with self._lock:
                if self._queue:
                    self._queue[0].leads = True
                    self._queue[0].done.set()
                else:
                    self._busy = False

    def _answer(self, batch: list[_Request]) -> None:
        self.batches += 1
        if len(batch) == 1:
            self._answer_one(batch[0])
            return
        self.batched_requests += len(batch)
        try:
            proba = self._predict_rows(pd.concat([r.frame for r in batch], ignore_index=True))
        except Exception:  # noqa: BLE001 - some request's rows: each request is answered on its own
            for request in batch:
                self._answer_one(request)
            return
        start = 0
        for request in batch:
            request.result = proba[start:start + len(request.frame)]
            request.answered = True
            start += len(request.frame)
            request.done.set()

    def _answer_one(self, request: _Request) -> None:
        try:
            request.result = request.work() if request.work is not None else self._predict_rows(request.frame)
        except BaseException as error:  # noqa: BLE001 - raised in the request's own thread
            request.error = error
        request.answered = True
        request.done.set()


def model_batcher(model) -> PredictionBatcher:
    """The batcher of a fitted ``MultimodalClassifier``: its probabilities of rows that must hold data (a row
    whose every feature is missing or undecodable raises ``RowsWithoutData``)."""
    return PredictionBatcher(lambda frame: model.predict_proba(frame, require_data=True).to_numpy())
