"""SageMaker's selectable output (SAGEMAKER_INFERENCE_OUTPUT, the inference_output custom attribute) from the
real `serve` process over HTTP, with requests shaped as SageMaker Clarify builds them."""
import json
import os
import subprocess
import time
from pathlib import Path

import jmespath
import numpy as np
import pytest

from multimodal.tooling.transform import LocalServer
from sagemaker_tree import ROOT
from synthetic import csv_lines

SERVE = str(Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "serve")

SELECTED = "predicted_label,probabilities"


@pytest.fixture(scope="module")
def server(saved_model_dir):
    with LocalServer(saved_model_dir, {"SAGEMAKER_INFERENCE_OUTPUT": SELECTED}) as running:
        running.wait_ready()
        yield running


@pytest.fixture(scope="module")
def rows(test_frame):
    return test_frame.drop(columns=["label"]).head(5)


@pytest.fixture(scope="module")
def expected(fitted, rows):
    proba = fitted.predict_proba(rows).to_numpy()
    return fitted.predict_from_proba(proba).tolist(), proba


def _close(values, proba) -> bool:
    return np.allclose(np.asarray(values, dtype=float), proba, atol=1e-5)


def _records(rows):
    return [{k: (None if v != v else v) for k, v in r.items()} for r in rows.to_dict("records")]


def test_json_answers_predictions_with_the_selected_keys_in_labels_order(server, rows, expected, fitted):
    status, body = server.invoke(json.dumps(_records(rows)).encode(), "application/json", "application/json")
    assert status == 200
    document = json.loads(body)
    labels, proba = expected
    # README's Clarify settings for JSON: label "predictions[*].predicted_label",
    # probability "predictions[*].probabilities", label_headers = the model's classes
    assert jmespath.search("predictions[*].predicted_label", document) == labels
    assert _close(jmespath.search("predictions[*].probabilities", document), proba)
    assert [list(p) for p in document["predictions"]] == [["predicted_label", "probabilities"]] * len(rows)
    assert [fitted.classes_[max(range(len(p)), key=p.__getitem__)] for p in
            jmespath.search("predictions[*].probabilities", document)] == labels


def test_clarify_csv_rows_in_and_the_documented_indexes_out(server, rows, expected):
    """Clarify sends CSV rows in the dataset's feature order (training columns minus label): label index 0,
    probability index 1 (a JSON list in one quoted cell)."""
    import csv
    import io

    status, body = server.invoke(csv_lines(rows).encode(), "text/csv", "text/csv")
    assert status == 200
    answer = list(csv.reader(io.StringIO(body.decode())))
    labels, proba = expected
    assert [row[0] for row in answer] == labels
    assert _close([json.loads(row[1]) for row in answer], proba)


def test_clarify_json_lines_features_lists_and_json_with_feature_names(server, rows, expected):
    labels, proba = expected
    # JSON Lines content_template "$features": one list of values per line, in the feature order
    lines = "".join(json.dumps(list(r.values())) + "\n" for r in _records(rows))
    status, body = server.invoke(lines.encode(), "application/jsonlines", "application/jsonlines")
    assert status == 200
    answers = [json.loads(line) for line in body.decode().splitlines()]
    assert [jmespath.search("predicted_label", a) for a in answers] == labels
    assert _close([jmespath.search("probabilities", a) for a in answers], proba)
    # JSON content_template '{"instances": $records, "feature_names": $feature_names}', record_template '$features'
    request = {"instances": [list(r.values()) for r in _records(rows)], "feature_names": list(rows.columns)}
    status, body = server.invoke(json.dumps(request).encode(), "application/json", "application/json")
    assert status == 200 and jmespath.search("predictions[*].predicted_label", json.loads(body)) == labels


def test_the_custom_attribute_selects_per_request_and_a_bad_one_is_a_400(server, rows, expected):
    labels, proba = expected
    status, body = server.invoke(csv_lines(rows).encode(), "text/csv", "application/jsonlines",
                                 headers={"X-Amzn-SageMaker-Custom-Attributes":
                                          "trace=abc; inference_output=ID,probability,labels"})
    assert status == 200
    answers = [json.loads(line) for line in body.decode().splitlines()]
    assert [a["ID"] for a in answers] == rows["ID"].tolist()
    assert [a["probability"] for a in answers] == pytest.approx(proba.max(1).tolist(), abs=1e-5)
    assert all(list(a) == ["ID", "probability", "labels"] for a in answers)
    status, body = server.invoke(csv_lines(rows).encode(), "text/csv", "text/csv",
                                 headers={"X-Amzn-SageMaker-Custom-Attributes": "inference_output=predicted_lable"})
    assert status == 400 and "'predicted_lable'" in body.decode() and "choose from" in body.decode()
    status, _ = server.invoke(csv_lines(rows).encode(), "text/csv", "text/csv")
    assert status == 200


def test_serve_refuses_an_unknown_key_in_the_environment_at_once(tmp_path, saved_model_dir):
    started = time.monotonic()
    result = subprocess.run([SERVE], env={**os.environ, "SAGEMAKER_BASE_DIR": str(saved_model_dir.parent),
                                          "SAGEMAKER_INFERENCE_OUTPUT": "predicted_label,probabilty"},
                            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "SAGEMAKER_INFERENCE_OUTPUT" in output and "'probabilty'" in output
    assert "Traceback" not in output and time.monotonic() - started < 20


def test_explanations_per_record_sum_to_the_predicted_probability(server, rows, fitted):
    """explain=true (Accept parameter, or the custom attribute) adds each record's per-modality explanation
    of its predicted label's probability, as MultimodalClassifier.explain gives it."""
    import csv
    import io

    expected = fitted.explain(rows)
    modalities = ["text", "num", "cat", "img/photo_image"]
    status, body = server.invoke(json.dumps(_records(rows)).encode(), "application/json",
                                 "application/json; explain=true")
    assert status == 200
    predictions = json.loads(body)["predictions"]
    for record, (_, row) in zip(predictions, expected.iterrows()):
        assert record["predicted_label"] == row["predicted"]
        assert list(record["explanation"]) == ["baseline", *modalities]
        assert np.allclose([record["explanation"][k] for k in ["baseline", *modalities]],
                           row[["baseline", *modalities]].to_numpy(float), atol=1e-5)
        assert abs(sum(record["explanation"].values()) - max(record["probabilities"])) < 1e-4
    status, body = server.invoke(csv_lines(rows).encode(), "text/csv", "text/csv",
                                 headers={"X-Amzn-SageMaker-Custom-Attributes": "explain=true"})
    assert status == 200
    answer = list(csv.reader(io.StringIO(body.decode())))
    assert [len(line) for line in answer] == [2 + 1 + len(modalities)] * len(rows)
    assert np.allclose([[float(v) for v in line[2:]] for line in answer],
                       expected[["baseline", *modalities]].to_numpy(float), atol=1e-5)
    status, body = server.invoke(csv_lines(rows).encode(), "text/csv", "text/csv; explain=perhaps")
    assert status == 400 and "explain" in body.decode()
