"""Real-time endpoint figures through the real ``serve``: single-record latency, throughput under concurrent
clients and memory, for the default (bagged) members against ``refit_full=true``, with the accuracy each costs.

    .venv/bin/python bench/endpoint.py [--datasets demo demo_image titanic] [--quality light]
                                       [--minutes 2] [--requests 300] [--seconds 15] [--multi-model 4]

For each data set, two models with the same seed and budget (``quality`` as given, the default's by default):
the default, and ``refit_full=true``; both are cached under build/bench/endpoint/. Each is served by ``serve``
(1 worker, 16 threads, as the image runs it) and measured warm, one model at a time:
- held-out accuracy and log loss (the same rows for both models);
- latency of single-record CSV requests (one held-out row each, in turn; with an image column, rows that have
  an image), sent one after the other over one kept-alive connection: p50 and p99 of ``--requests``;
- throughput with 1, 4 and 16 clients, each on its own connection, sending single records for ``--seconds``;
- the worker's resident memory after the run (MB);
- on a multi-model endpoint (``SAGEMAKER_MULTI_MODEL=true``), ``--multi-model`` copies of each model loaded one
  after the other: the worker's memory and the load time per model (models with the same image weights share
  one ResNet50), and after unloading them.
Goals on this machine (issue 22): p99 of a text + tabular record <= 50 ms, of a record with an image <= 150 ms;
4 clients >= 1.6x the throughput of one.
"""
from __future__ import annotations

import argparse
import csv
import http.client
import io
import statistics
import threading
import time

import common
import numpy as np
import pandas as pd
import psutil

from multimodal.classifier.tabular import directory_bytes
from multimodal.tooling.transform import LocalServer

DATASETS = ("demo", "demo_image", "titanic", "trump_tweets")
DEFAULT_DATASETS = ("demo", "demo_image", "titanic")
VARIANTS = {"bagged": {}, "refit_full": {"refit_full": "true"}}


def dataset(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) of a data set: the demo's own split, or split 0 of the accuracy study's."""
    if name in ("demo", "demo_image"):
        with_images = name == "demo_image"
        return common.demo_frame("train", with_images), common.demo_frame("test", with_images)
    import study

    table, _, _ = study.load(name)
    return study.split(table, 0)


def trained(name: str, variant: str, train: pd.DataFrame, quality: str, minutes: float):
    """The cached model directory of (data set, variant), trained here when missing."""
    directory = common.ROOT / "build" / "bench" / "endpoint" / f"{name}-{quality}-{minutes:g}min-{variant}"
    if not (directory / "model_config.json").is_file():
        import torch  # noqa: F401 - before tensorflow

        from multimodal.classifier.estimator import MultimodalClassifier

        print(f"training {name} {variant} ({quality}, {minutes:g} min, {len(train)} rows)", flush=True)
        started = time.monotonic()
        model = MultimodalClassifier(quality=quality, n_mins=minutes, image_weights="random", **VARIANTS[variant])
        model.fit(train)
        model.save(directory)
        print(f"  trained in {time.monotonic() - started:.0f} s", flush=True)
    return directory


def held_out_scores(directory, test: pd.DataFrame) -> tuple[float, float]:
    from multimodal.classifier.estimator import MultimodalClassifier

    model = MultimodalClassifier.load(directory, image_weights="random")
    proba = model.predict_proba(test.drop(columns=["label"])).to_numpy()
    truth = np.array([model.classes_.index(label) for label in test["label"]])
    picked = np.clip(proba[np.arange(len(truth)), truth], 1e-15, 1.0)
    return float((proba.argmax(1) == truth).mean()), float(-np.log(picked).mean())


def csv_records(rows: pd.DataFrame) -> list[bytes]:
    """Each row as one header-less CSV record, as a client sends it."""
    records = []
    for values in rows.astype(object).where(rows.notna(), "").itertuples(index=False):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(values)
        records.append(buffer.getvalue().encode())
    return records


def _post(connection: http.client.HTTPConnection, body: bytes) -> None:
    connection.request("POST", "/invocations", body=body, headers={"Content-Type": "text/csv", "Accept": "text/csv"})
    response = connection.getresponse()
    answer = response.read()
    if response.status != 200:
        raise RuntimeError(f"/invocations {response.status}: {answer[:300]!r}")


def latencies(port: int, records: list[bytes], count: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    seconds = []
    for i in range(count):
        started = time.perf_counter()
        _post(connection, records[i % len(records)])
        seconds.append(time.perf_counter() - started)
    connection.close()
    return seconds


def throughput(port: int, records: list[bytes], clients: int, seconds: float) -> float:
    """Requests per second that ``clients`` concurrent clients get, each sending single records back to back."""
    done = [0] * clients
    errors: list[BaseException] = []
    stop = time.monotonic() + seconds

    def client(k: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            while time.monotonic() < stop:
                _post(connection, records[(k * 7 + done[k]) % len(records)])
                done[k] += 1
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return sum(done) / (time.monotonic() - started)


def worker_rss_mb(server) -> float:
    children = psutil.Process(server.process.pid).children(recursive=True)
    return max(child.memory_info().rss for child in children) / 1e6


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def measure(directory, test: pd.DataFrame, requests: int, seconds: float) -> dict:
    rows = test.drop(columns=["label"])
    images = [c for c in rows.columns if c.endswith("_image")]
    if images:
        rows = rows[(rows[images].fillna("") != "").all(axis=1)]
    records = csv_records(rows.head(200))
    with LocalServer(directory, {"MULTIMODAL_IMAGE_WEIGHTS": "random"}) as server:
        server.wait_ready(timeout=600)
        latencies(server.port, records, 20)   # the connection and the first requests
        single = latencies(server.port, records, requests)
        rates = {n: throughput(server.port, records, n, seconds) for n in (1, 4, 16)}
        rss = worker_rss_mb(server)
        log = server.log_tail(200_000)
    return {"p50": percentile(single, 50), "p99": percentile(single, 99), "mean": statistics.mean(single) * 1000,
            "rates": rates, "rss": rss, "image": bool(images), "warmed": "warmed up" in log}


def multi_model(directory, copies: int) -> list[list[object]]:
    """A multi-model endpoint loading ``copies`` copies of one model (as SageMaker extracts each tenant's
    model.tar.gz into its own directory): the worker's RSS and the load time after each load, then after
    unloading them all."""
    import json
    import shutil
    import tempfile
    import urllib.request
    from pathlib import Path

    def call(server, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(server.url + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=600) as response:
            return json.loads(response.read() or b"null")

    rows = []
    root = Path(tempfile.mkdtemp(prefix="multimodal-mme-"))
    try:
        for k in range(copies):
            shutil.copytree(directory, root / f"tenant{k}" / "model")
        with LocalServer(directory, {"MULTIMODAL_IMAGE_WEIGHTS": "random", "SAGEMAKER_MULTI_MODEL": "true"}) as server:
            server.wait_ready(timeout=600)
            time.sleep(1)
            before = worker_rss_mb(server)
            rows.append(["none loaded", f"{before:.0f}", "", ""])
            previous = before
            for k in range(copies):
                started = time.monotonic()
                call(server, "POST", "/models", {"model_name": f"tenant{k}", "url": str(root / f"tenant{k}" / "model")})
                seconds = time.monotonic() - started
                rss = worker_rss_mb(server)
                rows.append([f"{k + 1} loaded", f"{rss:.0f}", f"{rss - previous:+.0f}", f"{seconds:.1f}"])
                previous = rss
            for k in range(copies):
                call(server, "DELETE", f"/models/tenant{k}")
            rss = worker_rss_mb(server)
            rows.append(["all unloaded", f"{rss:.0f}", f"{rss - previous:+.0f}", ""])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DEFAULT_DATASETS), choices=list(DATASETS))
    parser.add_argument("--quality", default=None, help="the members' quality (default: the algorithm's default)")
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--multi-model", type=int, default=4, metavar="N",
                        help="also load N copies of the image model (else the first) on a multi-model endpoint (0: skip)")
    args = parser.parse_args()
    from multimodal.classifier.hyperparameters import defaults

    quality = args.quality or defaults()["quality"]
    table = []
    for name in args.datasets:
        train, test = dataset(name)
        directories = {variant: trained(name, variant, train, quality, args.minutes) for variant in VARIANTS}
        for variant, directory in directories.items():
            accuracy, log_loss = held_out_scores(directory, test)
            figures = measure(directory, test, args.requests, args.seconds)
            rates = figures["rates"]
            goal = 150 if figures["image"] else 50
            print(f"{name} {variant}: p50 {figures['p50']:.1f} ms, p99 {figures['p99']:.1f} ms (goal <= {goal}); "
                  f"{rates[1]:.1f} / {rates[4]:.1f} / {rates[16]:.1f} requests/s with 1 / 4 / 16 clients "
                  f"({rates[4] / rates[1]:.2f}x at 4); worker {figures['rss']:.0f} MB; warmed up: {figures['warmed']}",
                  flush=True)
            table.append([name + (" (image record)" if figures["image"] else ""), variant, len(test),
                          f"{accuracy:.4f}", f"{log_loss:.4f}", f"{figures['p50']:.1f}", f"{figures['p99']:.1f}",
                          f"{rates[1]:.1f}", f"{rates[4]:.1f}", f"{rates[16]:.1f}", f"{rates[4] / rates[1]:.2f}",
                          f"{figures['rss']:.0f}"])
    common.print_table(f"Single-record requests through serve (1 worker, 16 threads), quality={quality}, "
                       f"{args.minutes:g}-minute fits; latency over {args.requests} sequential requests, throughput "
                       f"over {args.seconds:g} s per client count",
                       ["data set", "members", "test rows", "accuracy", "log loss", "p50 ms", "p99 ms",
                        "req/s 1 client", "req/s 4", "req/s 16", "4 / 1", "worker MB"], table)

    if args.multi_model:
        # The model with an image column if there is one: its members add up beside a shared ResNet50.
        name = "demo_image" if "demo_image" in args.datasets else args.datasets[0]
        for variant in VARIANTS:
            directory = trained(name, variant, None, quality, args.minutes)
            on_disk = directory_bytes(directory) / 1e6
            common.print_table(f"Multi-model endpoint, {args.multi_model} copies of the {name} {variant} model "
                               f"({on_disk:.0f} MB on disk): worker RSS after each load",
                               ["models", "worker MB", "change MB", "load s"], multi_model(directory, args.multi_model))


if __name__ == "__main__":
    main()
