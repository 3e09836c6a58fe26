"""What an explanation costs: ``explain`` (exact Shapley values over the modalities) against a plain
``predict_proba`` of the same rows, side by side, in process and through the real ``serve``.

    .venv/bin/python bench/explanations.py [--repeats 7] [--minutes 3]

Models (cached under build/bench/explanations/): the demo data as it is (text, numbers, categories, one image
column: 4 modalities) and with two more image columns (the same digits shifted by one and two rows: 6
modalities, 64 coalitions), toy quality. Measured: batches of 1 and 200 test rows in process, and single
records through ``/invocations`` with and without ``Accept: text/csv; explain=true``. Goal (issue 23): at most
1.5x a plain prediction for up to 6 modalities.
"""
from __future__ import annotations

import argparse
import http.client
import statistics
import time

import common
import numpy as np
import pandas as pd

from multimodal.tooling.transform import LocalServer


def with_more_images(frame: pd.DataFrame, extra: int) -> pd.DataFrame:
    """``extra`` more image columns: the image column shifted by 1, 2, ... rows (other digits, same sizes)."""
    frame = frame.copy()
    for k in range(1, extra + 1):
        frame[f"digit{k}_image"] = np.roll(frame["digit_image"].to_numpy(), k)
    return frame


def trained(name: str, train: pd.DataFrame, minutes: float):
    directory = common.ROOT / "build" / "bench" / "explanations" / name
    if not (directory / "model_config.json").is_file():
        import torch  # noqa: F401 - before tensorflow

        from multimodal.classifier.estimator import MultimodalClassifier

        print(f"training {name} ({len(train)} rows, {minutes:g} min)", flush=True)
        MultimodalClassifier(quality="toy", n_mins=minutes, image_weights="random").fit(train).save(directory)
    return directory


def median_seconds(function, repeats: int) -> float:
    function()
    return statistics.median(common.timed(function) for _ in range(repeats))


def served(directory, rows: pd.DataFrame, repeats: int) -> tuple[float, float]:
    """Median seconds of a single-record request, plain and with explanations (interleaved)."""
    from endpoint import csv_records

    records = csv_records(rows.head(20))
    with LocalServer(directory, {"MULTIMODAL_IMAGE_WEIGHTS": "random"}) as server:
        server.wait_ready(timeout=600)
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)

        def post(record, accept):
            connection.request("POST", "/invocations", body=record, headers={"Content-Type": "text/csv",
                                                                              "Accept": accept})
            response = connection.getresponse()
            body = response.read()
            assert response.status == 200, body[:300]

        seconds = {"text/csv": [], "text/csv; explain=true": []}
        for accept in seconds:
            post(records[0], accept)
        for _ in range(repeats):
            for record in records:
                for accept in seconds:
                    started = time.perf_counter()
                    post(record, accept)
                    seconds[accept].append(time.perf_counter() - started)
        connection.close()
    return statistics.median(seconds["text/csv"]), statistics.median(seconds["text/csv; explain=true"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--minutes", type=float, default=3.0)
    args = parser.parse_args()
    from multimodal.classifier.estimator import MultimodalClassifier

    train, test = common.demo_frame("train"), common.demo_frame("test")
    table = []
    for name, extra in (("4 modalities", 0), ("6 modalities", 2)):
        directory = trained(name.replace(" ", "-"), with_more_images(train, extra), args.minutes)
        rows = with_more_images(test, extra).drop(columns=["label"]).reset_index(drop=True)
        model = MultimodalClassifier.load(directory, image_weights="random")
        batch = pd.concat([rows] * (200 // len(rows) + 1), ignore_index=True).head(200)
        for label, data in (("1 row", rows.head(1)), ("200 rows", batch)):
            plain = median_seconds(lambda data=data: model.predict_proba(data), args.repeats)
            explained = median_seconds(lambda data=data: model.explain(data), args.repeats)
            table.append([name, f"in process, {label}", f"{plain * 1000:.0f}", f"{explained * 1000:.0f}",
                          f"{explained / plain:.2f}"])
        plain, explained = served(directory, rows, args.repeats)
        table.append([name, "serve, single records", f"{plain * 1000:.0f}", f"{explained * 1000:.0f}",
                      f"{explained / plain:.2f}"])
        print(table[-3:], flush=True)
    common.print_table(f"explain against predict_proba, median of {args.repeats} (ms)",
                       ["model", "call", "predict_proba", "explain", "ratio"], table)
    print("\ngoal: ratio <= 1.5 for up to 6 modalities")


if __name__ == "__main__":
    main()
