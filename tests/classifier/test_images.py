import base64

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from multimodal.classifier import images
from multimodal.errors import PlatformError, UserError
from multimodal.sagemaker import environment
from synthetic import image_base64, jpeg_base64


@pytest.fixture(scope="module")
def embedder():
    return images.ImageEmbedder("random", batch_size=4)


def test_jpeg_png_and_data_uri_decode_to_rgb():
    jpeg = jpeg_base64((255, 0, 0))
    png = jpeg_base64((0, 255, 0), fmt="PNG")
    for cell in (jpeg, png, "data:image/jpeg;base64," + jpeg, jpeg[:40] + "\n" + jpeg[40:]):
        image = images.decode_image(cell)
        assert image.mode == "RGB" and image.size == (48, 40)


def test_urlsafe_and_unpadded_base64_decode():
    raw = base64.b64decode(jpeg_base64((1, 2, 3)))
    urlsafe = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert images.decode_image(urlsafe).size == (48, 40)


def test_sixteen_bit_and_alpha_images_convert():
    sixteen = Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)
    rgba = Image.new("RGBA", (30, 30), (255, 0, 0, 128))
    assert images.decode_image(image_base64(sixteen, "PNG")).mode == "RGB"
    assert images.decode_image(image_base64(rgba, "PNG")).getpixel((0, 0)) == (128, 0, 0)


@pytest.mark.parametrize("cell, words", [
    ("not base64 at all!", "not valid base64"),
    (base64.b64encode(b"plain text, not an image").decode(), "not a readable image"),
    (jpeg_base64((9, 9, 9))[:60], "not a readable image"),
])
def test_undecodable_cells_say_why(cell, words):
    with pytest.raises(images.ImageDecodeError, match=words):
        images.decode_image(cell)


def test_pillow_itself_is_bounded_too():
    from PIL import Image as PillowImage

    assert PillowImage.MAX_IMAGE_PIXELS == images.MAX_IMAGE_PIXELS


def test_huge_image_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(images.ImageDecodeError, match="larger than 100 pixels"):
        images.decode_image(jpeg_base64((1, 1, 1)))


def test_preprocess_is_imagenet_shaped():
    array = images.preprocess(images.decode_image(jpeg_base64((255, 255, 255), size=(300, 120))))
    assert array.shape == (3, 224, 224) and array.dtype == np.float32
    np.testing.assert_allclose(array[:, 112, 112], (1 - images.IMAGENET_MEAN) / images.IMAGENET_STD, rtol=1e-5)


def test_embeddings_are_2048_pooled_features_and_missing_rows_share_the_cached_black_square(embedder, caplog):
    calls = []
    forward = embedder._forward
    embedder._forward = lambda batch: calls.append(len(batch)) or forward(batch)
    embedder._blank_embedding = None
    try:
        cells = [jpeg_base64((200, 0, 0)), "", None, "broken!", jpeg_base64((0, 0, 200))] * 2
        features, missing, undecodable = embedder.embed(cells, "p_image")
        calls_first = list(calls)
        again, _, _ = embedder.embed(["", ""], "p_image")
    finally:
        embedder._forward = forward
    assert features.shape == (10, images.EMBEDDING_DIM) and features.dtype == np.float32
    assert missing.tolist() == [False, True, True, True, False] * 2
    assert undecodable == 2 and "row 4, column 'p_image'" in caplog.text
    blank = features[1]
    assert np.array_equal(features[2], blank) and np.array_equal(again[0], blank)
    assert not np.allclose(features[0], blank)
    np.testing.assert_allclose(features[0], features[5], rtol=1e-4, atol=1e-4)
    assert sum(calls_first) == 4 + 1, "four images, then the black square once"
    assert calls == calls_first, "a column of missing images runs no network"


def test_random_weights_are_seeded_and_identified(embedder):
    _, identity = images.build_backbone("random")
    assert identity == embedder.identity and identity.name.startswith("random")


def test_weights_default_to_imagenet_unless_asked(monkeypatch):
    monkeypatch.setenv(environment.IMAGE_WEIGHTS_ENV, "random")   # the classifier reads no environment variable
    assert images.resolve_weights_setting(None) == "imagenet"
    assert images.resolve_weights_setting("/w.pth") == "/w.pth"
    assert environment.image_weights() == "random" and environment.image_weights({}) is None
    assert environment.image_weights({environment.IMAGE_WEIGHTS_ENV: " "}) is None


def test_weights_file_path_loads_and_bad_path_fails(tmp_path, embedder):
    import torch

    path = tmp_path / "resnet50.pth"
    torch.save(images.build_backbone("random")[0].state_dict(), path)
    _, identity = images.build_backbone(str(path))
    assert identity.sha256 == embedder.identity.sha256 and identity.name == "file:resnet50.pth"
    with pytest.raises(PlatformError, match="does not exist"):
        images.build_backbone(str(tmp_path / "absent.pth"))


def test_whole_undecodable_column_is_an_encoding_mistake():
    with pytest.raises(UserError, match="none of its 2 non-empty cells"):
        images.check_not_all_undecodable("p_image", ["x", "", "y"], undecodable=2)
    images.check_not_all_undecodable("p_image", ["x", "", "y"], undecodable=1)
    images.check_not_all_undecodable("p_image", ["", ""], undecodable=0)


def test_imagenet_weights_come_from_the_torch_cache_or_fail_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))   # an empty cache
    try:
        _, identity = images.build_backbone("imagenet")
    except PlatformError as error:                     # offline: the normal case on build machines
        message = str(error)
        assert "resnet50-11ad3fa6.pth" in message and "MULTIMODAL_IMAGE_WEIGHTS=random" in message
        assert str(tmp_path) in message
    else:                                              # a machine with internet downloads the real file
        assert identity.name == "torchvision:IMAGENET1K_V2"


def test_batched_path_matches_the_per_image_reference(embedder):
    import torch

    cells = [jpeg_base64((30 * i, 255 - 20 * i, 7 * i), size=(60 + 9 * i, 50)) for i in range(6)]
    features, _, _ = embedder.embed(cells, "p_image")
    reference = np.stack([images.preprocess(images.decode_image(c)) for c in cells])
    fp32_network, _ = images.build_backbone("random")
    with torch.inference_mode():
        expected = fp32_network(torch.from_numpy(reference)).numpy()
    cosine = (features * expected).sum(1) / np.linalg.norm(features, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() > (0.99 if embedder.precision == "bf16" else 0.9999)


def test_precision_setting(monkeypatch):
    import torch

    cpu = torch.device("cpu")
    monkeypatch.setenv(environment.IMAGE_PRECISION_ENV, "fp32")   # read by the entrypoints, not here
    assert images.resolve_precision("fp32", cpu) == "fp32"
    assert images.resolve_precision(None, cpu) == ("bf16" if images.native_bf16(cpu) else "fp32")
    assert environment.image_precision() == "fp32"
    with pytest.raises(UserError, match="not one of"):
        images.resolve_precision("int8", cpu)
    monkeypatch.setattr(images, "native_bf16", lambda device: False)
    assert images.resolve_precision("bf16", cpu) == "fp32"


def test_equal_images_give_equal_features_whatever_came_before_and_whatever_the_batch():
    embedder = images.ImageEmbedder("random", batch_size=8)
    cells = [jpeg_base64((10 * i, 200 - 10 * i, 90)) for i in range(11)]
    first, _, _ = embedder.embed(cells[:3], "p_image")       # a fresh embedder: first sight of its batch sizes
    later, _, _ = embedder.embed(cells, "p_image")           # batches of 8 and 3
    again, _, _ = embedder.embed(cells[:3], "p_image")
    np.testing.assert_array_equal(first, later[:3])
    np.testing.assert_array_equal(first, again)


MODES = ["1", "L", "P", "RGB", "RGBA", "CMYK", "I", "I;16", "F", "LA", "PA", "YCbCr"]
FORMATS = {"PNG": {"1", "L", "P", "RGB", "RGBA", "I", "I;16", "LA"}, "JPEG": {"L", "RGB", "CMYK"},
           "GIF": {"L", "P"}, "TIFF": {"1", "L", "P", "RGB", "RGBA", "CMYK", "I", "I;16", "F", "LA", "YCbCr"},
           "BMP": {"1", "L", "P", "RGB", "RGBA"}, "WEBP": {"RGB", "RGBA"}, "PPM": {"1", "L", "RGB"}}


def _encode(image_format, mode, width, height, frames, seed):
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    pictures = []
    for _ in range(frames):
        picture = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
        pictures.append(picture.convert(mode) if mode not in ("I;16", "PA") else
                        picture.convert("L").convert(mode))
    buffer = io.BytesIO()
    extra = {"save_all": True, "append_images": pictures[1:]} if frames > 1 else {}
    pictures[0].save(buffer, image_format, **extra)
    return buffer.getvalue()


@settings(max_examples=120, deadline=None)
@given(image_format=st.sampled_from(sorted(FORMATS)), mode=st.sampled_from(MODES),
       width=st.integers(1, 700), height=st.integers(1, 700), frames=st.integers(1, 4), seed=st.integers(0, 9),
       aspect=st.sampled_from([1, 1, 1, 50, 400]), flips=st.lists(st.integers(0, 10**6), max_size=3))
def test_any_image_gives_a_224_crop_or_counts_as_missing(image_format, mode, width, height, frames, seed, aspect,
                                                         flips):
    """Random formats, modes, sizes (extreme aspect ratios too), frame counts and corrupted bytes: the result
    is always a 224x224 RGB crop or an ImageDecodeError, never another exception."""
    assume(mode in FORMATS[image_format])
    if aspect > 1:
        width, height = (width * aspect, max(1, height // aspect)) if seed % 2 else (max(1, width // aspect),
                                                                                     height * aspect)
    try:
        data = bytearray(_encode(image_format, mode, width, height, frames if image_format in ("GIF", "TIFF", "PNG",
                                                                                                 "WEBP") else 1, seed))
    except Exception:  # noqa: BLE001 - Pillow cannot write this combination (the writer is not under test)
        assume(False)
    for position in flips:
        data[position % len(data)] ^= 0x5A
    cell = base64.b64encode(bytes(data)).decode()
    result = images._prepare(cell)
    if isinstance(result, images.ImageDecodeError):
        assert str(result)
    else:
        assert result.shape == (224, 224, 3) and result.dtype == np.uint8


@pytest.mark.parametrize("width, height", [(1, 1_000_000), (1_000_000, 1), (70_000, 10), (100_000, 100_000),
                                           (0, 5), (2**31 - 1, 1)])
def test_declared_sizes_beyond_the_bounds_are_refused_before_decoding(width, height):
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    raw += chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b"")
    result = images._prepare(base64.b64encode(raw).decode())
    assert isinstance(result, images.ImageDecodeError)


def test_the_crop_of_a_long_strip_is_computed_without_resizing_the_whole_strip():
    from PIL import Image

    strip = Image.new("RGB", (1, 60_000), (10, 200, 30))
    crop = images.crop_224(strip)   # resizing the whole strip first would make 256 x 15.4M pixels (11 GB)
    assert crop.shape == (224, 224, 3) and (crop == (10, 200, 30)).all()


def test_formats_outside_the_allow_list_are_not_tried():
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PCX")
    with pytest.raises(images.ImageDecodeError, match="none of the formats"):
        images.decode_image(base64.b64encode(buffer.getvalue()).decode())
