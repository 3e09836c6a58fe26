"""The Flask app over a real fitted model (the session's), through Flask's test client."""
import json
import threading

import pytest

from multimodal.sagemaker.serving.app import ModelHolder, create_app
from multimodal.sagemaker.serving.settings import ServerSettings
from synthetic import csv_lines, jpeg_base64


@pytest.fixture(scope="module")
def client(app_client):
    return app_client


@pytest.fixture(scope="module")
def rows(test_frame):
    return test_frame.drop(columns=["label"])


def test_ping_is_503_while_loading_then_200():
    release = threading.Event()
    holder = ModelHolder(lambda: release.wait(10) and "a model")
    client = create_app(holder, ServerSettings()).test_client()
    assert client.get("/ping").status_code == 503
    release.set()
    holder.ready.wait(10)
    assert client.get("/ping").status_code == 200


def test_a_model_that_fails_to_load_is_reported():
    holder = ModelHolder(lambda: (_ for _ in ()).throw(RuntimeError("broken model")))
    client = create_app(holder, ServerSettings()).test_client()
    holder.ready.wait(10)
    assert client.get("/ping").status_code == 500
    assert b"broken model" in client.post("/invocations", data=b"x").data


def test_execution_parameters_spelling_follows_the_caller():
    service = ServerSettings.from_environment({"SAGEMAKER_BATCH": "true"})
    local_mode = ServerSettings.from_environment({"SAGEMAKER_BATCH": "True", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20"})
    assert service.execution_parameters() == {"MaxConcurrentTransforms": 1, "BatchStrategy": "MULTI_RECORD",
                                              "MaxPayloadInMB": 6}
    assert local_mode.execution_parameters() == {"MaxConcurrentTransforms": 1, "BatchStrategy": "MultiRecord",
                                                 "MaxPayloadInMB": 20}


def test_csv_in_n_results_out_in_order_with_ids(client, rows, fitted):
    response = client.post("/invocations", data=csv_lines(rows).encode(), content_type="text/csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    lines = response.data.decode().splitlines()
    assert [line.split(",")[0] for line in lines] == rows["ID"].tolist()
    assert [line.split(",")[1] for line in lines] == fitted.predict(rows).tolist()


def test_header_line_is_skipped_and_probabilities_on_request(client, rows, fitted):
    header = (",".join(rows.columns) + "\n").encode()
    response = client.post("/invocations", data=header + csv_lines(rows.head(3)).encode(),
                           headers={"Content-Type": "text/csv", "Accept": "text/csv;probabilities=true"})
    lines = response.data.decode().splitlines()
    assert len(lines) == 3 and len(lines[0].split(",")) == 2 + len(fitted.classes_)
    expected = fitted.predict_proba(rows.head(3)).to_numpy()
    assert [float(v) for v in lines[0].split(",")[2:]] == pytest.approx(expected[0].tolist(), abs=1e-5)


def test_json_lines_in_and_out(client, rows, fitted):
    body = "".join(json.dumps({k: (None if v != v else v) for k, v in r.items()}) + "\n"
                   for r in rows.head(4).to_dict("records"))
    response = client.post("/invocations", data=body.encode(),
                           headers={"Content-Type": "application/jsonlines", "Accept": "application/jsonlines"})
    results = [json.loads(line) for line in response.data.decode().splitlines()]
    assert [r["ID"] for r in results] == rows["ID"].head(4).tolist()
    assert [r["label"] for r in results] == fitted.predict(rows.head(4)).tolist()
    assert "probabilities" not in results[0]


def test_an_undecodable_image_is_a_missing_image_not_a_failed_batch(client, rows):
    bad = rows.head(3).copy()
    bad["photo_image"] = ["%%%not base64%%%", base64_png_of_text(), jpeg_base64((1, 2, 3))]
    response = client.post("/invocations", data=csv_lines(bad).encode(), content_type="text/csv")
    assert response.status_code == 200 and len(response.data.decode().splitlines()) == 3


def base64_png_of_text():
    import base64

    return base64.b64encode(b"\x89PNG\r\n\x1a\nnot really a png").decode()


@pytest.mark.parametrize("body, headers, status, words", [
    (b"a,b\n", {"Content-Type": "text/csv"}, 400, "line 1: 2 fields, expected 7"),
    (b"x", {"Content-Type": "application/x-parquet"}, 415, "not supported"),
    (b"x", {"Content-Type": "text/csv", "Accept": "image/png"}, 406, "cannot answer"),
    (b"r1,t,b,heavy,3,red,\n", {"Content-Type": "text/csv"}, 400, "line 1, column 'weight_num': 'heavy'"),
    (b"", {"Content-Type": "text/csv"}, 400, "the payload is empty"),
    (b"x" * (1024 * 1024 + 1), {"Content-Type": "text/csv"}, 413, "MaxPayloadInMB (1 MB)"),
])
def test_bad_requests_are_4xx_naming_the_problem_and_the_next_request_works(client, rows, body, headers, status,
                                                                             words):
    response = client.post("/invocations", data=body, headers=headers)
    assert response.status_code == status and words in response.data.decode()
    assert client.post("/invocations", data=csv_lines(rows.head(1)).encode(), content_type="text/csv").status_code == 200


def test_unknown_routes(client):
    assert client.get("/nothing").status_code == 404
    assert client.get("/invocations").status_code == 405


def test_every_error_reply_is_plain_text_never_flasks_html(client):
    for response in (client.get("/nowhere"), client.delete("/invocations"),
                     client.post("/ping", data=b"x")):
        assert response.status_code in (404, 405)
        assert response.mimetype == "text/plain" and b"<html" not in response.data.lower()


def test_an_unexpected_exception_while_predicting_is_a_one_line_500_and_the_worker_goes_on(fitted, rows,
                                                                                          monkeypatch):
    """A fault injected into the real model's blend (once): the reply is one plain-text line, and the next
    request is answered."""
    blend = fitted.blend_
    original = blend.predict_proba
    failures = iter([ValueError("something deep inside\nwith a second line")])

    def failing_once(inputs):
        error = next(failures, None)
        if error is not None:
            raise error
        return original(inputs)

    monkeypatch.setattr(blend, "predict_proba", failing_once)
    holder = ModelHolder(lambda: fitted)
    client = create_app(holder, ServerSettings()).test_client()
    holder.ready.wait(30)
    body = csv_lines(rows.iloc[:2]).encode()
    first = client.post("/invocations", data=body, content_type="text/csv")
    assert first.status_code == 500 and first.mimetype == "text/plain"
    assert first.data.decode().count("\n") == 1 and "ValueError: something deep inside" in first.data.decode()
    second = client.post("/invocations", data=body, content_type="text/csv")
    assert second.status_code == 200 and len(second.data.decode().splitlines()) == 2


def test_every_error_class_has_one_http_status():
    """The mapping lives in one place and follows the class hierarchy: the nearest listed ancestor wins."""
    from werkzeug.exceptions import NotFound

    from multimodal.errors import AlgorithmError, PlatformError, RowsWithoutData, UserError
    from multimodal.sagemaker.serving.app import ModelLoadFailed, ModelLoading, error_status
    from multimodal.sagemaker.serving.payloads import PayloadError, PayloadTooLarge, UnsupportedContentType
    from multimodal.sagemaker.serving.registry import (BadModelRequest, InsufficientMemory, ModelAlreadyLoaded,
                                                       ModelLoadError, ModelNotLoaded)
    from multimodal.sagemaker.serving.responses import BadOutputSelection, NotAcceptable

    expected = {PayloadError("x"): 400, UnsupportedContentType("x"): 415, NotAcceptable("x"): 406,
                PayloadTooLarge("x"): 413, RowsWithoutData([0]): 400, UserError("x"): 400, ModelLoading("x"): 503,
                ModelLoadFailed("x"): 500, PlatformError("x"): 500, AlgorithmError("x"): 500, ValueError("x"): 500,
                NotFound(): 404, BadOutputSelection("x"): 400, ModelNotLoaded("x"): 404, ModelAlreadyLoaded("x"): 409,
                InsufficientMemory("x"): 507, BadModelRequest("x"): 400, ModelLoadError("x"): 500}
    assert {type(e).__name__: error_status(e) for e in expected} == {type(e).__name__: s for e, s in expected.items()}
