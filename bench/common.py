"""Shared helpers of the benchmark scripts: medians of repeated side-by-side timings, sample data, tables."""
from __future__ import annotations

import base64
import io
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# No model hub here: the train and serve processes the benchmarks start use random weights (same network, same
# cost); in-process calls pass image_weights="random" themselves.
os.environ.setdefault("MULTIMODAL_IMAGE_WEIGHTS", "random")


def timed(function: Callable[[], object]) -> float:
    """Seconds one call of ``function`` takes."""
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def median_rates(candidates: dict[str, Callable[[], object]], items: int, repeats: int) -> dict[str, float]:
    """Items per second of each candidate: the median of ``repeats`` rounds, candidates interleaved
    within each round so that a noisy neighbour slows all of them alike."""
    seconds: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, function in candidates.items():
            seconds[name].append(timed(function))
    return {name: items / statistics.median(values) for name, values in seconds.items()}


def photo_cells(count: int, seed: int = 0, scale: float = 1.0) -> list[str]:
    """``count`` base64 JPEG cells cut from real photographs (scikit-learn's sample images), 320-640 px wide
    (times ``scale``: larger files of the same photographs)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(array) for array in load_sample_images().images]
    random = np.random.default_rng(seed)
    cells = []
    for i in range(count):
        photo = photos[i % len(photos)]
        width = int(random.integers(320, photo.width + 1))
        height = int(min(photo.height, width * random.uniform(0.6, 0.9)))
        left = int(random.integers(0, photo.width - width + 1))
        top = int(random.integers(0, photo.height - height + 1))
        crop = photo.crop((left, top, left + width, top + height))
        if random.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        if scale != 1.0:
            crop = crop.resize((round(crop.width * scale), round(crop.height * scale)), Image.BICUBIC)
        buffer = io.BytesIO()
        crop.save(buffer, format="JPEG", quality=90)
        cells.append(base64.b64encode(buffer.getvalue()).decode())
    return cells


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    """A Markdown table, ready for the README."""
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


def bench_model(with_images: bool, quality: str = "toy") -> Path:
    """A model trained on the demo data (with or without its image column), cached under build/bench/."""
    directory = ROOT / "build" / "bench" / f"model-{quality}-{'images' if with_images else 'no-images'}"
    if (directory / "model_config.json").is_file():
        return directory
    import torch  # noqa: F401 - before tensorflow

    from multimodal.classifier.estimator import MultimodalClassifier

    train = demo_frame("train", with_images)
    print(f"training a {quality} benchmark model on {len(train)} demo rows ({'with' if with_images else 'without'} "
          "images); cached in build/bench/", flush=True)
    model = MultimodalClassifier(quality=quality, n_mins=3, image_weights="random").fit(train)
    model.save(directory)
    return directory


def demo_frame(split: str, with_images: bool = True):
    """The bundled demo data set (``train`` or ``test``), optionally without its image column."""
    from multimodal.sagemaker.csv_input import read_training_csv

    frame = read_training_csv([ROOT / "data" / "demo" / f"{split}.csv"])
    return frame if with_images else frame.drop(columns=[c for c in frame.columns if c.endswith("_image")])
