"""The two forms of an image column, converted row by row: paths of image files in a folder, and base64 cells.

``inline`` writes a CSV whose path cells are replaced by their files' bytes in base64 (what a batch transform
job or an endpoint takes; with ``inference``, without header and ``label``, as a transform job reads it);
``extract`` writes each base64 cell as a file under the output CSV's folder and the CSV with its path. Rows
are streamed, so neither holds more than one row's images in memory.
"""
from __future__ import annotations

import base64
import csv
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from multimodal.classifier.image_files import ImageFolder, ImagePathError, extension_of, is_path_cell
from multimodal.errors import UserError

logger = logging.getLogger(__name__)

IMAGE_SUFFIX = "_image"
LABEL = "label"


@dataclass
class Conversion:
    """What a conversion did: rows written and image cells converted, and the cells it could not convert."""

    rows: int = 0
    converted: int = 0
    failed: int = 0


def _rows(path: Path, output: Path):
    """The reader of ``path``'s rows (its handle too), the folder of ``output`` made."""
    csv.field_size_limit(sys.maxsize)   # one cell may hold a large image
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as error:
        raise UserError(f"{path}: cannot be read ({error.strerror or error}).") from None
    output.parent.mkdir(parents=True, exist_ok=True)
    return handle, csv.reader(handle)


def _header(reader, path: Path) -> list[str]:
    header = next(reader, None)
    if not header:
        raise UserError(f"{path}: empty file; expected a CSV with a header (columns ending in {IMAGE_SUFFIX}).")
    if not any(name.strip().endswith(IMAGE_SUFFIX) for name in header):
        raise UserError(f"{path}: no column ending in {IMAGE_SUFFIX} in the header {header[:10]}.")
    return [name.strip() for name in header]


def _rewrite(source: Path, output: Path, convert, inference: bool = False) -> Conversion:
    """Copy ``source`` (a CSV with header) to ``output`` row by row, each non-empty image cell replaced by
    ``convert(line, column, cell, result)``; ``inference``: no header and no ``label`` column."""
    handle, reader = _rows(source, output)
    result = Conversion()
    with handle, output.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        header = _header(reader, source)
        image_columns = [i for i, name in enumerate(header) if name.endswith(IMAGE_SUFFIX)]
        kept = [i for i, name in enumerate(header) if not (inference and name == LABEL)]
        if not inference:
            writer.writerow(header)
        for line, row in enumerate(reader, start=2):
            for i in image_columns:
                if i < len(row) and row[i].strip():
                    row[i] = convert(line, header[i], row[i], result)
            writer.writerow([row[i] if i < len(row) else "" for i in kept])
            result.rows += 1
    return result


def inline(source: Path, folder: Path | None, output: Path, inference: bool = False) -> Conversion:
    """``source`` (a CSV with header) with every image path cell replaced by its file's bytes in base64; paths
    are relative to ``folder`` (default: the folder of ``source``). A path that cannot be read inside the folder
    becomes an empty cell (a missing image), with a warning naming its line and column. ``inference``: write
    no header and no ``label`` column (a batch transform job's input)."""
    images = ImageFolder(folder if folder is not None else source.parent)

    def convert(line: int, column: str, cell: str, result: Conversion) -> str:
        if not is_path_cell(cell):
            return cell
        try:
            encoded = base64.b64encode(images.read(cell)).decode("ascii")
        except ImagePathError as error:
            logger.warning("%s, line %d, column '%s': %s; written as a missing image", source.name, line, column,
                           error)
            result.failed += 1
            return ""
        result.converted += 1
        return encoded

    return _rewrite(source, output, convert, inference)


def extract(source: Path, output: Path, folder: str = "images") -> Conversion:
    """``source`` (a CSV with header) with every base64 image cell written as a file under ``output``'s folder
    (``folder/<line>-<column>.<format>``) and replaced by its path relative to ``output``'s folder; a cell that
    is not valid base64 stays as it is, with a warning."""
    from multimodal.classifier.images import ImageDecodeError, decode_base64

    if Path(folder).is_absolute() or ".." in Path(folder).parts:
        raise UserError(f"--folder {folder!r}: give a subfolder of the output CSV's folder (the paths written are "
                        "relative to it, as training reads them).")
    root = output.parent
    (root / folder).mkdir(parents=True, exist_ok=True)

    def convert(line: int, column: str, cell: str, result: Conversion) -> str:
        if is_path_cell(cell):
            return cell
        try:
            data = decode_base64(cell.strip())
        except ImageDecodeError as error:
            logger.warning("%s, line %d, column '%s': %s; left as it is", source.name, line, column, error)
            result.failed += 1
            return cell
        name = f"{folder}/{line:06d}-{_plain(column)}.{extension_of(data)}"
        if (root / name).exists():   # two columns whose names read the same as file names
            name = f"{folder}/{line:06d}-{_plain(column)}-{result.converted}.{extension_of(data)}"
        (root / name).write_bytes(data)
        result.converted += 1
        return name

    return _rewrite(source, output, convert)


def _plain(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:60] or "image"
