"""Image cells that name a file: the rule that tells a path from base64, and reading the file inside its folder.

The rule, per cell: a cell of an ``_image`` column that ends in a file extension (a dot and 1 to 5 letters or
digits, as in ``images/0001.jpg``) and is at most 1,024 characters long (S3's longest key) is a path; any other
non-empty cell is base64. Base64 has no dot, so no base64 image is ever taken for a path.

A path is relative to its folder (a training channel's directory) and never leaves it: an absolute path, a
``..`` part, a URI (``s3://...``) and a link that points outside the folder are refused, as is a file that is
not there. A refused path is one missing image, logged with its row and column as an undecodable cell is.
"""
from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from multimodal.errors import UserError

MAX_PATH_CHARS = 1024
# An image file larger than this is refused unread: the embedding reads one batch of files at a time.
MAX_IMAGE_FILE_BYTES = 64 * 1024 * 1024
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,5}$")
# Leading bytes of the image formats, and the extensions they are written with.
_SIGNATURES = ((b"\xff\xd8\xff", "jpg"), (b"\x89PNG", "png"), (b"GIF8", "gif"), (b"II*\x00", "tif"),
               (b"MM\x00*", "tif"), (b"\x00\x00\x01\x00", "ico"))
IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "jpe", "jfif", "png", "gif", "bmp", "dib", "tif", "tiff", "webp",
                              "avif", "heic", "heif", "ico", "ppm", "pgm", "pbm", "pnm", "tga", "mpo"})
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_DRIVE = re.compile(r"^[A-Za-z]:")


class ImagePathError(ValueError):
    """A path cell that cannot be read inside its folder; the message says why."""


def extension_of(data: bytes) -> str:
    """The file extension an image's bytes are written with (``jpg``, ``png``, ``webp``, ...; ``img`` if unknown)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:12] in (b"ftypavif", b"ftypavis"):
        return "avif"
    if data[:2] == b"BM" and data[6:10] == b"\x00\x00\x00\x00":   # "BM" alone could begin a CSV header
        return "bmp"
    for signature, extension in _SIGNATURES:
        if data.startswith(signature):
            return extension
    return "img"


def is_image_file(path: Path) -> bool:
    """Whether a file in a channel is an image (by its extension or its first bytes) rather than a data file:
    the image files that path cells name sit beside the CSV files."""
    if path.suffix[1:].lower() in IMAGE_EXTENSIONS:
        return True
    try:
        with open(path, "rb") as handle:
            return extension_of(handle.read(16)) != "img"
    except OSError:
        return False


def is_path_cell(cell) -> bool:
    """Whether an image cell names a file (see the module doc for the rule)."""
    if not isinstance(cell, str) or len(cell) > 2 * MAX_PATH_CHARS:   # a base64 image: no copy, no scan
        return False
    text = cell.strip()
    return 0 < len(text) <= MAX_PATH_CHARS and bool(_EXTENSION.search(text))


class ImageFolder:
    """The directory that image paths are relative to (a channel's directory), and reading files inside it."""

    def __init__(self, root: str | Path):
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"image folder {root} is not a directory.")
        self.root = root.resolve()

    def resolve(self, cell: str) -> Path:
        """The file a path cell names, inside the folder; ``ImagePathError`` says why not."""
        text = cell.strip()
        if "\x00" in text:
            raise ImagePathError(f"{text!r} holds a NUL character")
        if _URI.match(text):
            raise ImagePathError(f"{text!r} is a URI; give the path of the image file relative to the channel "
                                 "(upload the images under the same S3 prefix as the CSV)")
        if text.startswith(("/", "\\")) or _DRIVE.match(text):
            raise ImagePathError(f"{text!r} is an absolute path; image paths are relative to the channel directory")
        relative = PurePosixPath(text.replace("\\", "/"))
        if ".." in relative.parts:
            raise ImagePathError(f"{text!r} has a '..' part; image paths stay inside the channel directory")
        path = self.root.joinpath(*relative.parts)
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError, ValueError):   # absent, a loop of links, a name the system refuses
            raise ImagePathError(f"no file {text!r} in the channel directory") from None
        if not real.is_relative_to(self.root):
            raise ImagePathError(f"{text!r} is a link that points outside the channel directory")
        if not real.is_file():
            raise ImagePathError(f"{text!r} is not a file")
        return real

    def read(self, cell: str) -> bytes:
        """The bytes of the file a path cell names; ``ImagePathError`` when it cannot be read inside the folder."""
        path = self.resolve(cell)
        try:
            size = os.path.getsize(path)
            if size > MAX_IMAGE_FILE_BYTES:
                raise ImagePathError(f"{cell.strip()!r} has {size / 1e6:.0f} MB, more than "
                                     f"{MAX_IMAGE_FILE_BYTES / 1e6:.0f} MB")
            return path.read_bytes()
        except OSError as error:
            raise ImagePathError(f"{cell.strip()!r} cannot be read ({error.strerror or error})") from None

    def __repr__(self) -> str:
        return f"ImageFolder({str(self.root)!r})"


def find_path_cell(frame, columns) -> tuple[str, int, str] | None:
    """The first cell of ``frame``'s image ``columns`` that names a file, as (column, row position, the cell cut
    to 80 characters), or None; an absent column is skipped (it is reported where it is read)."""
    for column in (c for c in columns if c in frame.columns):
        for position, cell in enumerate(frame[column].tolist()):
            if is_path_cell(cell):
                return column, position, str(cell)[:80]
    return None


def require_folder_for_paths(frame, columns, folder: ImageFolder | None, describe_row) -> None:
    """Without a ``folder``, refuse a table whose image ``columns`` name files: ``UserError`` at the first such
    cell (``describe_row(position)`` names its row)."""
    found = None if folder is not None else find_path_cell(frame, columns)
    if found is not None:
        column, position, cell = found
        raise UserError(f"{describe_row(position)}, column '{column}': {cell!r} is an image path, and no image "
                        "folder was given to read it from: pass image_folder= (the directory the paths are relative "
                        "to), or give the image's bytes in base64.")
