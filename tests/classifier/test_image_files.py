"""Image cells given as paths: the rule that tells a path from base64, reading inside the folder only, and
embedding from files exactly as from base64."""
import base64
import logging
import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multimodal.classifier.image_files import (
    ImageFolder, ImagePathError, is_path_cell, require_folder_for_paths,
)
from multimodal.errors import UserError
from synthetic import jpeg_base64, make_frame, with_image_files


@settings(max_examples=300, deadline=None)
@given(data=st.binary(min_size=1, max_size=600), urlsafe=st.booleans(), strip_padding=st.booleans(),
       uri=st.booleans(), breaks=st.booleans())
def test_no_base64_cell_is_ever_taken_for_a_path(data, urlsafe, strip_padding, uri, breaks):
    text = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(data).decode()
    if strip_padding:
        text = text.rstrip("=")
    if breaks:
        text = "\n".join(text[i:i + 76] for i in range(0, len(text), 76))
    if uri:
        text = "data:image/jpeg;base64," + text
    assert not is_path_cell(text)


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(st.text(st.characters(blacklist_characters="/\\\x00", blacklist_categories=("Cs",)),
                              min_size=1, max_size=20), min_size=1, max_size=4),
       extension=st.sampled_from(["jpg", "jpeg", "png", "JPG", "webp", "tif", "bmp", "gif"]))
def test_a_relative_name_with_an_extension_is_a_path(parts, extension):
    cell = "/".join(parts) + "." + extension
    assert is_path_cell(cell) == (len(cell.strip()) <= 1024 and cell.strip().endswith("." + extension))


def test_empty_missing_and_overlong_cells_are_not_paths():
    for cell in ("", "   ", None, float("nan"), "a" * 1100 + ".jpg", "images/photo"):
        assert not is_path_cell(cell)


@pytest.fixture()
def folder(tmp_path):
    channel = tmp_path / "channel"
    (channel / "images").mkdir(parents=True)
    (channel / "images" / "a.jpg").write_bytes(b"inside")
    (tmp_path / "secret.jpg").write_bytes(b"outside")
    os.symlink(tmp_path / "secret.jpg", channel / "images" / "out.jpg")
    os.symlink(channel / "images" / "a.jpg", channel / "images" / "in.jpg")
    return ImageFolder(channel)


def test_a_path_is_read_inside_the_folder_and_links_inside_are_followed(folder):
    assert folder.read("images/a.jpg") == b"inside"
    assert folder.read(" images/in.jpg ") == b"inside"
    assert folder.read("images\\a.jpg") == b"inside", "Windows separators in a CSV made on Windows"


@pytest.mark.parametrize("cell, words", [
    ("../secret.jpg", "'..'"),
    ("images/../../secret.jpg", "'..'"),
    ("/etc/hosts.txt", "absolute"),
    ("C:/images/a.jpg", "absolute"),
    ("s3://bucket/images/a.jpg", "URI"),
    ("images/out.jpg", "outside"),
    ("images/none.jpg", "no file"),
    ("images.dir", "no file"),
    ("images/a\x00.jpg", "NUL"),
])
def test_paths_that_leave_the_folder_or_name_nothing_are_refused(folder, cell, words):
    with pytest.raises(ImagePathError, match=words):
        folder.read(cell)


def test_a_directory_that_does_not_exist_is_not_a_folder(tmp_path):
    with pytest.raises(UserError, match="not a directory"):
        ImageFolder(tmp_path / "absent")


def test_without_a_folder_a_path_cell_is_an_error_naming_row_and_column():
    frame = pd.DataFrame({"photo_image": ["", jpeg_base64((1, 2, 3)), "images/0002.jpg"]})
    require_folder_for_paths(frame, ["photo_image"], ImageFolder("."), str)   # a folder: nothing to refuse
    with pytest.raises(UserError, match=r"row 3, column 'photo_image': 'images/0002.jpg' is an image path"):
        require_folder_for_paths(frame, ["photo_image"], None, lambda position: f"row {position + 1}")


def test_files_embed_exactly_as_their_base64_and_bad_paths_count_as_missing(tmp_path, caplog):
    from multimodal.classifier.images import ImageEmbedder

    frame = make_frame(12, seed=3, missing=0.0)
    cells = frame["photo_image"].tolist()
    paths = with_image_files(frame, tmp_path)["photo_image"].tolist()
    paths[5] = "../outside.jpg"
    paths[7] = "images/absent.jpg"
    embedder = ImageEmbedder("random", batch_size=4)
    expected, _, _ = embedder.embed(cells, "photo_image")
    with caplog.at_level(logging.WARNING):
        features, missing, undecodable = embedder.embed(paths, "photo_image", folder=ImageFolder(tmp_path))
    good = [i for i in range(12) if i not in (5, 7)]
    np.testing.assert_array_equal(features[good], expected[good])
    assert missing.tolist() == [i in (5, 7) for i in range(12)] and undecodable == 2
    np.testing.assert_array_equal(features[5], embedder.blank_embedding)
    assert "row 6, column 'photo_image': '../outside.jpg' has a '..' part" in caplog.text
    assert "row 8, column 'photo_image': no file 'images/absent.jpg'" in caplog.text


def test_a_model_predicts_from_paths_what_it_predicts_from_base64(fitted, test_frame, tmp_path):
    paths = with_image_files(test_frame, tmp_path)
    assert paths["photo_image"].str.startswith("images/").sum() == test_frame["photo_image"].ne("").sum()
    expected = fitted.predict_proba(test_frame)
    pd.testing.assert_frame_equal(fitted.predict_proba(paths, image_folder=tmp_path), expected)
    with pytest.raises(UserError, match=r"row \d+ \(ID='r\d+'\), column 'photo_image': 'images/\d+\.jpg' is an "
                                        r"image path, and no image folder was given"):
        fitted.predict_proba(paths)
    with pytest.raises(UserError, match=r"lacks feature column\(s\) \['photo_image'\]"):
        fitted.predict_proba(paths.drop(columns=["photo_image"]))   # an absent column is named as before
