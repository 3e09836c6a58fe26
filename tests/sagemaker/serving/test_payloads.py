import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multimodal.classifier.features import NUMERIC_MISSING_TOKENS
from multimodal.sagemaker.serving.payloads import CSV, JSON_LINES, PayloadError, parse_payload, request_format
from multimodal.classifier.schema import infer_schema
from multimodal.sagemaker.serving.app import error_status

SCHEMA = infer_schema(["ID", "a_text", "x_num", "c_cat", "label"])


def parse(body: str, content_type="text/csv"):
    return parse_payload(body.encode(), content_type, SCHEMA)


def test_csv_records_in_training_order_with_rfc4180_quoting():
    parsed = parse('1,"hello, world",2.5,red\n2,"say ""hi""\nsecond line",,blue\n')
    assert parsed.frame.columns.tolist() == ["ID", "a_text", "x_num", "c_cat"]
    assert parsed.frame["a_text"].tolist() == ["hello, world", 'say "hi"\nsecond line']
    assert parsed.lines == [1, 2]


@pytest.mark.parametrize("header", ["ID,a_text,x_num,c_cat,label", "ID,a_text,x_num,c_cat"])
def test_a_first_line_equal_to_the_header_is_skipped(header):
    parsed = parse(f"{header}\n1,a,1,r\n2,b,2,s")
    assert parsed.frame["ID"].tolist() == ["1", "2"] and parsed.lines == [2, 3]


@pytest.mark.parametrize("body, status, words", [
    ("1,a,1\n", 400, "line 1: 3 fields, expected 4"),
    ("1,a,1,r\n2,b,2,r,extra\n", 400, "line 2: 5 fields, expected 4"),
    ("1,a,1,r\n\n2,b,2,r\n", 400, "line 2: empty line"),
    ("", 400, "the payload is empty"),
    ("\n", 400, "the payload is empty"),
    ("ID,a_text,x_num,c_cat\n", 400, "no records"),
    ('1,"open,1,r\n', 400, "malformed CSV"),
    ("1,a,abc,r\n", 400, "line 1, column 'x_num': 'abc' is not a number"),
    ("1,a,1e309,r\n", 400, "line 1, column 'x_num': '1e309' is not a finite number"),
    ("1,a,1,5,r\n", 400, "line 1: 5 fields, expected 4"),
])
def test_bad_csv_names_the_line_and_the_problem(body, status, words):
    with pytest.raises(PayloadError) as error:
        parse(body)
    assert error_status(error.value) == status and words in str(error.value)


def test_non_utf8_payload_is_a_400_with_the_line():
    with pytest.raises(PayloadError, match="line 2: the payload is not UTF-8"):
        parse_payload(b"1,a,1,r\n2,caf\xe9,1,r\n", "text/csv", SCHEMA)


def test_json_lines_keyed_by_name_in_any_order_absent_keys_missing_label_key_ignored():
    body = '{"c_cat": "red", "ID": 1, "a_text": "two\\nlines", "x_num": 2}\n{"ID": 2, "label": "x", "x_num": 1}\n'
    parsed = parse(body, "application/jsonlines")
    assert parsed.frame.iloc[0].tolist() == [1, "two\nlines", 2, "red"]
    assert parsed.frame.iloc[1].tolist() == [2, None, 1, None]


@pytest.mark.parametrize("body, words", [
    ('{"ID": 1, "x_num": 1}\n{"ID": 2, "a_text": {"nested": 1}}\n', "line 2, key 'a_text': a dict is not a cell value"),
    ('{"ID": 1, "x_num": 1}\nnot json\n', "line 2: not valid JSON"),
    ('[1, 2]\n', "line 1: a list of 2 values, expected 4"),
    ('"text"\n', "line 1: expected a JSON object"),
    ('{"ID": 1, "x_num": "heavy"}\n', "line 1, column 'x_num': 'heavy' is not a number"),
    ('{"ID": 1, "x_num": 1}\n{"ID": 2, "a_txt": "misspelt"}\n', "line 2: unknown key(s) 'a_txt'"),
    ('{}\n', "line 1: no feature column in the record (keys: none)"),
    ('{"ID": 7}\n', "line 1: no feature column in the record (keys: 'ID')"),
    ('{"ID": 7, "label": "a"}\n', "line 1: no feature column"),
])
def test_bad_json_lines(body, words):
    with pytest.raises(PayloadError) as error:
        parse(body, "application/jsonlines")
    assert words in str(error.value)


def test_json_list_of_objects_the_instances_wrapper_and_lists_of_values():
    parsed = parse(json.dumps([{"ID": 1, "x_num": 1.5}, {"ID": 2, "c_cat": "r"}]), "application/json")
    assert parsed.frame["ID"].tolist() == [1, 2]
    wrapped = parse(json.dumps({"instances": [{"ID": 1, "x_num": 1.5}, [2, "b", 3, "s"]]}), "application/json")
    assert wrapped.frame.values.tolist() == [[1, None, 1.5, None], [2, "b", 3, "s"]]
    with pytest.raises(PayloadError, match=r"record 2: unknown key\(s\) 'xnum'"):
        parse(json.dumps({"instances": [{"x_num": 1}, {"xnum": 1}]}), "application/json")
    with pytest.raises(PayloadError, match="record 1: no feature column"):
        parse(json.dumps({}), "application/json")


def test_instances_with_feature_names_as_sagemaker_clarify_sends_them():
    # Clarify's content_template '{"instances": $records, "feature_names": $feature_names}', record_template
    # '$features': value lists in the dataset's feature order, named once.
    body = {"instances": [["b", 2, "s"], ["a", None, "r"]], "feature_names": ["a_text", "x_num", "c_cat"]}
    parsed = parse(json.dumps(body), "application/json")
    assert parsed.frame.values.tolist() == [[None, "b", 2, "s"], [None, "a", None, "r"]]
    with pytest.raises(PayloadError, match="record 2: a list of 2 values, \"feature_names\" names 3"):
        parse(json.dumps({**body, "instances": [["b", 2, "s"], ["a", 1]]}), "application/json")
    with pytest.raises(PayloadError, match=r"record 1: unknown key\(s\) 'xnum'"):
        parse(json.dumps({**body, "feature_names": ["a_text", "xnum", "c_cat"]}), "application/json")
    for names in ("a_text", ["a_text", "a_text", "c_cat"], [1, 2, 3]):
        with pytest.raises(PayloadError, match="feature_names"):
            parse(json.dumps({**body, "feature_names": names}), "application/json")


KEYS = ["ID", "a_text", "x_num", "c_cat", "label", "a_txt", "xnum", "c_cat ", "A_TEXT", "", "instances"]


@settings(max_examples=300, deadline=None)
@given(records=st.lists(st.dictionaries(st.sampled_from(KEYS), st.one_of(st.none(), st.integers(-5, 5),
                                                                        st.text(max_size=5)), max_size=6),
                        min_size=1, max_size=5),
       kind=st.sampled_from(["application/jsonlines", "application/json"]))
def test_any_key_set_is_parsed_exactly_or_refused_with_a_400(records, kind):
    """Random key sets: a record is accepted only when all its keys are the model's columns (or label) and
    one feature has a value; then every cell is the record's own value; otherwise a 400 naming the record."""
    body = "\n".join(json.dumps(r) for r in records) if kind == "application/jsonlines" else json.dumps(records)
    known, features = set(SCHEMA.inference_columns) | {"label"}, set(SCHEMA.feature_columns)
    acceptable = all(set(r) <= known and set(r) & features and any(_present(r.get(c), c) for c in features)
                     for r in records)
    numbers_ok = all(r.get("x_num") is None or isinstance(r["x_num"], int) or r["x_num"].strip().lower() in
                     NUMERIC_MISSING_TOKENS or _is_number(r["x_num"]) for r in records)
    try:
        parsed = parse(body, kind)
    except PayloadError as error:
        assert error_status(error) == 400 and ("line " in str(error) or "record " in str(error))
        assert not (acceptable and numbers_ok)
        return
    assert acceptable
    assert len(parsed.frame) == len(records)
    for row, record in zip(parsed.frame.to_dict("records"), records):
        assert row == {c: record.get(c) for c in SCHEMA.inference_columns}


def _present(value, column):
    if value is None or (isinstance(value, str) and not value.strip()):
        return False
    return not (column == "x_num" and isinstance(value, str) and value.strip().lower() in NUMERIC_MISSING_TOKENS)


def _is_number(text):
    try:
        return np.isfinite(float(text))
    except ValueError:
        return False


def test_content_type_negotiation():
    assert request_format("text/csv; charset=utf-8") == CSV
    assert request_format(None) == CSV
    assert request_format("application/x-jsonlines") == JSON_LINES
    with pytest.raises(PayloadError) as error:
        request_format("application/x-parquet")
    assert error_status(error.value) == 415


