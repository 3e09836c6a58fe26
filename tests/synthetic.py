"""Small, seeded four-modality frames for tests (images are real JPEGs made with Pillow)."""
from __future__ import annotations

import base64
import csv
import io

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

WORDS = {
    "cat": ["whiskers", "meow", "purr", "litter", "mouse"],
    "dog": ["bark", "leash", "fetch", "bone", "walk"],
    "fish": ["water", "tank", "fins", "swim", "bubbles"],
}
COLORS = {"cat": (200, 40, 40), "dog": (40, 200, 40), "fish": (40, 40, 200)}


def image_base64(image: Image.Image, fmt: str) -> str:
    """``image`` saved in ``fmt`` (JPEG, PNG, GIF, WEBP, ...) and encoded as base64, as a CSV cell holds it."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def jpeg_base64(color, size=(48, 40), shape="rect", fmt="JPEG") -> str:
    """A small image of a coloured shape, encoded as base64."""
    image = Image.new("RGB", size, (240, 240, 240))
    draw = ImageDraw.Draw(image)
    box = (size[0] // 5, size[1] // 5, size[0] * 4 // 5, size[1] * 4 // 5)
    (draw.ellipse if shape == "ellipse" else draw.rectangle)(box, fill=color)
    return image_base64(image, fmt)


def make_frame(n: int = 90, seed: int = 0, classes=("cat", "dog", "fish"), missing: float = 0.15) -> pd.DataFrame:
    """A frame with ID, label, two text, two numeric, one categorical and one image column."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = classes[i % len(classes)]
        k = classes.index(label)
        words = WORDS.get(label, WORDS["cat"])
        row = {
            "ID": f"r{i:04d}",
            "title_text": " ".join(rng.choice(words, 3)),
            "body_text": " ".join(rng.choice(sum(WORDS.values(), []), 6)),
            "weight_num": float(k * 3 + rng.normal()),
            "age_num": int(rng.integers(1, 15)),
            "color_cat": ["red", "green", "blue"][k] if rng.random() < 0.8 else str(rng.choice(["red", "green", "blue"])),
            "photo_image": jpeg_base64(COLORS.get(label, (90, 90, 90)), shape="ellipse" if k % 2 else "rect"),
            "label": label,
        }
        if rng.random() < missing:
            row["photo_image"] = ""
        if rng.random() < missing:
            row["title_text"] = ""
            row["body_text"] = None
        rows.append(row)
    return pd.DataFrame(rows)


def csv_lines(frame: pd.DataFrame) -> str:
    """Rows without header, as a client sends them to /invocations (missing values as empty fields)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(frame.astype(object).where(frame.notna(), "").values.tolist())
    return buffer.getvalue()


def with_image_files(frame: pd.DataFrame, directory, column: str = "photo_image", folder: str = "images",
                     ) -> pd.DataFrame:
    """``frame`` with each base64 cell of ``column`` written as a file under ``directory / folder`` and replaced by
    its path relative to ``directory`` (the form a channel with image files holds); empty cells stay empty."""
    from pathlib import Path

    target = Path(directory) / folder
    target.mkdir(parents=True, exist_ok=True)
    frame = frame.copy()
    paths = []
    for i, cell in enumerate(frame[column].tolist()):
        if not isinstance(cell, str) or not cell:
            paths.append(cell)
            continue
        name = f"{folder}/{i:04d}.jpg"
        (Path(directory) / name).write_bytes(base64.b64decode(cell))
        paths.append(name)
    frame[column] = paths
    return frame
