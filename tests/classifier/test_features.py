import numpy as np
import pandas as pd
import pytest

from multimodal.errors import UserError
from multimodal.classifier.features import MISSING_CATEGORY, category_text, clean_text, split_modalities
from multimodal.classifier.schema import infer_schema


def frame():
    return pd.DataFrame({
        "ID": ["a", "b", "c"],
        "t_text": ["Hello <b>world</b> &amp; more", None, "  "],
        "x_num": ["1.5", "", "nan"],
        "y_num": [1, None, 3],
        "c_cat": ["red", None, 12.0],
        "p_image": ["abc", None, ""],
        "label": [1, 2, 1],
    })


def test_imputation_per_modality():
    data = frame()
    frames = split_modalities(data, infer_schema(data.columns))
    assert frames.text["t_text"].tolist() == ["Hello <b>world</b> &amp; more", "", ""], "text is kept as written"
    assert frames.numeric["x_num"].tolist() == [1.5, 0.0, 0.0]
    assert frames.numeric["y_num"].tolist() == [1.0, 0.0, 3.0]
    assert frames.categorical["c_cat"].tolist() == ["red", MISSING_CATEGORY, "12"]
    assert isinstance(frames.categorical["c_cat"].dtype, pd.CategoricalDtype), "categoricals stay categorical"
    assert frames.images["p_image"].tolist() == ["abc", "", ""]


def test_missing_fractions_feed_the_sentinels():
    data = frame()
    frames = split_modalities(data, infer_schema(data.columns))
    np.testing.assert_allclose(frames.missing_fraction["text"], [0, 1, 1])
    np.testing.assert_allclose(frames.missing_fraction["num"], [0, 1, 0.5])
    np.testing.assert_allclose(frames.missing_fraction["cat"], [0, 1, 0])


def test_the_joint_frame_holds_every_non_image_column_and_weighs_missing_by_column():
    data = frame()
    frames = split_modalities(data, infer_schema(data.columns))
    joint, missing = frames.joint_tabular()
    assert list(joint.columns) == ["t_text", "x_num", "y_num", "c_cat"] and [k for k, _ in frames.tabular()] == \
        ["text", "num", "cat"]
    np.testing.assert_allclose(missing, [0, 1, 2 / 4])   # row c: empty text and a nan number of four columns
    assert isinstance(joint["c_cat"].dtype, pd.CategoricalDtype)
    only_numbers = data[["x_num", "y_num", "p_image", "label"]]
    assert split_modalities(only_numbers, infer_schema(only_numbers.columns)).joint_tabular() is None, \
        "one non-image modality: nothing to join"


@pytest.mark.parametrize("value, problem", [("abc", "is not a number"), ("1,5", "is not a number"),
                                            ("1e309", "is not a finite number"), ("inf", "is not a finite number")])
def test_non_numeric_cell_names_column_row_and_value(value, problem):
    data = pd.DataFrame({"ID": ["a", "b"], "x_num": ["1", value], "label": [0, 1]})
    with pytest.raises(UserError) as error:
        split_modalities(data, infer_schema(data.columns))
    message = str(error.value)
    assert "row 2" in message and "ID='b'" in message and "'x_num'" in message and repr(value) in message
    assert problem in message


def test_absent_feature_column_is_named():
    data = frame()
    schema = infer_schema(data.columns)
    with pytest.raises(UserError, match="t_text"):
        split_modalities(data.drop(columns=["t_text"]), schema)


def test_cell_helpers():
    assert category_text(3.0) == "3" and category_text("3") == "3" and category_text(" ") == MISSING_CATEGORY
    assert clean_text(" a\n\tb  c ") == "a\n\tb  c" and clean_text(float("nan")) == "", \
        "spacing and line breaks are signal (AutoGluon's text features count them): only the ends are stripped"


@pytest.mark.parametrize("values, expected", [
    (["12", "12.0", "+12", 12, 12.0, np.float64(12.0), np.int64(12), "12."], "12"),
    (["12.50", 12.5, "1.25e1"], "12.5"),
    (["007"], "007"),
    (["01234"], "01234"),
    ([" red "], "red"),
    ([True, "True"], "True"),
    ([None, float("nan"), "", "  "], MISSING_CATEGORY),
])
def test_one_category_rule_for_csv_text_json_numbers_and_python_values(values, expected):
    assert {category_text(v) for v in values} == {expected}
