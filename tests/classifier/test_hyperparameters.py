import inspect
import json

import pytest

from multimodal.classifier import hyperparameters as hp
from multimodal.errors import UserError
from multimodal.classifier.estimator import MultimodalClassifier


def test_defaults_are_typed():
    values = hp.validate({})
    assert values["quality"] == "light" and isinstance(values["n_epochs"], int)
    assert values["n_mins"] == 5.0 and values["stacking"] == "out_of_fold"
    assert hp.time_budget_seconds(values) == 300


def test_strings_and_json_encoded_strings_are_accepted():
    values = hp.validate({"quality": json.dumps("light"), "n_epochs": "7", "n_mins": "\"2.5\"",
                          "missing_threshold": "0.5", "num_folds": 3})
    assert values["quality"] == "light"
    assert values["n_epochs"] == 7 and values["n_mins"] == 2.5
    assert values["missing_threshold"] == 0.5 and values["num_folds"] == 3


@pytest.mark.parametrize("raw, words", [
    ({"qualty": "toy"}, "unknown hyperparameter(s) ['qualty']; valid names"),
    ({"quality": "huge"}, "'quality' must be one of 'toy', 'very_light', 'light', 'default'; got 'huge'"),
    ({"n_epochs": "2.5"}, "'n_epochs' must be an integer from 1 to 1000"),
    ({"n_epochs": "0"}, "'n_epochs' must be an integer from 1 to 1000; got '0'"),
    ({"missing_threshold": "abc"}, "'missing_threshold' must be a number from 0.01 to 1"),
    ({"n_mins": "nan"}, "'n_mins' must be a number"),
    ({"n_mins": "0", "n_hours": "0", "n_secs": "0"}, "time budget"),
])
def test_bad_values_name_the_hyperparameter_and_the_allowed_values(raw, words):
    with pytest.raises(UserError) as error:
        hp.validate(raw)
    assert words in str(error.value)


def test_ignored_names_are_dropped():
    assert "_tuning_objective_metric" not in hp.validate({"_tuning_objective_metric": "x"},
                                                         ignore=("_tuning_objective_metric",))


def test_constructor_keywords_are_the_specification_plus_the_image_runtime_settings():
    parameters = inspect.signature(MultimodalClassifier.__init__).parameters
    names = [p for p in parameters if p != "self"]
    assert names == [h.name for h in hp.load_specification()] + ["image_weights", "image_precision"]
    defaults = hp.defaults()
    for name in defaults:
        assert parameters[name].default == defaults[name]
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY


def test_specification_entries_are_consistent():
    for entry in json.loads(hp.SPEC_PATH.read_text()):
        assert not (entry.get("IsRequired") and "DefaultValue" in entry)
        if entry["Type"] != "FreeText":
            assert list(entry["Range"]) == [entry["Type"] + "ParameterRangeSpecification"]
