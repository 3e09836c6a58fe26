"""The real ``serve`` under load and under faults: concurrent MultiRecord clients, a worker killed
mid-request. The 10-minute load run is ``LOAD_SECONDS=600 scripts/test.sh -m slow -k load``."""
from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request

import psutil
import pytest

from multimodal.tooling.transform import LocalServer
from synthetic import csv_lines

LOAD_SECONDS = float(os.environ.get("LOAD_SECONDS", "60"))


def worker_processes(server: LocalServer) -> list[psutil.Process]:
    return psutil.Process(server.process.pid).children(recursive=False)


def ping_seconds(server: LocalServer) -> float:
    started = time.monotonic()
    with urllib.request.urlopen(server.url + "/ping", timeout=10) as response:
        assert response.status == 200
    return time.monotonic() - started


def run_load(saved_model_dir, test_frame, seconds: float) -> None:
    body = csv_lines(test_frame.drop(columns=["label"])).encode() * 4   # 96 records with images
    with LocalServer(saved_model_dir, {"MULTIMODAL_IMAGE_WEIGHTS": "random"}) as server:
        server.wait_ready(timeout=180)
        worker = worker_processes(server)[0]
        errors, answered, pings = [], [0], []
        stop = threading.Event()

        def client():
            while not stop.is_set():
                status, answer = server.invoke(body, "text/csv", "text/csv")
                if status != 200 or len(answer.splitlines()) != 96:
                    errors.append((status, answer[:200]))
                answered[0] += 1

        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        rss_after_warmup = None
        while time.monotonic() - started < seconds:
            pings.append(ping_seconds(server))
            if rss_after_warmup is None and time.monotonic() - started > min(60.0, seconds / 3):
                rss_after_warmup = worker.memory_info().rss
            time.sleep(1)
        rss_end = worker.memory_info().rss
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        assert worker_processes(server)[0].pid == worker.pid, "the worker was restarted"
    print(f"\nload: {answered[0]} requests ({answered[0] * 96} records) in {seconds:.0f} s from 4 clients, "
          f"{len(errors)} errors; /ping max {max(pings):.2f} s; worker RSS {rss_after_warmup / 1e6:.0f} -> "
          f"{rss_end / 1e6:.0f} MB")
    assert not errors, errors[:3]
    assert answered[0] >= 4 and max(pings) < 2.0
    assert rss_end <= 1.10 * rss_after_warmup


@pytest.mark.slow
def test_load_four_clients_one_minute(saved_model_dir, test_frame):
    run_load(saved_model_dir, test_frame, min(LOAD_SECONDS, 60.0))


@pytest.mark.slow
def test_load_four_clients_ten_minutes(saved_model_dir, test_frame):
    run_load(saved_model_dir, test_frame, max(LOAD_SECONDS, 600.0))


def test_a_worker_killed_mid_request_is_replaced_and_the_server_answers_again(saved_model_dir, test_frame):
    body = csv_lines(test_frame.drop(columns=["label"])).encode() * 8
    with LocalServer(saved_model_dir, {"MULTIMODAL_IMAGE_WEIGHTS": "random"}) as server:
        server.wait_ready(timeout=180)
        victim = worker_processes(server)[0]
        outcome = []

        def request_in_flight():
            try:
                outcome.append(server.invoke(body, "text/csv", "text/csv", timeout=60)[0])
            except OSError as error:  # the connection dies with its worker; a batch transform retries it
                outcome.append(type(error).__name__)

        in_flight = threading.Thread(target=request_in_flight)
        in_flight.start()
        time.sleep(0.5)
        os.kill(victim.pid, signal.SIGKILL)
        killed = time.monotonic()
        in_flight.join(timeout=60)
        assert outcome, "the in-flight request ended (with an error or a reply)"
        recovered = server.wait_ready(timeout=120, poll_seconds=0.2)
        status, answer = server.invoke(csv_lines(test_frame.head(2).drop(columns=["label"])).encode(), "text/csv",
                                       "text/csv")
        replacement = worker_processes(server)
        assert status == 200 and len(answer.splitlines()) == 2
        assert replacement and replacement[0].pid != victim.pid
        print(f"\nworker SIGKILLed: serving again {time.monotonic() - killed:.1f} s later "
              f"(ping after {recovered:.1f} s)")
        assert time.monotonic() - killed < 60
