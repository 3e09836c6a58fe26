import gzip

import pytest

from multimodal.csv_input import CsvSource, line_of_record, list_csv_files, read_training_csv
from multimodal.errors import UserError


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_many_files_become_one_table_with_a_fresh_index(tmp_path):
    a = write(tmp_path / "a.csv", "ID,x_num,label\n1,1.5,a\n2,2,b\n")
    b = write(tmp_path / "b.csv", "x_num,ID,label\n3,3,a\n")   # same columns, other order
    c = tmp_path / "c.csv.gz"
    with gzip.open(c, "wt") as handle:
        handle.write("ID,x_num,label\n4,,b\n")
    assert list_csv_files(tmp_path) == [a, b, c]
    table = read_training_csv(list_csv_files(tmp_path))
    assert table.index.tolist() == [0, 1, 2, 3]
    assert table["ID"].tolist() == ["1", "2", "3", "4"]
    assert table["x_num"].tolist() == ["1.5", "2", "3", ""]
    assert table["label"].tolist() == ["a", "b", "a", "b"]


def test_integer_labels_come_back_as_integers(tmp_path):
    table = read_training_csv([write(tmp_path / "t.csv", "x_num,label\n1,3\n2,\n3,10\n")])
    assert table["label"].tolist() == [3, None, 10]


def test_bom_and_crlf_are_handled(tmp_path):
    table = read_training_csv([write(tmp_path / "t.csv", b"\xef\xbb\xbfID,a_text,label\r\n1,hi,x\r\n2,yo,y\r\n")])
    assert list(table.columns) == ["ID", "a_text", "label"] and table["a_text"].tolist() == ["hi", "yo"]


def test_bad_number_names_file_line_and_column_even_after_multiline_text(tmp_path):
    path = write(tmp_path / "train.csv", 'ID,a_text,x_num,label\n1,"two\nlines",1,a\n2,ok,1;5,b\n')
    assert line_of_record(CsvSource.file(path), 1) == 4
    with pytest.raises(UserError, match=r"train.csv line 4 \(ID='2'\), column 'x_num': '1;5' is not a number"):
        read_training_csv([path])


@pytest.mark.parametrize("content, words", [
    ("", "the file is empty"),
    ("ID,x_num,label\n", "header only, no data rows"),
    ("x_num,x_num,label\n1,2,a\n", "duplicate column names ['x_num']"),
    ("x_num,label\n1,a,extra,fields\n", "malformed CSV"),
    ("x_num,a_text,label\n1,\"open quote,a\n", "malformed CSV"),
])
def test_bad_files_fail_with_the_file_name(tmp_path, content, words):
    with pytest.raises(UserError) as error:
        read_training_csv([write(tmp_path / "bad.csv", content)])
    assert "bad.csv" in str(error.value) and words in str(error.value)


def test_non_utf8_is_reported(tmp_path):
    with pytest.raises(UserError, match="bad.csv: not UTF-8"):
        read_training_csv([write(tmp_path / "bad.csv", "a_text,label\ncaf\xe9,x\n", encoding="latin-1")])


def test_files_with_different_columns_fail(tmp_path):
    a = write(tmp_path / "a.csv", "x_num,label\n1,a\n")
    b = write(tmp_path / "b.csv", "y_num,label\n1,a\n")
    with pytest.raises(UserError, match=r"b.csv has different columns than a.csv: extra \['y_num'\], missing \['x_num'\]"):
        read_training_csv([a, b])


def test_no_files_is_an_error():
    with pytest.raises(UserError, match="no training CSV files"):
        read_training_csv([])
