"""The per-worker batcher: concurrent requests share calls, each gets exactly its own rows' answers, the
prediction never runs twice at once, and one request's failure stays its own."""
import threading
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from multimodal.sagemaker.serving.batching import PredictionBatcher


class RowValues:
    """A prediction whose answer for a row is a function of that row alone (as the model's), slow per call,
    refusing rows marked bad (as RowsWithoutData does) and checking that it never runs twice at once."""

    def __init__(self, seconds: float = 0.02):
        self.seconds = seconds
        self.running = threading.Lock()
        self.calls: list[int] = []

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        assert self.running.acquire(blocking=False), "predict_rows ran twice at once"
        try:
            time.sleep(self.seconds)
            self.calls.append(len(frame))
            if (frame["x"] < 0).any():
                raise ValueError(f"bad row at {int(np.flatnonzero(frame['x'] < 0)[0])}")
            return np.column_stack([frame["x"].to_numpy(float), 2 * frame["x"].to_numpy(float)])
        finally:
            self.running.release()


def _concurrently(call, count):
    """``call(i)`` for i < count in as many threads, released together; each result or ValueError."""
    results = [None] * count
    start = threading.Barrier(count)

    def run(i):
        start.wait()
        try:
            results[i] = call(i)
        except ValueError as error:
            results[i] = error

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "a request never got its answer"
    return results


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.integers(-1, 50), min_size=1, max_size=5), min_size=1, max_size=12),
       st.integers(1, 20))
def test_every_request_gets_its_own_rows_answers_and_only_its_own_errors(requests, max_rows):
    predict = RowValues(0.005)
    batcher = PredictionBatcher(predict, max_rows=max_rows)
    frames = [pd.DataFrame({"x": values}) for values in requests]
    results = _concurrently(lambda i: batcher.predict(frames[i]), len(frames))
    for values, result in zip(requests, results):
        if min(values) < 0:
            assert isinstance(result, ValueError) and f"bad row at {values.index(min(values))}" in str(result)
        else:
            np.testing.assert_array_equal(result, np.column_stack([values, [2 * v for v in values]]))
    # every row predicted once, plus once more for each row of a shared batch that failed and was split up
    assert sum(predict.calls) >= sum(len(v) for v in requests)
    assert batcher.batches <= len(requests)


def test_concurrent_single_records_share_calls():
    predict = RowValues(0.05)
    batcher = PredictionBatcher(predict)
    results = _concurrently(lambda i: batcher.predict(pd.DataFrame({"x": [i]})), 16)
    assert [float(r[0, 0]) for r in results] == list(range(16))
    assert len(predict.calls) < 16 and batcher.batched_requests >= 2, predict.calls


def test_one_request_alone_runs_at_once_with_its_own_error():
    predict = RowValues(0.0)
    batcher = PredictionBatcher(predict)
    np.testing.assert_array_equal(batcher.predict(pd.DataFrame({"x": [3]})), [[3.0, 6.0]])
    with pytest.raises(ValueError, match="bad row at 1"):
        batcher.predict(pd.DataFrame({"x": [1, -1]}))
    assert predict.calls == [1, 2] and batcher.batched_requests == 0


def test_exclusive_work_runs_alone_in_turn_with_the_batches():
    predict = RowValues(0.01)
    batcher = PredictionBatcher(predict)

    def work(k):
        assert predict.running.acquire(blocking=False), "exclusive work overlapped a prediction"
        try:
            time.sleep(0.01)
            return None if k % 2 else f"work {k}"   # None is an answer too
        finally:
            predict.running.release()

    results = _concurrently(lambda i: batcher.exclusive(lambda: work(i)) if i % 3 == 0
                            else batcher.predict(pd.DataFrame({"x": [i]})), 12)
    for i, result in enumerate(results):
        if i % 3 == 0:
            assert result == (None if i % 2 else f"work {i}")
        else:
            np.testing.assert_array_equal(result, [[i, 2 * i]])


def test_an_interrupted_batch_still_answers_everyone_and_hands_on():
    """Even an exception that is not an Exception (the worker being told to stop) inside a shared batch
    answers every request in it, and the next request is served."""
    calls = []

    def predict(frame):
        calls.append(len(frame))
        time.sleep(0.02)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return frame[["x"]].to_numpy(float)

    batcher = PredictionBatcher(predict)

    def call(i):
        try:
            return batcher.predict(pd.DataFrame({"x": [i]}))
        except (KeyboardInterrupt, RuntimeError) as error:
            return error

    results = _concurrently(call, 6)
    assert any(isinstance(r, (KeyboardInterrupt, RuntimeError)) for r in results)
    np.testing.assert_array_equal(batcher.predict(pd.DataFrame({"x": [7]})), [[7.0]])
