"""Images: reading a cell (base64, or a path in an ``image_files.ImageFolder``), ImageNet preprocessing and
ResNet50 pooled-feature embeddings.

Image embedding is this module's (torch is imported elsewhere only to count GPUs and to load it before
TensorFlow; tests/test_architecture.py keeps it so). Rows are embedded in batches and dropped after
each batch (an image named by path is read only when its batch is decoded), so memory does not grow with the
number or the size of the images; the embedding of the black
224x224 square that stands for a missing image is computed once and reused.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
import math
import os
import re
import threading
import time
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from multimodal.classifier.image_files import ImageFolder, ImagePathError, is_path_cell
from multimodal.errors import PlatformError, UserError

logger = logging.getLogger(__name__)

EMBEDDING_DIM = 2048
IMAGE_SIZE = 224
RESIZE_SIZE = 256
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# Every allocation an image can cause is bounded before it is made: the decoded size (pixels, and each side),
# then a fixed 224x224 output whatever the aspect ratio (see crop_224). Larger images are refused, as missing.
MAX_IMAGE_PIXELS = 40_000_000
MAX_IMAGE_SIDE = 65_535  # JPEG's own limit; a PNG or TIFF header may declare up to 2**31
# The formats Pillow is allowed to try: the common photo and bitmap formats. Exotic plugins (PSD layers, FITS,
# SPIDER ...) are not offered an untrusted byte string.
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "MPO", "PPM", "TGA", "ICO", "AVIF")
RANDOM_WEIGHTS_SEED = 0
IMAGENET_WEIGHTS_NAME = "IMAGENET1K_V2"
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS  # Pillow's own bomb check (warning above, error at twice) uses the same bound
_DATA_URI = re.compile(r"^\s*data:[^,]{0,100},")
_WHITESPACE = re.compile(r"\s+")


class ImageDecodeError(ValueError):
    """A cell that is not a decodable image (base64 or a readable path); the message says why."""


def decode_base64(cell: str) -> bytes:
    """Bytes of a base64 cell; accepts a data-URI prefix, line breaks, URL-safe letters, missing padding."""
    if not cell.startswith("data:"):
        try:  # the common case, plain standard base64, without the cleaning passes below
            return base64.b64decode(cell, validate=True)
        except (binascii.Error, ValueError):
            pass
    text = _WHITESPACE.sub("", _DATA_URI.sub("", cell, count=1))
    text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ImageDecodeError(f"not valid base64 ({error})") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = array.max() if array.size and array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array * (255.0 / peak), 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


def _allowed_formats() -> list[str]:
    Image.init()
    return [name for name in IMAGE_FORMATS if name in Image.OPEN]


def image_bytes(cell: str, folder: ImageFolder | None = None) -> bytes:
    """The encoded image a cell holds: the file a path cell names in ``folder`` (``image_files``' rule), else the
    base64 decoded; ``ImageDecodeError`` says why not."""
    if is_path_cell(cell):
        if folder is None:
            raise ImageDecodeError(f"{cell.strip()[:80]!r} is an image path, and there is no image folder to read "
                                   "it from (fit and predict take image_folder=...; an endpoint takes base64)")
        try:
            data = folder.read(cell)
        except ImagePathError as error:
            raise ImageDecodeError(str(error)) from None
        if not data:
            raise ImageDecodeError(f"{cell.strip()!r} is an empty file")
        return data
    data = decode_base64(cell)
    if not data:
        raise ImageDecodeError("empty after base64 decoding")
    return data


def decode_image(cell: str, folder: ImageFolder | None = None) -> Image.Image:
    """Decode one cell (base64, or a path in ``folder``; JPEG, PNG, GIF, BMP, TIFF, WebP and the other
    ``IMAGE_FORMATS``; the first frame of an animation) to an RGB image; every failure is an
    ``ImageDecodeError`` saying why."""
    data = image_bytes(cell, folder)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=_allowed_formats())
            width, height = image.size
            if width < 1 or height < 1:
                raise ImageDecodeError(f"image of {width}x{height} pixels has no pixels")
            if width * height > MAX_IMAGE_PIXELS or max(width, height) > MAX_IMAGE_SIDE:
                raise ImageDecodeError(f"image of {width}x{height} pixels is larger than {MAX_IMAGE_PIXELS} pixels "
                                       f"or {MAX_IMAGE_SIDE} pixels a side")
            if image.format == "JPEG" and min(width, height) >= 2 * RESIZE_SIZE:
                # libjpeg decodes at 1/2, 1/4 or 1/8 scale, never below the 256 px the resize needs: large
                # photos decode several times faster, to nearly the same pixels after the resize.
                scale = min(width, height) / RESIZE_SIZE
                image.draft(image.mode, (math.ceil(width / scale), math.ceil(height / scale)))
            image.load()
            return _to_rgb(image)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError(f"not a readable image (the {len(data)} decoded bytes are none of the formats "
                               f"{', '.join(IMAGE_FORMATS)})") from None
    except MemoryError:
        raise ImageDecodeError("not enough memory to decode this image") from None
    except Exception as error:  # noqa: BLE001 - a broken file can raise anything inside a Pillow plugin
        raise ImageDecodeError(f"not a readable image ({type(error).__name__}: {str(error)[:200]})") from None


def crop_224(image: Image.Image) -> np.ndarray:
    """ImageNet geometry: shorter side to 256 (bilinear), centre crop 224; HWC uint8 RGB.

    Only the 224x224 crop is computed: Pillow resamples the source box that maps onto it, so the output (and
    the memory) is the same whatever the aspect ratio (a 1x100000 strip would otherwise resize to 256x25.6M).
    """
    width, height = image.size
    scale = RESIZE_SIZE / min(width, height)
    size = (max(RESIZE_SIZE, round(width * scale)), max(RESIZE_SIZE, round(height * scale)))
    left = (size[0] - IMAGE_SIZE) // 2
    top = (size[1] - IMAGE_SIZE) // 2
    x_scale, y_scale = width / size[0], height / size[1]
    box = (left * x_scale, top * y_scale, (left + IMAGE_SIZE) * x_scale, (top + IMAGE_SIZE) * y_scale)
    return np.asarray(image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR, box=box, reducing_gap=None),
                      dtype=np.uint8)


def preprocess(image: Image.Image) -> np.ndarray:
    """ImageNet preprocessing: ``crop_224``, scale to [0, 1], normalise; CHW float32.

    The embedder does the scaling and normalisation on whole batches; this is the per-image reference.
    """
    array = crop_224(image).astype(np.float32) / 255.0
    array = (array - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def black_square() -> Image.Image:
    """The stand-in for a missing image: a black 224x224 RGB square."""
    return Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE))


_SHARED_EMBEDDERS: "weakref.WeakValueDictionary[tuple, ImageEmbedder]" = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


def black_square_base64() -> str:
    """The black square as a base64 PNG cell (what a made-up row with an image holds)."""
    buffer = io.BytesIO()
    black_square().save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass(frozen=True)
class WeightsIdentity:
    """Which ResNet50 weights produced the embeddings: a name and the sha256 of the backbone state."""

    name: str
    sha256: str

    def to_dict(self) -> dict:
        """JSON form for the model config."""
        return {"name": self.name, "sha256": self.sha256}


def resolve_weights_setting(value: str | None) -> str:
    """The weights to use: the given value, else ``imagenet``."""
    return str(value) if value else "imagenet"


def _state_sha256(state: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().contiguous().cpu()
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def _imagenet_state():
    from torchvision.models import ResNet50_Weights

    weights = getattr(ResNet50_Weights, IMAGENET_WEIGHTS_NAME)
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as error:  # noqa: BLE001 - any download/cache failure means the same thing here
        raise PlatformError(
            f"ResNet50 ImageNet weights ({weights.url.rsplit('/', 1)[-1]}) are not in the torch cache "
            f"({os.path.join(__import__('torch').hub.get_dir(), 'checkpoints')}) and cannot be downloaded. "
            "Bake them into the image, pass a weights file path, or ask for random weights for tests and "
            "offline demos (image_weights='random'; for train and serve MULTIMODAL_IMAGE_WEIGHTS=random).",
            caused_by=error,
        ) from error


def _file_state(path: Path):
    import torch

    if not path.is_file():
        raise PlatformError(f"image weights file {path} does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001
        raise PlatformError(f"image weights file {path} is not a torch state dict.", caused_by=error) from error
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


def build_backbone(weights: str):
    """ResNet50 without its classifier (2048-d pooled output) and the identity of its weights.

    ``weights``: ``imagenet`` (torchvision's ImageNet weights from the local torch cache),
    ``random`` (seeded random initialisation, for tests and offline demos only) or a file path.
    """
    import torch
    from torchvision.models import resnet50

    if weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            model = resnet50(weights=None)
        name = f"random(seed={RANDOM_WEIGHTS_SEED})"
    else:
        if weights == "imagenet":
            state, name = _imagenet_state(), f"torchvision:{IMAGENET_WEIGHTS_NAME}"
        else:
            path = Path(weights)
            state, name = _file_state(path), f"file:{path.name}"
        model = resnet50(weights=None)
        result = model.load_state_dict(state, strict=False)
        wrong = [k for k in result.missing_keys if not k.startswith("fc.")] + list(result.unexpected_keys)
        if wrong:
            raise PlatformError(f"image weights {weights!r} do not fit ResNet50: keys {wrong[:5]} differ.")
    model.fc = torch.nn.Identity()
    model.eval()
    identity = WeightsIdentity(name=name, sha256=_state_sha256(model.state_dict()))
    return model, identity


PRECISIONS = ("auto", "bf16", "fp32")
DECODE_AHEAD = 2  # batches decoded in a background thread while the network runs on the current one


def native_bf16(device) -> bool:
    """Whether ``device`` computes bfloat16 natively (a CUDA GPU with bf16, or a CPU with AVX512-BF16 or AMX)."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))   # a T4 only emulates bf16
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="ignore")
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags)) and torch.backends.mkldnn.is_available()


def resolve_precision(setting: str | None, device) -> str:
    """``bf16`` or ``fp32``: the setting (default ``auto``) for ``device``.

    ``auto`` takes bf16 where the device computes it natively; bf16 asked for on a device without it
    falls back to fp32 with a warning (features then differ from bf16 ones by well under 1 % in cosine).
    """
    value = (setting or "auto").lower()
    if value not in PRECISIONS:
        raise UserError(f"image precision {value!r} (image_precision, MULTIMODAL_IMAGE_PRECISION) is not one of "
                        f"{', '.join(PRECISIONS)}.")
    if value == "fp32":
        return "fp32"
    if native_bf16(device):
        return "bf16"
    if value == "bf16":
        logger.warning("image embedding: %s has no native bfloat16; using fp32 (slower, same features within "
                       "0.99 cosine)", device)
    return "fp32"


def _prepare(cell: str, folder: ImageFolder | None = None) -> np.ndarray | ImageDecodeError:
    """One non-empty cell as a 224x224 uint8 image, or the decode error."""
    try:
        return crop_224(decode_image(cell, folder))
    except ImageDecodeError as error:
        return error
    except Exception as error:  # noqa: BLE001 - whatever a broken image does, it is one missing image
        return ImageDecodeError(f"not a readable image ({type(error).__name__}: {str(error)[:200]})")


def inference_network(model, device, dtype, compiled: bool = True):
    """The backbone as it runs: batch norms folded into the convolutions, channels-last, weights in ``dtype``;
    on a CPU also traced and frozen for oneDNN graph fusion (``compiled``), which falls back to eager
    execution with a warning if tracing fails."""
    import torch
    from torch.fx.experimental.optimization import fuse

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.fx notes about its own internals
        network = fuse(model)
    network = network.to(device, memory_format=torch.channels_last).to(dtype)
    network.eval()
    if not compiled or device.type != "cpu":
        return network
    example = torch.zeros((1, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=dtype, device=device)
    example = example.contiguous(memory_format=torch.channels_last)
    try:
        torch.jit.enable_onednn_fusion(True)
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.freeze(torch.jit.trace(network, example))
    except Exception as error:  # noqa: BLE001 - any tracing failure leaves the eager network, which is correct
        logger.warning("image embedding: TorchScript tracing failed (%s); running the network eagerly (slower)",
                       error)
        return network


class ImageEmbedder:
    """Embeds base64 image cells into 2048-d ResNet50 features, batch by batch.

    Decoding and resizing of the next batches run in a background thread while the network runs on
    the current one; the network runs with batch norms folded into its convolutions, in channels-last
    layout, with bfloat16 weights and activations where the device computes bf16 natively (fp32
    elsewhere), traced and frozen for oneDNN graph fusion on CPUs. Training and serving use this same path.

    Parameters
    ----------
    weights : str
        ``imagenet``, ``random`` or a path to a ResNet50 state-dict file.
    batch_size : int
        Images per forward pass.
    precision : str or None
        ``auto`` (bf16 where native, else fp32), ``bf16`` or ``fp32``; None reads
        ``$MULTIMODAL_IMAGE_PRECISION``, else ``auto``.
    """

    def __init__(self, weights: str = "imagenet", batch_size: int = 32, precision: str | None = None):
        import torch

        self.weights = weights
        self.batch_size = max(1, int(batch_size))
        from multimodal.classifier.gpu import report_unusable_gpu

        cuda = torch.cuda.is_available()
        report_unusable_gpu(cuda, torch.version.cuda)
        self.device = torch.device("cuda" if cuda else "cpu")
        self.precision = resolve_precision(precision, self.device)
        model, self.identity = build_backbone(weights)
        self._dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        self._model = inference_network(model, self.device, self._dtype)
        self._traced = isinstance(self._model, torch.jit.ScriptModule)
        self._profiled_sizes: set[int] = set()
        shape = (1, 3, 1, 1)
        self._mean = torch.tensor(IMAGENET_MEAN * 255.0, device=self.device).reshape(shape)
        self._std = torch.tensor(IMAGENET_STD * 255.0, device=self.device).reshape(shape)
        self._blank_embedding: np.ndarray | None = None
        self._warmed = False
        self._lock = threading.Lock()

    @classmethod
    def shared(cls, weights: str, batch_size: int = 32, precision: str | None = None) -> "ImageEmbedder":
        """The embedder of these settings that loaded models already use, or a new one: the models of a
        multi-model endpoint trained with the same weights share one ResNet50 (it is let go of with the last
        model that uses it)."""
        key = (weights, max(1, int(batch_size)), precision)
        with _SHARED_LOCK:
            embedder = _SHARED_EMBEDDERS.get(key)
            if embedder is None:
                embedder = cls(weights, batch_size=batch_size, precision=precision)
                _SHARED_EMBEDDERS[key] = embedder
            return embedder

    def describe(self) -> str:
        """One line for the logs: weights, device and precision."""
        return (f"ResNet50 {self.identity.name} weights (sha256 {self.identity.sha256[:12]}...) on {self.device}, "
                f"{self.precision}, batch {self.batch_size}")

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """Features of an ``(n, 224, 224, 3)`` uint8 batch."""
        import torch

        rows = len(batch)
        if self._traced:
            # The traced network's first run on a new batch shape is a profiling run whose arithmetic differs
            # slightly from every later run: pad batches to a few sizes (a row's features do not depend on
            # its batch) and run each size once before its results count, so equal images always give
            # equal features.
            size = min(1 << (rows - 1).bit_length(), max(rows, self.batch_size))
            if size > rows:
                batch = np.concatenate([batch, np.zeros((size - rows,) + batch.shape[1:], dtype=batch.dtype)])
        # One forward pass at a time: concurrent requests would only split the same cores, and the set of
        # profiled batch sizes is shared.
        with self._lock, torch.inference_mode():
            # NHWC memory seen as NCHW is exactly the channels-last layout: no copy.
            pixels = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2)
            tensor = ((pixels.float() - self._mean) / self._std).to(self._dtype)
            if self._traced and len(batch) not in self._profiled_sizes:
                self._model(tensor)
                self._profiled_sizes.add(len(batch))
            return self._model(tensor)[:rows].float().cpu().numpy()

    def warm_up(self) -> None:
        """Run the network once on a full batch and once on the black square, so that the first batch that
        counts pays none of the set-up (on a CPU, the traced network's profiling runs for those sizes)."""
        if self._warmed:
            return
        self._forward(np.zeros((self.batch_size, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8))
        _ = self.blank_embedding
        self._warmed = True

    @property
    def blank_embedding(self) -> np.ndarray:
        """The embedding of the black square, computed on first use."""
        if self._blank_embedding is None:
            self._blank_embedding = self._forward(crop_224(black_square())[None].copy())[0]
        return self._blank_embedding

    def embed(self, cells: Sequence[str], column: str = "image", describe_row: Callable[[int], str] | None = None,
              folder: ImageFolder | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        """Embed one image column (cells in base64, or paths in ``folder``, read batch by batch).

        Returns ``(features, missing, undecodable)``: an ``(n, 2048)`` float32 array, a mask of the rows
        whose image was missing or undecodable (they get the black-square embedding), and how many
        non-empty cells could not be decoded (the first ten logged as warnings, each with its row as
        ``describe_row(position)`` names it).
        """
        from concurrent.futures import ThreadPoolExecutor

        n = len(cells)
        features = np.empty((n, EMBEDDING_DIM), dtype=np.float32)
        missing = np.ones(n, dtype=bool)
        present = [row for row, cell in enumerate(cells) if isinstance(cell, str) and cell.strip()]
        chunks = [present[i:i + self.batch_size] for i in range(0, len(present), self.batch_size)]
        undecodable = 0
        started = last_log = time.monotonic()
        done = 0

        def prepare(rows: list[int]) -> list:
            return [_prepare(cells[row], folder) for row in rows]

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-decode") as pool:
            pending = [pool.submit(prepare, chunk) for chunk in chunks[:DECODE_AHEAD]]
            for index, rows in enumerate(chunks):
                prepared = pending.pop(0).result()
                if index + DECODE_AHEAD < len(chunks):
                    pending.append(pool.submit(prepare, chunks[index + DECODE_AHEAD]))
                good_rows, arrays = [], []
                for row, item in zip(rows, prepared):
                    if isinstance(item, ImageDecodeError):
                        undecodable += 1
                        if undecodable <= 10:
                            where = describe_row(row) if describe_row is not None else f"row {row + 1}"
                            logger.warning("%s, column '%s': %s; treated as a missing image", where, column, item)
                    else:
                        good_rows.append(row)
                        arrays.append(item)
                if good_rows:
                    features[good_rows] = self._forward(np.stack(arrays))
                    missing[good_rows] = False
                done += len(rows)
                now = time.monotonic()
                if now - last_log > 15:
                    rate = done / (now - started)
                    logger.info("column '%s': embedded %d/%d images (%.1f images/s, about %.0f s left)", column,
                                done, len(present), rate, (len(present) - done) / rate)
                    last_log = now
        if missing.any():
            features[missing] = self.blank_embedding
        if undecodable > 10:
            logger.warning("column '%s': %d undecodable images in all, treated as missing", column, undecodable)
        logger.info("column '%s': embedded %d images (%d missing or undecodable) in %.1f s", column,
                    n - int(missing.sum()), int(missing.sum()), time.monotonic() - started)
        return features, missing, undecodable


def check_not_all_undecodable(column: str, cells: Sequence[str], undecodable: int) -> None:
    """Fail when every non-empty cell of a training image column is undecodable: an encoding mistake."""
    present = sum(1 for c in cells if isinstance(c, str) and c.strip())
    if present and undecodable == present:
        raise UserError(
            f"column '{column}': none of its {present} non-empty cells is a decodable image; give each image as "
            "its file's bytes (JPEG or PNG) in base64, or as the path of its file relative to the channel "
            "directory (the warnings above say why the first cells failed)."
        )
