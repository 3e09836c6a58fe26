import gzip

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multimodal.sagemaker.csv_input import list_data_files, read_csv_table, read_training_csv
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
    assert list_data_files(tmp_path) == [a, b, c]
    table = read_training_csv(list_data_files(tmp_path))
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
    with pytest.raises(UserError, match=r"train.csv line 4 \(ID='2'\), column 'x_num': '1;5' is not a number"):
        read_training_csv([path])


@pytest.mark.parametrize("content, words", [
    ("", "the file is empty"),
    ("ID,x_num,label\n", "header only, no data rows"),
    ("x_num,x_num,label\n1,2,a\n", "duplicate column names ['x_num']"),
    ("x_num,label\n1,a,extra,fields\n", "line 2: 4 field(s), but the header has 2 columns"),
    ("x_num,a_text,label\n1,\"open quote,a\n", "malformed CSV"),
    ("x_num,a_text,label\n1,a,b\n2,short\n", "line 3: 2 field(s), but the header has 3 columns"),
    ("x_num,a_text,label\n1,\"two\nlines\",b\n2,c,d\n3,extra,e,f\n", "line 5: 4 field(s)"),
    ("x_num,a_text,label\n1,a,b\nlabel,x_num,a_text\n2,c,d\n", "line 3: another header in mid-stream"),
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


def test_short_rows_are_an_error_not_padded(tmp_path):
    path = write(tmp_path / "t.csv", "ID,x_num,a_text,label\n1,1,a,x\n2,2\n")
    with pytest.raises(UserError, match=r"t.csv line 3: 2 field\(s\), but the header has 4 columns"):
        read_training_csv([path])


def test_repeated_header_lines_are_dropped_and_blank_lines_skipped(tmp_path):
    path = write(tmp_path / "t.csv", "x_num,label\n1,a\n\nx_num,label\n2,b\n x_num , label \n3,a\n\n")
    table = read_csv_table([path])
    assert table.frame["x_num"].tolist() == ["1", "2", "3"]
    assert table.locate(2) == "t.csv line 7"


def test_labels_are_text_until_one_rule_types_them(tmp_path):
    table = read_csv_table([write(tmp_path / "t.csv", "x_num,label\n1,3\n2,\n3,10\n")]).frame
    assert table["label"].tolist() == ["3", "", "10"]


def test_data_files_any_name_recursively_markers_and_hidden_skipped(tmp_path):
    (tmp_path / "year=2024" / "month=01").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "_temporary").mkdir()
    a = write(tmp_path / "year=2024" / "month=01" / "part-00000", "x_num,label\n1,a\n")
    b = tmp_path / "year=2024" / "part-00001"
    b.write_bytes(gzip.compress(b"x_num,label\n2,b\n"))   # gzip without .gz: told by the magic bytes
    write(tmp_path / "_SUCCESS", "")
    write(tmp_path / "_committed_123", "{}")
    write(tmp_path / ".part-00000.crc", "xx")
    write(tmp_path / ".hidden" / "x.csv", "nope")
    write(tmp_path / "_temporary" / "part-0", "nope")
    write(tmp_path / "empty.csv", "")
    assert list_data_files(tmp_path) == [a, b]   # S3 key order
    table = read_training_csv(list_data_files(tmp_path))
    assert table["x_num"].tolist() == ["1", "2"]


def test_the_log_names_each_file_and_its_rows(tmp_path, caplog):
    a = write(tmp_path / "a.csv", "x_num,label\n1,a\n2,b\n")
    b = write(tmp_path / "b.csv", "x_num,label\n3,a\n")
    with caplog.at_level("INFO"):
        read_training_csv([a, b])
    assert "read a.csv: 2 rows" in caplog.text and "read b.csv: 1 rows" in caplog.text


CELLS = st.one_of(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"),
                          max_size=8),
                  st.sampled_from(["", "label", "a,b", 'say "hi"', "two\nlines", "\r\n", " x_num "]))


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(CELLS, st.integers(-99, 99), st.sampled_from(["a", "b", "007", "7"])), min_size=1,
                     max_size=25),
       cuts=st.lists(st.integers(0, 25), max_size=4), gzipped=st.lists(st.booleans(), min_size=5, max_size=5),
       crlf=st.booleans())
def test_a_table_split_at_random_reads_the_same_as_files_or_as_one_stream(tmp_path_factory, rows, cuts, gzipped,
                                                                          crlf):
    """Split a table at random row boundaries into parts, each with the header: read as several files (some
    gzip, no extension) or as one concatenated stream (Pipe mode), it is the same table as the whole file,
    and every row's line is the line it starts on in its own file."""
    import csv
    import io

    import pandas as pd

    header = ["c_text", "x_num", "label"]

    def encode(part):
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n" if crlf else "\n")
        writer.writerow(header)
        writer.writerows(part)
        return buffer.getvalue().encode()

    bounds = sorted({0, len(rows), *[c % (len(rows) + 1) for c in cuts]})
    parts = [rows[a:b] for a, b in zip(bounds, bounds[1:])]
    directory = tmp_path_factory.mktemp("parts")
    whole = read_csv_table([write(directory / "whole.csv", encode(rows))])
    files = []
    for i, part in enumerate(parts):
        data = encode(part)
        files.append(write(directory / f"part-{i:05d}", gzip.compress(data) if gzipped[i % 5] else data))
    split = read_csv_table(files)
    stream = read_csv_table([write(directory / "stream", b"".join(
        gzip.compress(encode(p)) if gzipped[0] else encode(p) for p in parts))])
    expected = pd.DataFrame([[c, str(n), label] for c, n, label in rows], columns=header)
    for table in (whole, split, stream):
        pd.testing.assert_frame_equal(table.frame.astype(object), expected.astype(object), check_dtype=False)
    # each row's line in its own file: 1 header line plus the lines of the rows before it in that part
    position = 0
    for i, part in enumerate(parts):
        line = 2
        for cells in part:
            assert split.locate(position) == f"part-{i:05d} line {line}"
            line += 1 + sum(str(c).count("\n") for c in cells) - (crlf and 0)
            position += 1
