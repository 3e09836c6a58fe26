"""What an answer holds: the default form, SageMaker's selectable keys, custom attributes (pure functions)."""
import csv
import io
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from multimodal.sagemaker.serving.app import error_status
from multimodal.sagemaker.serving.payloads import CSV, JSON, JSON_LINES, PayloadError
from multimodal.sagemaker.serving.responses import (OUTPUT_KEYS, BadOutputSelection, ResponseSpec, custom_attributes,
                                                    encode_results, output_keys, response_spec)
from multimodal.sagemaker.serving.settings import ServerSettings

PROBA = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
CLASSES = ["cat", "dog", "fish"]


def test_accept_negotiation_and_the_probabilities_parameter():
    assert response_spec(None, None, None, False) == ResponseSpec(CSV)
    assert response_spec("text/csv;probabilities=true", None, None, False) == ResponseSpec(CSV, probabilities=True)
    assert response_spec("application/jsonlines", None, None, True) == ResponseSpec(JSON_LINES, probabilities=True)
    assert response_spec("image/png, application/json", None, None, False) == ResponseSpec(JSON)
    assert response_spec("*/*", None, None, False) == ResponseSpec(CSV)
    with pytest.raises(PayloadError) as error:
        response_spec("image/png", None, None, False)
    assert error_status(error.value) == 406


def test_default_form_gives_one_result_per_record():
    proba = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert encode_results(ResponseSpec(CSV), ["a", "b,c"], ["x", "y"], proba, ["x", "y"]) == b'a,x\n"b,c",y\n'
    assert encode_results(ResponseSpec(CSV, probabilities=True), None, [1, 2], proba, [1, 2]) == b"1,0.9,0.1\n2,0.2,0.8\n"
    lines = encode_results(ResponseSpec(JSON_LINES, probabilities=True), ["a", "b"], ["x", "y"], proba,
                           ["x", "y"]).decode().splitlines()
    assert json.loads(lines[1]) == {"ID": "b", "label": "y", "probabilities": {"x": 0.2, "y": 0.8}}
    assert json.loads(encode_results(ResponseSpec(JSON), None, ["x"], proba[:1], ["x", "y"])) == [{"label": "x"}]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(OUTPUT_KEYS), min_size=1), st.randoms(use_true_random=False))
def test_any_list_of_known_keys_in_any_case_and_spacing_is_read_in_order(keys, random):
    spelt = [("".join(c.upper() if random.random() < 0.5 else c for c in key)).center(len(key) + random.randint(0, 3))
             for key in keys]
    assert output_keys(",".join(spelt), "here") == tuple(dict.fromkeys(keys))


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1).filter(lambda t: "," not in t and t.strip() and t.strip().lower() not in
                                  {k.lower() for k in OUTPUT_KEYS}))
def test_an_unknown_key_is_refused_naming_it_and_where_it_came_from(unknown):
    with pytest.raises(BadOutputSelection) as error:
        output_keys(f"predicted_label,{unknown}", "environment variable SAGEMAKER_INFERENCE_OUTPUT")
    assert repr(unknown.strip()) in str(error.value) and "SAGEMAKER_INFERENCE_OUTPUT" in str(error.value)
    assert error_status(error.value) == 400


def test_an_empty_list_is_refused():
    with pytest.raises(BadOutputSelection, match="no output key"):
        output_keys(" , ", "here")


def test_the_environment_variable_is_read_once_and_checked_at_start():
    assert ServerSettings.from_environment({}).inference_output is None
    assert ServerSettings.from_environment({"SAGEMAKER_INFERENCE_OUTPUT": " "}).inference_output is None
    settings_ = ServerSettings.from_environment({"SAGEMAKER_INFERENCE_OUTPUT": "Predicted_Label, probabilities"})
    assert settings_.inference_output == ("predicted_label", "probabilities")
    with pytest.raises(BadOutputSelection, match="'probabilty'"):
        ServerSettings.from_environment({"SAGEMAKER_INFERENCE_OUTPUT": "predicted_label,probabilty"})


def test_custom_attributes_are_name_value_pairs_and_the_rest_is_left_alone():
    assert custom_attributes(None) == {}
    assert custom_attributes("trace-7f3a; Inference_Output = predicted_label,probability ;x=1") == {
        "inference_output": "predicted_label,probability", "x": "1"}


def test_the_custom_attribute_wins_over_the_environment_and_a_bad_one_is_a_400():
    header = "inference_output=probabilities"
    assert response_spec("application/json", header, ("predicted_label",), False).keys == ("probabilities",)
    assert response_spec("application/json", "other=1", ("predicted_label",), True).keys == ("predicted_label",)
    with pytest.raises(BadOutputSelection) as error:
        response_spec("text/csv", "inference_output=label", None, False)
    assert "X-Amzn-SageMaker-Custom-Attributes" in str(error.value) and "'label'" in str(error.value)
    assert error_status(error.value) == 400


def _csv_rows(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode())))


def test_selected_keys_in_every_format_hold_the_same_values():
    spec_keys = ("ID", "predicted_label", "probability", "probabilities", "labels")
    ids, labels = ["r1", "r2"], ["cat", "fish"]
    as_json = json.loads(encode_results(ResponseSpec(JSON, spec_keys), ids, labels, PROBA, CLASSES))
    as_lines = [json.loads(line) for line in
                encode_results(ResponseSpec(JSON_LINES, spec_keys), ids, labels, PROBA, CLASSES).decode().splitlines()]
    as_csv = _csv_rows(encode_results(ResponseSpec(CSV, spec_keys), ids, labels, PROBA, CLASSES))
    assert set(as_json) == {"predictions"} and as_json["predictions"] == as_lines
    assert as_lines[1] == {"ID": "r2", "predicted_label": "fish", "probability": 0.6,
                           "probabilities": [0.1, 0.3, 0.6], "labels": CLASSES}
    assert [list(record) for record in as_lines] == [list(spec_keys)] * 2, "keys in the order asked"
    assert as_csv[1][:3] == ["r2", "fish", "0.6"]
    assert json.loads(as_csv[1][3]) == [0.1, 0.3, 0.6] and json.loads(as_csv[1][4]) == CLASSES


def test_probability_is_the_second_class_for_two_classes_as_in_sagemakers_algorithms():
    proba = np.array([[0.8, 0.2], [0.3, 0.7]])
    records = json.loads(encode_results(ResponseSpec(JSON, ("predicted_label", "probability")), None, [0, 1], proba,
                                        [np.int64(0), np.int64(1)]))["predictions"]
    assert records == [{"predicted_label": 0, "probability": 0.2}, {"predicted_label": 1, "probability": 0.7}]


def test_the_documented_clarify_settings_pick_the_right_values():
    """README's SageMaker Clarify configuration: CSV indexes and JSON/JSON Lines JMESPaths (Clarify's own
    path language) applied to the answers."""
    import jmespath

    keys = ("predicted_label", "probabilities")
    labels = ["cat", "fish"]
    rows = _csv_rows(encode_results(ResponseSpec(CSV, keys), None, labels, PROBA, CLASSES))
    assert [row[0] for row in rows] == labels                                # "label": 0
    assert [json.loads(row[1]) for row in rows] == PROBA.round(6).tolist()   # "probability": 1
    lines = encode_results(ResponseSpec(JSON_LINES, keys), None, labels, PROBA, CLASSES).decode().splitlines()
    assert [jmespath.search("predicted_label", json.loads(line)) for line in lines] == labels
    assert [jmespath.search("probabilities", json.loads(line)) for line in lines] == PROBA.round(6).tolist()
    document = json.loads(encode_results(ResponseSpec(JSON, keys), None, labels, PROBA, CLASSES))
    assert jmespath.search("predictions[*].predicted_label", document) == labels
    assert jmespath.search("predictions[*].probabilities", document) == PROBA.round(6).tolist()


def test_the_id_key_needs_a_model_with_an_id_column():
    assert response_spec(None, None, ("ID", "predicted_label"), False, has_id=True).keys == ("ID", "predicted_label")
    for header, default in (("inference_output=ID,probability", None), (None, ("ID",))):
        with pytest.raises(BadOutputSelection, match="the model has no ID column"):
            response_spec(None, header, default, False, has_id=False)
