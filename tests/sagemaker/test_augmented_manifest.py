"""RecordIO framing and augmented manifests in Pipe mode: streams framed as SageMaker frames them (dmlc-core's
RecordIO, one record per attribute of each manifest line), read from a real FIFO."""
import base64
import io
import json
import os
import threading

import pytest
from hypothesis import given, settings, strategies as st

from multimodal.classifier import hyperparameters as hp
from multimodal.errors import UserError
from multimodal.sagemaker import recordio
from multimodal.sagemaker.augmented_manifest import (
    AttributeNames, attribute_columns, parse_attribute_names, read_manifest_records,
)
from multimodal.sagemaker.channels import read_channel, validate_input_data_config
from multimodal.sagemaker.csv_input import CsvSource
from multimodal.sagemaker.paths import SageMakerPaths
from synthetic import jpeg_base64

MAGIC = recordio.MAGIC_BYTES


class ShortReads(io.RawIOBase):
    """A stream that returns at most ``step`` bytes per read, as a FIFO may."""

    def __init__(self, data: bytes, step: int):
        self._data, self._step, self._at = data, step, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        count = min(len(buffer), self._step, len(self._data) - self._at)
        buffer[:count] = self._data[self._at:self._at + count]
        self._at += count
        return count


# Payloads with the magic at aligned and unaligned offsets, empty ones, odd lengths (padding).
payload = st.lists(st.sampled_from([MAGIC, b"\x0a", b"\x23\xd7", b"x", b"abcd", b"\0\0\0"]), max_size=12).map(b"".join)


@settings(max_examples=200, deadline=None)
@given(payloads=st.lists(st.one_of(payload, st.binary(max_size=64)), max_size=8), step=st.integers(1, 13))
def test_records_come_back_as_written_whatever_they_hold_and_however_the_stream_is_read(payloads, step):
    framed = b"".join(recordio.frame_records(payloads))
    assert len(framed) % 4 == 0, "every record padded to 4 bytes"
    assert list(recordio.read_records(ShortReads(framed, step), "s")) == payloads


def test_a_payload_holding_the_magic_is_split_as_dmlc_core_splits_it():
    framed = recordio.frame_record(b"abcd" + MAGIC + b"ef")
    first, second = framed[:12], framed[12:]
    assert first[:4] == MAGIC and int.from_bytes(first[4:8], "little") == (recordio.FIRST << 29) | 4
    assert second[:4] == MAGIC and int.from_bytes(second[4:8], "little") == (recordio.LAST << 29) | 2
    assert second[8:] == b"ef\0\0"


def _header(flag: int, length: int) -> bytes:
    return MAGIC + ((flag << 29) | length).to_bytes(4, "little")


@pytest.mark.parametrize("stream, words", [
    (b"NOPE" + bytes(8), "byte 0 is not the start of a RecordIO record"),
    (recordio.frame_record(b"ok") + b"NOPE" + bytes(4), "byte 12 is not the start of a RecordIO record"),
    (recordio.frame_record(b"ok") + b"\x0a\x23", "ends inside a RecordIO header (byte 12)"),
    (recordio.frame_record(b"ok") + _header(0, 9) + b"abc", "ends inside a RecordIO record of 9 bytes (byte 12)"),
    (recordio.frame_record(b"ok") + _header(1, 1) + b"a\0\0\0" + _header(2, 0),
     "ends inside the multi-part RecordIO record that starts at byte 12"),
    (recordio.frame_record(b"ok") + _header(3, 1) + b"a\0\0\0",
     "the RecordIO record at byte 12 has continuation flag 3 out of sequence"),
    (_header(1, 1) + b"a\0\0\0" + _header(1, 0), "the RecordIO record at byte 12 has continuation flag 1 out of"),
    (_header(5, 0), "the RecordIO record at byte 0 has flag 5; RecordIO flags are 0-3"),
])
def test_broken_framing_names_the_stream_and_the_byte(stream, words):
    with pytest.raises(UserError, match="channel 'train'") as error:
        list(recordio.read_records(io.BytesIO(stream), "channel 'train'"))
    assert words in str(error.value)


@pytest.mark.parametrize("names, columns", [
    (["photo_image-ref", "label"], ["photo_image", "label"]),
    (["ID", "review_text", "price_num", "colour_cat", "label"], ["ID", "review_text", "price_num", "colour_cat",
                                                                 "label"]),
    (["source-ref", "dogs-or-cats", "dogs-or-cats-metadata"], ["source_image", "label", None]),
    (["source", "sentiment-job"], ["source_text", "label"]),
    (["notes_text-ref", "label", "label-metadata"], ["notes_text", "label", None]),
])
def test_attributes_become_columns_by_suffix_and_by_ground_truths_names(names, columns):
    assert list(attribute_columns(names).values()) == columns


@pytest.mark.parametrize("names, words", [
    (["photo_image-ref", "label", "colour"], "attribute(s) ['colour'] of the augmented manifest have no column"),
    (["photo_image-ref", "job-a", "job-b"], "['job-a', 'job-b']"),
    (["picture-ref", "label"], "['picture-ref']"),
    (["photo_image-ref", "photo_image", "label"], "give column(s) ['photo_image'] twice"),
    (["source-ref", "source_image", "label"], "give column(s) ['source_image'] twice"),
    (["photo_image-ref", "photo_image-ref-metadata"], "have no label"),
])
def test_attributes_without_a_column_fail_naming_them(names, words):
    with pytest.raises(UserError) as error:
        attribute_columns(names)
    assert words in str(error.value)


@pytest.mark.parametrize("text, names", [
    ('["source-ref", "my-job"]', AttributeNames(shared=("source-ref", "my-job"))),
    ("photo_image-ref, label", AttributeNames(shared=("photo_image-ref", "label"))),
    ('{"train": ["source-ref", "job-a"], "validation": ["source-ref", "job-b"]}',
     AttributeNames(by_channel={"train": ("source-ref", "job-a"), "validation": ("source-ref", "job-b")})),
    ("", AttributeNames()),
])
def test_attribute_names_are_a_json_list_comma_separated_or_by_channel(text, names):
    assert parse_attribute_names(text) == names


@pytest.mark.parametrize("text, words", [
    ('["a", 1]', "JSON list of strings"), ("[a, b", "JSON list of strings"), ("a,,label", "an empty name"),
    ("a,label,a", "lists ['a'] more than once"), ('{"train": "a,label"}', "JSON list of strings"),
    ("[" * 100_000, "JSON list of strings"),
])
def test_bad_attribute_names_fail_saying_why(text, words):
    with pytest.raises(UserError, match="hyperparameter 'attribute_names'") as error:
        parse_attribute_names(text)
    assert words in str(error.value)


def test_free_text_hyperparameters_take_json_encoded_strings_and_bound_the_length():
    declaration = hp.Hyperparameter("attribute_names", "FreeText", "", "")
    assert declaration.parse('"source-ref,label"') == "source-ref,label", "SDK framework estimators encode strings"
    assert declaration.parse('["source-ref", "label"]') == '["source-ref", "label"]'
    assert declaration.parse(None) == ""
    with pytest.raises(UserError, match="text of at most 2500 characters"):
        declaration.parse("x" * 2501)


def _manifest(lines: list[dict], names: list[str], objects: dict[str, bytes]) -> list[bytes]:
    """The records SageMaker streams for a manifest: each listed attribute of each line, a ``-ref`` one as the
    bytes of the object it names, another as its JSON value."""
    records = []
    for line in lines:
        for name in names:
            value = line[name]
            records.append(objects[value] if name.endswith("-ref") else json.dumps(value).encode())
    return records


def test_json_strings_and_null_are_unwrapped_and_any_other_value_kept_as_streamed():
    records = [b"plain words", b"1", b'"quoted words"', b'"1"', b"null", b"2", b'{"a": 1}', b"true", b"1e3", b"1.50",
               b"[" * 5000, b"x"]
    frame = read_manifest_records(iter(records), ("review_text", "label"), CsvSource("pipe", "m")).frame
    assert frame["review_text"].tolist() == ["plain words", "quoted words", "", '{"a": 1}', "1e3", "[" * 5000]
    assert frame["label"].tolist() == ["1", "1", "2", "true", "1.50", "x"]


def test_ref_objects_are_images_in_base64_or_text_and_an_empty_image_is_missing():
    image = base64.b64decode(jpeg_base64((9, 9, 9)))
    records = [image, "notes, in UTF-8: été".encode(), b"a", b"", b"", b"b"]
    frame = read_manifest_records(iter(records), ("photo_image-ref", "notes_text-ref", "label"),
                                  CsvSource("pipe", "m")).frame
    assert frame["photo_image"].tolist() == [base64.b64encode(image).decode(), ""]
    assert frame["notes_text"].tolist() == ["notes, in UTF-8: été", ""]


@pytest.mark.parametrize("records, words", [
    ([b"a", b"1", b"b"], "ends after 1 of the 2 attributes ['review_text', 'label'] of line 2"),
    ([b"a", b'{"class": 1}'], "line 1, attribute 'label': the label is a JSON dict"),
    ([b"\xff\xfe", b"1"], "line 1, attribute 'review_text': not UTF-8 text near byte 0"),
    ([], "holds no line"),
])
def test_manifest_errors_name_the_line_and_the_attribute(records, words):
    with pytest.raises(UserError, match="m") as error:
        read_manifest_records(iter(records), ("review_text", "label"), CsvSource("pipe", "m"))
    assert words in str(error.value)


def test_a_numeric_attribute_that_is_not_a_number_names_the_manifest_line():
    records = [b"1.5", b"a", b'"n/a"', b"b", b'"heavy"', b"a"]
    with pytest.raises(UserError, match=r"m line 3, column 'weight_num': 'heavy' is not a number"):
        read_manifest_records(iter(records), ("weight_num", "label"), CsvSource("pipe", "m"))


def _feed(paths: SageMakerPaths, data: bytes, name: str = "train") -> threading.Thread:
    pipe = paths.channel_pipe(name)
    pipe.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(pipe)

    def feed():
        with open(pipe, "wb") as handle:
            handle.write(data)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    return thread


PIPE_RECORDIO = {"TrainingInputMode": "Pipe", "RecordWrapperType": "RecordIO", "ContentType": "application/x-recordio"}


def test_a_ground_truth_manifest_streams_into_a_table_of_images_and_labels(tmp_path):
    images = {f"s3://bucket/img/{i}.jpg": base64.b64decode(jpeg_base64((40 * i, 90, 200 - 30 * i))) for i in range(4)}
    lines = [{"source-ref": f"s3://bucket/img/{i}.jpg", "pets": i % 2, "pets-metadata": {"class-name": "cat"},
              "ignored": "not listed"} for i in range(4)]
    names = ["source-ref", "pets", "pets-metadata"]
    paths = SageMakerPaths(tmp_path)
    _feed(paths, b"".join(recordio.frame_records(_manifest(lines, names, images))))
    settings = validate_input_data_config({"train": PIPE_RECORDIO},
                                          attribute_names=AttributeNames(shared=tuple(names)))["train"]
    frame = read_channel(paths, "train", settings).frame
    assert list(frame.columns) == ["source_image", "label"]
    assert [base64.b64decode(c) for c in frame["source_image"]] == list(images.values())
    assert frame["label"].tolist() == ["0", "1", "0", "1"]


def test_records_larger_than_every_buffer_and_holding_the_magic_come_through_a_fifo_whole(tmp_path):
    jpeg = base64.b64decode(jpeg_base64((200, 10, 10)))
    rng = __import__("random").Random(3)
    big = jpeg + b"\0" * (-len(jpeg) % 4) + MAGIC * 3 + bytes(rng.getrandbits(8) for _ in range(3 << 20)) + MAGIC
    paths = SageMakerPaths(tmp_path)
    _feed(paths, b"".join(recordio.frame_records([big, b'"big"', jpeg, b'"small"'])))
    settings = {**PIPE_RECORDIO, "AttributeNames": ["photo_image-ref", "label"]}
    frame = read_channel(paths, "train", settings).frame
    assert [base64.b64decode(c) for c in frame["photo_image"]] == [big, jpeg]
    assert frame["label"].tolist() == ["big", "small"]


def test_an_image_attribute_that_is_an_s3_uri_says_to_stream_the_object(tmp_path):
    paths = SageMakerPaths(tmp_path)
    _feed(paths, b"".join(recordio.frame_records([b'"s3://bucket/a.jpg"', b"1"])))
    with pytest.raises(UserError, match=r"augmented manifest, Pipe mode\), data row 1, column 'photo_image': "
                                        r"'s3://bucket/a.jpg' is an image path, but an augmented manifest streams no "
                                        r"image file: list the attribute with the suffix '-ref'"):
        read_channel(paths, "train", {**PIPE_RECORDIO, "AttributeNames": ["photo_image", "label"]})


def test_recordio_records_of_an_s3_prefix_are_each_one_csv_object(tmp_path):
    paths = SageMakerPaths(tmp_path)
    objects = [b"ID,x_num,label\n1,1.5,a\n", b"ID,x_num,label\n2,2,b\n3,x,b\n"]
    _feed(paths, b"".join(recordio.frame_records(objects)))
    with pytest.raises(UserError, match=r"Pipe mode stream\), RecordIO record 2 line 3 \(ID='3'\), column 'x_num': 'x'"):
        read_channel(paths, "train", PIPE_RECORDIO)


def test_recordio_objects_read_as_csv_tables_markers_and_image_files_skipped(tmp_path, caplog):
    import gzip

    paths = SageMakerPaths(tmp_path)
    image = base64.b64decode(jpeg_base64((1, 2, 3)))
    objects = [b"", b"ID,x_num,label\n1,1.5,a\n", image, gzip.compress(b"ID,x_num,label\n2,2,b\n"), b""]
    _feed(paths, b"".join(recordio.frame_records(objects)))
    with caplog.at_level("INFO"):
        assert read_channel(paths, "train", PIPE_RECORDIO).frame["ID"].tolist() == ["1", "2"]
    assert "3 RecordIO record(s) skipped (empty objects or image files)" in caplog.text


def test_a_manifest_stream_without_attribute_names_says_to_set_them(tmp_path):
    paths = SageMakerPaths(tmp_path)
    image = base64.b64decode(jpeg_base64((1, 2, 3)))
    _feed(paths, b"".join(recordio.frame_records([image, b"1"])))
    with pytest.raises(UserError, match="RecordIO record 1 is an image, not a CSV file: for an augmented manifest, "
                                        "set hyperparameter attribute_names"):
        read_channel(paths, "train", PIPE_RECORDIO)


def test_a_text_manifest_without_attribute_names_says_to_set_them(tmp_path):
    paths = SageMakerPaths(tmp_path)
    _feed(paths, b"".join(recordio.frame_records([b"a fine film", b"1"])))
    with pytest.raises(UserError, match="RecordIO record 1: its first line 'a fine film' names no 'label' column, so "
                                        "it is not a training CSV file with a header: for an augmented manifest"):
        read_channel(paths, "train", PIPE_RECORDIO)


@pytest.mark.parametrize("data, words", [
    (b"x_num,label\n1,a\n", "the stream is not RecordIO-framed; set the channel's RecordWrapperType"),
    (b"", "the stream is empty"),
])
def test_attribute_names_on_a_stream_that_is_not_recordio_say_what_it_is(tmp_path, data, words):
    paths = SageMakerPaths(tmp_path)
    _feed(paths, data)
    with pytest.raises(UserError, match=words):
        read_channel(paths, "train", {**PIPE_RECORDIO, "AttributeNames": ["x_num", "label"]})


def test_attribute_names_go_to_pipe_recordio_channels_only_and_the_channels_own_win(tmp_path, caplog):
    shared = AttributeNames(shared=("photo_image-ref", "label"))
    pipe_csv = {"TrainingInputMode": "Pipe"}
    checked = validate_input_data_config({"train": PIPE_RECORDIO, "validation": pipe_csv}, attribute_names=shared)
    assert checked["train"]["AttributeNames"] == ["photo_image-ref", "label"]
    assert "AttributeNames" not in checked["validation"], "a Pipe-mode CSV channel beside a manifest stays CSV"
    config = {"train": {**PIPE_RECORDIO, "AttributeNames": ["source-ref", "job"]}, "validation": {}}
    with caplog.at_level("WARNING"):
        checked = validate_input_data_config(config, attribute_names=shared)
    assert checked["train"]["AttributeNames"] == ["source-ref", "job"]
    assert "AttributeNames ['source-ref', 'job'] in inputdataconfig.json" in caplog.text
    assert "AttributeNames" not in checked["validation"], "File mode reads CSV files"
    caplog.clear()
    with caplog.at_level("WARNING"):
        validate_input_data_config({"train": {}}, attribute_names=shared)
    assert "attribute_names ['photo_image-ref', 'label'] is not used: no channel is in Pipe mode" in caplog.text


def test_each_channel_may_have_its_own_attribute_names():
    names = AttributeNames(by_channel={"train": ("source-ref", "job-a"), "validation": ("source-ref", "job-b")})
    checked = validate_input_data_config({"train": PIPE_RECORDIO, "validation": PIPE_RECORDIO}, attribute_names=names)
    assert [checked[c]["AttributeNames"] for c in ("train", "validation")] == [["source-ref", "job-a"],
                                                                              ["source-ref", "job-b"]]


@pytest.mark.parametrize("config, names, words", [
    ({"train": PIPE_RECORDIO}, AttributeNames(by_channel={"test": ("a",)}), "names channel(s) ['test'] that this job"),
    ({"train": {"TrainingInputMode": "Pipe"}}, AttributeNames(by_channel={"train": ("x_num", "label")}),
     "lists attributes for channel 'train', which is not in Pipe mode with RecordWrapperType RecordIO"),
    ({"train": {**PIPE_RECORDIO, "AttributeNames": "source-ref"}}, AttributeNames(),
     "channel 'train': AttributeNames must be a list of names"),
    ({"train": {**PIPE_RECORDIO, "AttributeNames": ["source-ref", 3]}}, AttributeNames(), "must be a list of names"),
    ({"train": PIPE_RECORDIO}, AttributeNames(shared=("photo_image-ref", "colour", "label")),
     "channel 'train': attribute(s) ['colour'] of the augmented manifest have no column"),
])
def test_attribute_names_are_checked_before_anything_is_read(config, names, words):
    with pytest.raises(UserError) as error:
        validate_input_data_config(config, attribute_names=names)
    assert words in str(error.value)


def test_a_misspelt_job_hyperparameter_lists_the_jobs_own_names_among_the_valid_ones(tmp_path):
    from multimodal.sagemaker.training_job import read_hyperparameters

    paths = SageMakerPaths(tmp_path)
    paths.hyperparameters_file.parent.mkdir(parents=True)
    paths.hyperparameters_file.write_text(json.dumps({"attribute_name": "source-ref,label"}))
    with pytest.raises(UserError, match=r"unknown hyperparameter\(s\) \['attribute_name'\]; valid names: "
                                        r"\[.*'attribute_names'"):
        read_hyperparameters(paths)
