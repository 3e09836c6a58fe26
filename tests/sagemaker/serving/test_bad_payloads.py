"""Malformed requests against the real ``serve`` (gunicorn worker, the session's model): every reply is a
4xx naming the line (and column where there is one) or a documented 200, never a 5xx; a good request
right after each one succeeds, and the worker never restarts. A property-based test does the same for
generated CSV payloads through the app."""
from __future__ import annotations

import base64
import io
import json
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from multimodal.tooling.transform import LocalServer
from synthetic import image_base64, jpeg_base64

GOOD = "r1,a cat,purr meow,1.5,3,red,{image}\n"
HEADER = "ID,title_text,body_text,weight_num,age_num,color_cat,photo_image"
CSV, JSONL, JSON = "text/csv", "application/jsonlines", "application/json"


def png_header_only(width: int, height: int) -> str:
    """A PNG that declares width x height pixels in a few hundred bytes (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    raw += chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")
    return base64.b64encode(raw).decode()


def row(image: str = "", **cells) -> str:
    values = {"ID": "r1", "title_text": "a cat", "body_text": "purr", "weight_num": "1.5", "age_num": "3",
              "color_cat": "red", "photo_image": image, **cells}
    return ",".join(values[c] for c in HEADER.split(",")) + "\n"


def jsonl(*objects) -> bytes:
    return "".join(json.dumps(o) + "\n" for o in objects).encode()


JPEG = jpeg_base64((200, 40, 40))
truncated_jpeg = base64.b64encode(base64.b64decode(JPEG)[: len(base64.b64decode(JPEG)) // 2]).decode()
gray16 = Image.fromarray((np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16))
frames_gif = Image.new("P", (40, 40), 3)
cmyk = Image.new("CMYK", (40, 40), (0, 255, 255, 0))


def _frames(kind: str, count: int, mode: str = "P") -> str:
    frames = [Image.new(mode, (64, 64), i % 200) for i in range(count)]
    buffer = io.BytesIO()
    frames[0].save(buffer, kind, save_all=True, append_images=frames[1:])
    return base64.b64encode(buffer.getvalue()).decode()


many_frames_gif = _frames("GIF", 300)
multi_page_tiff = _frames("TIFF", 20, "L")

# (name, body, content type, extra headers, expected status, words the reply must contain)
CASES = [
    ("too few fields", b"a,b\n", CSV, {}, 400, "line 1: 2 fields, expected 7"),
    ("too many fields", (row()[:-1] + ",extra\n").encode(), CSV, {}, 400, "line 1: 8 fields"),
    ("wrong count on line 3", (row() * 2 + "x,y\n").encode(), CSV, {}, 400, "line 3: 2 fields"),
    ("empty body", b"", CSV, {}, 400, "the payload is empty"),
    ("only a newline", b"\n", CSV, {}, 400, "the payload is empty"),
    ("only CRLF newlines", b"\r\n\r\n", CSV, {}, 400, "the payload is empty"),
    ("training header only", (HEADER + ",label\n").encode(), CSV, {}, 400, "no records"),
    ("inference header only", (HEADER + "\n").encode(), CSV, {}, 400, "no records"),
    ("non-UTF-8 byte on line 2", row().encode() + "r2,caf\xe9,x,1,2,red,\n".encode("latin-1"), CSV, {}, 400,
     "line 2: the payload is not UTF-8"),
    ("quote left open", (row() + 'r2,"open quote,x,1,2,red,\n').encode(), CSV, {}, 400, "malformed CSV"),
    ("1e309", row(weight_num="1e309").encode(), CSV, {}, 400, "line 1, column 'weight_num': '1e309' is not a finite"),
    ("inf", row(weight_num="inf").encode(), CSV, {}, 400, "column 'weight_num': 'inf' is not a finite number"),
    ("-Infinity", row(age_num="-Infinity").encode(), CSV, {}, 400,
     "line 1, column 'age_num': '-Infinity' is not a finite number"),
    ("decimal comma", row(weight_num='"1,5"').encode(), CSV, {}, 400, "column 'weight_num': '1,5' is not a number"),
    ("thousands space", row(weight_num="1 000").encode(), CSV, {}, 400, "column 'weight_num': '1 000' is not a number"),
    ("hex number", row(age_num="0x10").encode(), CSV, {}, 400, "column 'age_num': '0x10'"),
    ("nan is a missing number", row(weight_num="nan").encode(), CSV, {}, 200, ""),
    ("NUL byte in a text cell is text", row(title_text="a\x00b").encode(), CSV, {}, 200, ""),
    ("a blank line between records", (row() + "\n" + row()).encode(), CSV, {}, 400, "line 2: empty line"),
    ("10000 columns", (",".join(["x"] * 10000) + "\n").encode(), CSV, {}, 400, "line 1: 10000 fields, expected 7"),
    ("only commas: every value missing", b",,,,,,\n", CSV, {}, 400, "line 1: every feature is missing"),
    ("an ID and nothing else", b"r9,,,,,,\n", CSV, {}, 400, "line 1: every feature is missing"),
    ("numeric missing tokens only", b",,,nan,NA,,\n", CSV, {}, 400, "every feature is missing"),
    ("an undecodable image and nothing else", (row() + "r2,,,,,,%%%not base64%%%\n").encode(), CSV, {}, 400,
     "line 2: every feature is missing or undecodable"),
    ("JSON: a bomb header as the only feature", json.dumps([{"title_text": "x"}, {"photo_image": png_header_only(
        1, 1_000_000)}]).encode(), JSON, {}, 400, "record 2: every feature is missing or undecodable"),
    ("4 MB text cell", row(body_text="word " * 800_000).encode(), CSV, {}, 200, ""),
    ("10 MB text cell", row(body_text="word " * 2_000_000).encode(), CSV, {}, 413, "MaxPayloadInMB"),
    ("payload over MaxPayloadInMB", (row(JPEG) * 20_000).encode(), CSV, {}, 413, "MaxPayloadInMB (6 MB)"),
    ("bad base64 image", row("%%%not base64%%%").encode(), CSV, {}, 200, ""),
    ("an image path on line 2", (row() + row("images/0001.jpg")).encode(), CSV, {}, 400,
     "line 2, column 'photo_image': 'images/0001.jpg' is an image path; an endpoint has no channel"),
    ("JSON Lines: an S3 URI as the image", jsonl({"photo_image": "s3://bucket/a.png"}), JSONL, {}, 400,
     "line 1, column 'photo_image': 's3://bucket/a.png' is an image path"),
    ("base64 of text", row(base64.b64encode(b"just some text").decode()).encode(), CSV, {}, 200, ""),
    ("truncated JPEG", row(truncated_jpeg).encode(), CSV, {}, 200, ""),
    ("20000x20000 PNG (bomb)", row(png_header_only(20000, 20000)).encode(), CSV, {}, 200, ""),
    ("1x1000000 PNG header in a few hundred bytes", row(png_header_only(1, 1_000_000)).encode(), CSV, {}, 200, ""),
    ("1000000x1 PNG header", row(png_header_only(1_000_000, 1)).encode(), CSV, {}, 200, ""),
    ("a real 1x60000 PNG strip (a few KB)", row(image_base64(Image.new("L", (1, 60_000), 200), "PNG")).encode(), CSV,
     {}, 200, ""),
    ("a real 60000x2 PNG strip", row(image_base64(Image.new("RGB", (60_000, 2), (1, 2, 3)), "PNG")).encode(), CSV,
     {}, 200, ""),
    ("0-pixel-wide PNG header", row(png_header_only(0, 10)).encode(), CSV, {}, 200, ""),
    ("animated GIF of 300 frames", row(many_frames_gif).encode(), CSV, {}, 200, ""),
    ("multi-page TIFF", row(multi_page_tiff).encode(), CSV, {}, 200, ""),
    ("GIF", row(image_base64(frames_gif, "GIF")).encode(), CSV, {}, 200, ""),
    ("WEBP", row(image_base64(Image.new("RGB", (40, 40), (9, 99, 199)), "WEBP")).encode(), CSV, {}, 200, ""),
    ("CMYK JPEG", row(image_base64(cmyk, "JPEG")).encode(), CSV, {}, 200, ""),
    ("16-bit PNG", row(image_base64(gray16, "PNG")).encode(), CSV, {}, 200, ""),
    ("data-URI prefix (quoted: it holds a comma)", row('"data:image/jpeg;base64,' + JPEG + '"').encode(), CSV, {},
     200, ""),
    ("JSON Lines: missing keys are missing values", jsonl({"ID": "r1", "title_text": "cat"}), JSONL, {}, 200, ""),
    ("JSON Lines: a label key is ignored", jsonl({"ID": "r1", "title_text": "a", "label": "cat"}), JSONL, {}, 200, ""),
    ("JSON Lines: a misspelt key", jsonl({"ID": "r1", "title_txt": "cat"}), JSONL, {}, 400,
     "line 1: unknown key(s) 'title_txt'"),
    ("JSON Lines: an unknown key beside known ones", jsonl({"title_text": "cat", "zzz": 1}), JSONL, {}, 400,
     "unknown key(s) 'zzz'"),
    ("JSON Lines: {}", b"{}\n", JSONL, {}, 400, "line 1: no feature column in the record"),
    ("JSON Lines: only the ID", jsonl({"ID": "r1"}), JSONL, {}, 400, "no feature column in the record (keys: 'ID')"),
    ("JSON Lines: every feature null", jsonl({"ID": "r1", "title_text": None, "age_num": None}), JSONL, {}, 400,
     "line 1: every feature is missing"),
    ("JSON: the instances wrapper", json.dumps({"instances": [{"title_text": "cat"}, {"age_num": 3}]}).encode(),
     JSON, {}, 200, ""),
    ("JSON: instances as lists of values", json.dumps({"instances": [["r1", "a", "b", 1, 2, "red", ""]]}).encode(),
     JSON, {}, 200, ""),
    ("JSON: {}", b"{}", JSON, {}, 400, "record 1: no feature column"),
    ("JSON: a misspelt key in record 2", json.dumps([{"age_num": 1}, {"agenum": 2}]).encode(), JSON, {}, 400,
     "record 2: unknown key(s) 'agenum'"),
    ("JSON Lines: number where text is expected", jsonl({"ID": 7, "title_text": 3.5}), JSONL, {}, 200, ""),
    ("JSON Lines: category as a number and as text", jsonl({"color_cat": 12.0}, {"color_cat": "12"}), JSONL, {}, 200,
     ""),
    ("JSON Lines: text where a number is expected", jsonl({"weight_num": "heavy"}), JSONL, {}, 400,
     "line 1, column 'weight_num': 'heavy'"),
    ("JSON Lines: nested object", jsonl({"ID": "r1", "age_num": 1}, {"title_text": {"a": 1}}), JSONL, {}, 400,
     "line 2, key 'title_text': a dict is not a cell value"),
    ("JSON Lines: list value", jsonl({"age_num": [1, 2]}), JSONL, {}, 400, "key 'age_num': a list"),
    ("JSON Lines: an array of the wrong length", b"[1, 2, 3]\n", JSONL, {}, 400, "line 1: a list of 3 values, expected 7"),
    ("JSON Lines: a string, not an object", b'"r1"\n', JSONL, {}, 400, "line 1: expected a JSON object"),
    ("JSON Lines: invalid JSON on line 2", b'{"ID": "r1"}\n{"ID": \n', JSONL, {}, 400, "line 2: not valid JSON"),
    ("JSON Lines: NaN literal", b'{"weight_num": NaN}\n', JSONL, {}, 400, "not a finite number"),
    ("JSON Lines: nested 100000 deep", b"[" * 100_000 + b"\n", JSONL, {}, 400, "line 1: JSON nested too deeply"),
    ("JSON: a bare string", b'"hello"', JSON, {}, 400, "expected a JSON list of objects"),
    ("JSON: list of numbers", b"[1, 2]", JSON, {}, 400, "expected a JSON object"),
    ("JSON: nested 100000 deep", b"[" * 100_000, JSON, {}, 400, "nested too deeply"),
    ("content type not accepted", row().encode(), "application/x-parquet", {}, 415, "not supported"),
    ("Accept not offered", row().encode(), CSV, {"Accept": "image/png"}, 406, "cannot answer"),
    ("content type with charset", row().encode(), "text/csv; charset=utf-8", {}, 200, ""),
    ("garbled content type defaults to CSV", row().encode(), ";;;", {}, 200, ""),
]


@pytest.fixture(scope="module")
def server(saved_model_dir):
    with LocalServer(saved_model_dir, {"MULTIMODAL_IMAGE_WEIGHTS": "random"}) as running:
        running.wait_ready(timeout=180)
        yield running


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("name, body, content_type, headers, status, words", CASES, ids=[c[0] for c in CASES])
def test_malformed_request(server, name, body, content_type, headers, status, words):
    answer_status, answer = server.invoke(body, content_type, headers.get("Accept", CSV))
    text = answer.decode(errors="replace")
    assert answer_status == status, text[:500]
    assert words in text, text[:500]
    if status == 200 and content_type != JSON:
        assert len(text.splitlines()) == max(1, body.count(b"\n") - body.count(b"\n\n")), text[:500]
    elif status == 200:
        data = json.loads(body)
        assert len(text.splitlines()) == len(data["instances"] if isinstance(data, dict) else data), text[:500]
    good_status, good = server.invoke(row(JPEG).encode(), CSV, CSV)
    assert good_status == 200 and len(good.decode().splitlines()) == 1


def test_the_worker_never_restarted(server):
    assert server.log_tail(10**7).count("Booting worker") == 1, server.log_tail()
    assert "Traceback" not in server.log_tail(10**7)


CELL = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "nan", "1e309", "-0", "3.5", "1,5", '"', '""', "\n", "\r\n", "\x00", JPEG, "%%%"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
LINE = st.lists(CELL, min_size=0, max_size=10)


def to_csv(lines: list[list[str]]) -> bytes:
    import csv

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(lines)
    return buffer.getvalue().encode("utf-8", errors="surrogatepass")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(lines=st.lists(LINE, min_size=0, max_size=6), raw_tail=st.binary(max_size=8))
def test_generated_csv_payloads_get_a_result_per_record_or_a_4xx_naming_a_line(app_client, lines, raw_tail):
    body = to_csv(lines) + raw_tail
    response = app_client.post("/invocations", data=body, content_type=CSV)
    text = response.get_data(as_text=True)
    assert response.status_code in (200, 400, 413), text
    if response.status_code == 200:
        assert len(text.splitlines()) >= 1
    else:
        assert "line" in text or "payload" in text, text
