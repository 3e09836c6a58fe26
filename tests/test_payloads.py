import json

import numpy as np
import pytest

from multimodal.payloads import (CSV, JSON, JSON_LINES, PayloadError, encode_results, parse_payload, request_format,
                                 response_format)
from multimodal.schema import infer_schema

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
    assert error.value.status == status and words in str(error.value)


def test_non_utf8_payload_is_a_400_with_the_line():
    with pytest.raises(PayloadError, match="line 2: the payload is not UTF-8"):
        parse_payload(b"1,a,1,r\n2,caf\xe9,1,r\n", "text/csv", SCHEMA)


def test_json_lines_keyed_by_name_in_any_order_absent_keys_missing_extra_keys_ignored():
    body = '{"c_cat": "red", "ID": 1, "a_text": "two\\nlines", "x_num": 2}\n{"ID": 2, "label": "x", "other": 1}\n'
    parsed = parse(body, "application/jsonlines")
    assert parsed.frame.iloc[0].tolist() == [1, "two\nlines", 2, "red"]
    assert parsed.frame.iloc[1].tolist() == [2, None, None, None]


@pytest.mark.parametrize("body, words", [
    ('{"ID": 1}\n{"ID": 2, "a_text": {"nested": 1}}\n', "line 2, key 'a_text': a dict is not a cell value"),
    ('{"ID": 1}\nnot json\n', "line 2: not valid JSON"),
    ('[1, 2]\n', "line 1: expected a JSON object"),
    ('{"ID": 1, "x_num": "heavy"}\n', "line 1, column 'x_num': 'heavy' is not a number"),
])
def test_bad_json_lines(body, words):
    with pytest.raises(PayloadError) as error:
        parse(body, "application/jsonlines")
    assert words in str(error.value)


def test_json_list_of_objects():
    parsed = parse(json.dumps([{"ID": 1, "x_num": 1.5}, {"ID": 2}]), "application/json")
    assert parsed.frame["ID"].tolist() == [1, 2]


def test_content_type_and_accept_negotiation():
    assert request_format("text/csv; charset=utf-8") == CSV
    assert request_format(None) == CSV
    assert request_format("application/x-jsonlines") == JSON_LINES
    with pytest.raises(PayloadError) as error:
        request_format("application/x-parquet")
    assert error.value.status == 415
    assert response_format(None, False) == (CSV, False)
    assert response_format("text/csv;probabilities=true", False) == (CSV, True)
    assert response_format("application/jsonlines", True) == (JSON_LINES, True)
    assert response_format("image/png, application/json", False) == (JSON, False)
    assert response_format("*/*", False) == (CSV, False)
    with pytest.raises(PayloadError) as error:
        response_format("image/png", False)
    assert error.value.status == 406


def test_encoding_gives_one_result_per_record():
    proba = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert encode_results(["a", "b,c"], ["x", "y"], None, ["x", "y"], CSV) == b'a,x\n"b,c",y\n'
    assert encode_results(None, [1, 2], proba, [1, 2], CSV) == b"1,0.9,0.1\n2,0.2,0.8\n"
    lines = encode_results(["a", "b"], ["x", "y"], proba, ["x", "y"], JSON_LINES).decode().splitlines()
    assert json.loads(lines[1]) == {"ID": "b", "label": "y", "probabilities": {"x": 0.2, "y": 0.8}}
    assert json.loads(encode_results(None, ["x"], None, ["x"], JSON)) == [{"label": "x"}]
