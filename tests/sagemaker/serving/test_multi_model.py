"""A multi-model endpoint (SAGEMAKER_MULTI_MODEL=true) driven over HTTP as SageMaker drives the real `serve`:
load, list, describe, invoke, unload, and the contract's 404, 409 and 507."""
import json
import shutil
import urllib.error
import urllib.request

import pytest

from multimodal.sagemaker.serving.registry import BadModelRequest, ModelRegistry
from multimodal.tooling.transform import LocalServer
from synthetic import csv_lines


def call(server, method: str, path: str, body=None, headers=None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    request = urllib.request.Request(server.url + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="module")
def models(saved_model_dir, tmp_path_factory):
    """Two copies of the session's model, as SageMaker extracts each model.tar.gz into its own directory."""
    root = tmp_path_factory.mktemp("models")
    for name in ("hash-a", "hash-b"):
        shutil.copytree(saved_model_dir, root / name / "model")
    return root


@pytest.fixture(scope="module")
def server(saved_model_dir):
    # No /opt/ml/model is needed: the server starts with nothing loaded.
    with LocalServer(saved_model_dir, {"SAGEMAKER_MULTI_MODEL": "true", "MODEL_SERVER_WORKERS": "2"}) as running:
        running.wait_ready()
        yield running


def test_ping_and_the_list_answer_with_no_model_loaded(server):
    assert call(server, "GET", "/ping")[0] == 200
    assert call(server, "GET", "/models") == (200, b'{"models": []}\n')
    status, body = call(server, "POST", "/invocations", b"x", {"Content-Type": "text/csv"})
    assert status == 404 and b"/models/<name>/invoke" in body
    assert "1 worker" in server.log_tail(100_000), "a multi-model endpoint keeps its models in one worker"


def test_load_list_describe_invoke_and_unload(server, models, test_frame, fitted):
    rows = test_frame.drop(columns=["label"]).head(6)
    expected = fitted.predict(rows).tolist()
    for name in ("hash-a", "hash-b"):
        status, body = call(server, "POST", "/models", {"model_name": name, "url": str(models / name / "model")},
                            {"Content-Type": "application/json", "X-Amzn-SageMaker-Target-Model": f"{name}.tar.gz"})
        assert status == 200, body
    status, body = call(server, "POST", "/models", {"model_name": "hash-a", "url": str(models / "hash-a" / "model")})
    assert status == 409 and json.loads(body)["type"] == "ModelAlreadyLoaded"
    status, body = call(server, "GET", "/models")
    assert status == 200 and json.loads(body) == {"models": [
        {"modelName": name, "modelUrl": str(models / name / "model")} for name in ("hash-a", "hash-b")]}
    assert json.loads(call(server, "GET", "/models/hash-b")[1]) == {"modelName": "hash-b",
                                                                   "modelUrl": str(models / "hash-b" / "model")}
    for name in ("hash-a", "hash-b"):
        status, body = call(server, "POST", f"/models/{name}/invoke", csv_lines(rows).encode(),
                            {"Content-Type": "text/csv", "Accept": "text/csv",
                             "X-Amzn-SageMaker-Target-Model": f"{name}.tar.gz"})
        assert status == 200 and [line.split(",")[1] for line in body.decode().splitlines()] == expected
    assert "'hash-b' loaded from" in server.log_tail(100_000)
    assert "shares its ResNet50 with 1 loaded model(s)" in server.log_tail(100_000), "one ResNet50 for both"
    assert call(server, "DELETE", "/models/hash-a")[0] == 200
    for method, path in (("DELETE", "/models/hash-a"), ("GET", "/models/hash-a")):
        status, body = call(server, method, path)
        assert status == 404 and json.loads(body)["type"] == "ModelNotLoaded"
    status, body = call(server, "POST", "/models/hash-a/invoke", csv_lines(rows).encode(), {"Content-Type": "text/csv"})
    assert status == 404 and b"not loaded" in body
    assert call(server, "POST", "/models/hash-b/invoke", csv_lines(rows).encode(), {"Content-Type": "text/csv"})[0] == 200
    assert json.loads(call(server, "GET", "/models")[1]) == {"models": [
        {"modelName": "hash-b", "modelUrl": str(models / "hash-b" / "model")}]}


@pytest.mark.parametrize("body, words", [
    (b"not json", "JSON object"),
    ([1, 2], "JSON object"),
    ({"url": "/x"}, "model_name"),
    ({"model_name": "m", "url": "/nonexistent/model"}, "no model_config.json"),
    ({"model_name": "m"}, "url"),
])
def test_bad_load_requests_are_400_naming_the_problem(server, body, words):
    status, answer = call(server, "POST", "/models", body, {"Content-Type": "application/json"})
    assert status == 400 and words in json.loads(answer)["message"]
    assert call(server, "GET", "/ping")[0] == 200


def test_a_model_too_large_for_the_memory_left_is_507(server, saved_model_dir, tmp_path):
    """A sparse file makes the model directory look as large as the machine's memory (without using disk or
    memory): the estimate refuses it before anything is loaded."""
    import psutil

    model = tmp_path / "huge" / "model"
    shutil.copytree(saved_model_dir, model)
    with open(model / "text" / "padding.bin", "wb") as handle:
        handle.truncate(psutil.virtual_memory().total)
    status, body = call(server, "POST", "/models", {"model_name": "huge", "url": str(model)})
    assert status == 507 and "unload a model first" in json.loads(body)["message"]
    assert call(server, "GET", "/models/huge")[0] == 404


def test_the_list_is_paged_with_next_page_token(tmp_path):
    registry = ModelRegistry(lambda directory: directory.name)
    for i in range(5):
        (tmp_path / f"m{i}").mkdir()
        (tmp_path / f"m{i}" / "model_config.json").write_text("{}")
        registry.load(f"m{i}", str(tmp_path / f"m{i}"))
    names, token = [], None
    while True:
        page, token = registry.page(token, limit=2)
        names += [m.name for m in page]
        if token is None:
            break
    assert names == [f"m{i}" for i in range(5)]
    with pytest.raises(BadModelRequest):
        registry.page("not-a-token")
