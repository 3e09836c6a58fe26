import logging

import pytest

from multimodal.errors import UserError
from multimodal.classifier.schema import Schema, column_role, infer_schema


def test_columns_split_by_suffix_and_id_is_not_a_feature():
    schema = infer_schema(["ID", "a_text", "b_num", "c_cat", "d_image", "e_image", "label"])
    assert schema.text == ("a_text",)
    assert schema.numeric == ("b_num",)
    assert schema.categorical == ("c_cat",)
    assert schema.image == ("d_image", "e_image")
    assert schema.has_id
    assert "ID" not in schema.feature_columns
    assert schema.inference_columns == ("ID", "a_text", "b_num", "c_cat", "d_image", "e_image")


def test_other_columns_are_ignored_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING):
        schema = infer_schema(["x", "a_num", "notes", "label"])
    assert schema.ignored == ("x", "notes")
    warnings = [r for r in caplog.records if "ignoring" in r.getMessage()]
    assert len(warnings) == 1 and "'x'" in warnings[0].getMessage() and "'notes'" in warnings[0].getMessage()


def test_suffix_alone_is_not_a_feature_name():
    assert column_role("_text") is None
    assert column_role("title_text") == "text"


@pytest.mark.parametrize("columns, words", [
    (["a_num", "b_text"], "no 'label' column"),
    (["label", "ID", "other"], "no feature columns"),
    (["label", "a_num", "a_num"], "duplicate column names ['a_num']"),
])
def test_bad_headers_fail_clearly(columns, words):
    with pytest.raises(UserError, match=words.replace("[", r"\[").replace("]", r"\]")):
        infer_schema(columns)


def test_schema_round_trips_through_dict():
    schema = infer_schema(["ID", "a_text", "b_num", "label"])
    assert Schema.from_dict(schema.to_dict()) == schema
