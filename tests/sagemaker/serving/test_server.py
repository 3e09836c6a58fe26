"""The real `serve` process (gunicorn + Flask) on a free port, driven as batch transform drives it."""
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from multimodal.errors import UserError
from multimodal.tooling.transform import LocalServer, free_port, run_transform, unpack_model
from sagemaker_tree import ROOT
from synthetic import csv_lines, make_frame

SERVE = str(Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "serve")


@pytest.fixture(scope="module")
def server(saved_model_dir):
    # SAGEMAKER_BATCH="True" is how the SageMaker SDK's local mode starts a transform container.
    with LocalServer(saved_model_dir, {"SAGEMAKER_BATCH": "True"}) as running:
        running.ready_seconds = running.wait_ready()
        yield running


def test_ping_answers_quickly_even_during_a_long_invocation(server):
    rows = make_frame(120, seed=8).drop(columns=["label"])
    done = threading.Event()
    outcome = {}

    def long_request():
        outcome["status"], outcome["body"] = server.invoke(csv_lines(rows).encode(), "text/csv", "text/csv")
        done.set()

    threading.Thread(target=long_request, daemon=True).start()
    time.sleep(0.5)
    latencies = []
    while not done.is_set():
        started = time.monotonic()
        with urllib.request.urlopen(server.url + "/ping", timeout=2) as response:
            assert response.status == 200
        latencies.append(time.monotonic() - started)
        time.sleep(0.3)
    assert outcome["status"] == 200 and len(outcome["body"].decode().splitlines()) == 120
    assert latencies and max(latencies) < 2.0, latencies
    # 16 request threads under glibc's default arenas let the worker's RSS creep (test_load_and_faults)
    assert "16 threads" in server.log_tail(100_000) and "2 malloc arenas" in server.log_tail(100_000)


def test_the_transform_driver_writes_one_out_per_file_in_order(server, tmp_path, test_frame):
    rows = test_frame.drop(columns=["label"])
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text(csv_lines(rows))
    (tmp_path / "in" / "b.csv").write_text(csv_lines(rows.head(2)))
    (tmp_path / "in" / "c.csv").write_text("r1,not,enough,fields\n")
    result = run_transform(server, tmp_path / "in", tmp_path / "out", max_payload_mb=1)
    assert [p.name for p in result.outputs] == ["a.csv.out", "b.csv.out"]
    assert "c.csv" in result.failures and "line 1: 4 fields, expected 7" in result.failures["c.csv"]
    assert not (tmp_path / "out" / "c.csv.out").exists(), "no .out for a failed file"
    out = (tmp_path / "out" / "a.csv.out").read_text().splitlines()
    assert [line.split(",")[0] for line in out] == rows["ID"].tolist()


def test_single_record_join_source_input_and_json_lines(server, tmp_path, test_frame):
    rows = test_frame.drop(columns=["label"]).head(3)
    (tmp_path / "in").mkdir()
    records = [{k: (None if v != v else v) for k, v in r.items()} for r in rows.to_dict("records")]
    (tmp_path / "in" / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    result = run_transform(server, tmp_path / "in", tmp_path / "out", content_type="application/jsonlines",
                           accept="application/jsonlines", batch_strategy="SingleRecord", join_source="Input")
    joined = [json.loads(line) for line in result.outputs[0].read_text().splitlines()]
    assert [j["ID"] for j in joined] == rows["ID"].tolist()
    assert all(j["SageMakerOutput"]["ID"] == j["ID"] and "label" in j["SageMakerOutput"] for j in joined)


def test_the_sagemaker_sdks_own_local_mode_code_drives_the_server(server, tmp_path, test_frame):
    from sagemaker.core.local import entities, local_session
    from sagemaker.core.local.data import LocalFileDataSource, get_batch_strategy_instance, get_splitter_instance

    local_session.get_docker_host = entities.get_docker_host = lambda: "127.0.0.1"   # no docker CLI here
    rows = test_frame.drop(columns=["label"])
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "batch.csv").write_text(csv_lines(rows))
    # What _LocalTransformJob.start does: copy BatchStrategy and MaxPayloadInMB from /execution-parameters.
    parameters = json.loads(entities._perform_request(f"{server.url}/execution-parameters")[0].data)
    strategy = get_batch_strategy_instance(parameters["BatchStrategy"], get_splitter_instance("Line"))
    client = local_session.LocalSagemakerRuntimeClient({"local": {"serving_port": server.port}})
    outputs = []
    for name in LocalFileDataSource(str(tmp_path / "in")).get_file_list():
        for payload in strategy.pad(name, parameters["MaxPayloadInMB"]):
            response = client.invoke_endpoint(payload, "", "text/csv", "text/csv")["Body"]
            assert response.status == 200, response.data
            outputs += response.read().decode().splitlines()
    assert [line.split(",")[0] for line in outputs] == rows["ID"].tolist()


def test_sigterm_shuts_serve_down_within_seconds(server):
    started = time.monotonic()
    server.process.terminate()
    code = server.process.wait(timeout=15)
    assert time.monotonic() - started < 10 and code == 0


@pytest.mark.parametrize("prepare, words", [
    (lambda model: None, "model_config.json is missing"),
    (lambda model: (model / "model_config.json").write_text("{broken"), "is not valid JSON"),
    (lambda model: _edit_config(model, lambda c: c.pop("fusion")), "lacks key(s) ['fusion']"),
    (lambda model: _edit_config(model, lambda c: c.update(colour="red")), "has unknown key(s) ['colour']"),
    (lambda model: _edit_config(model, lambda c: c["modalities"][0].pop("columns")),
     "'modalities[1]' lacks key(s) ['columns']"),
])
def test_serve_fails_fast_on_an_incomplete_model_directory(tmp_path, saved_model_dir, prepare, words):
    shutil.copy2(saved_model_dir / "model_config.json", (tmp_path / "model").mkdir() or tmp_path / "model")
    (tmp_path / "model" / "model_config.json").unlink() if "missing" in words else None
    prepare(tmp_path / "model")
    started = time.monotonic()
    result = subprocess.run([SERVE], env={**os.environ, "SAGEMAKER_BASE_DIR": str(tmp_path)}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and words in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert time.monotonic() - started < 20


def _edit_config(model, change):
    config = json.loads((model / "model_config.json").read_text())
    change(config)
    (model / "model_config.json").write_text(json.dumps(config))


def test_model_tar_gz_is_unpacked_safely(tmp_path, saved_model_dir):
    import tarfile

    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for item in saved_model_dir.iterdir():
            tar.add(item, arcname=item.name)
    model_dir = unpack_model(archive, tmp_path / "unpacked")
    assert (model_dir / "model_config.json").is_file()


@pytest.mark.parametrize("member", ["../escaped.txt", "link"])
def test_a_model_tar_gz_that_writes_outside_its_directory_is_refused(tmp_path, member):
    """tarfile's "data" filter: members that leave the directory, and links to absolute paths, are refused
    (absolute member names are made relative)."""
    import io
    import tarfile

    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(member)
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 5
            tar.addfile(info, io.BytesIO(b"owned"))
    with pytest.raises(UserError, match="evil.tar.gz is not a usable model.tar.gz"):
        unpack_model(archive, tmp_path / "unpacked")
    assert not (tmp_path / "escaped.txt").exists()


@pytest.mark.slow
def test_a_model_directory_over_one_gigabyte_starts_and_answers_ping(tmp_path, saved_model_dir):
    """The original server failed its health check above about 1 GB; serve never copies the model directory
    and answers /ping while it loads. (A padding file stands in for large AutoGluon models.)"""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(saved_model_dir, model)
    with open(model / "text" / "padding.bin", "wb") as handle:
        for _ in range(1100):
            handle.write(os.urandom(1024 * 1024))
    assert sum(p.stat().st_size for p in model.rglob("*") if p.is_file()) > 1024 ** 3
    with LocalServer(model) as running:
        started = time.monotonic()
        assert running.wait_ready(timeout=240) < 240
        with urllib.request.urlopen(running.url + "/ping", timeout=2) as response:
            assert response.status == 200
        assert time.monotonic() - started < 240


def test_serve_exits_when_a_worker_cannot_load_the_model(tmp_path, saved_model_dir):
    import shutil

    shutil.copytree(saved_model_dir, tmp_path / "model")
    (tmp_path / "model" / "text" / "predictor.pkl").write_bytes(b"damaged")
    result = subprocess.run([SERVE], env={**os.environ, "SAGEMAKER_BASE_DIR": str(tmp_path),
                                          "SAGEMAKER_BIND_TO_PORT": str(free_port())},
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 3, result.stdout[-2000:] + result.stderr[-2000:]
    output = result.stdout + result.stderr
    assert "stopping serve: the model cannot be loaded" in output
