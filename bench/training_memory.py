"""Training memory: peak RSS of the real ``train`` entrypoint with 1k and 4k image rows.

    .venv/bin/python bench/training_memory.py [--small 1000] [--large 4000] [--form paths] [--scale 2]

Each run is a fresh ``train`` process on a SageMaker /opt/ml tree (one ``_image`` column of real-photo
JPEGs, one ``_num`` column, three classes, quality toy). Prints each run's peak RSS, the CSV size, and
the growth per extra image row beyond the CSV's own bytes (goal: at most about 20 KB).
``--image-components 0`` trains on all 2048 ResNet50 features (no projection) for comparison.
``--form paths`` puts the photos in the channel as files named by path (the CSV holds only paths: the
growth per row is then the images' features alone); ``--scale`` makes the same photos larger files, to show
that with paths the peak does not grow with the size of the images.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import common

TRAIN = str(common.ROOT / ".venv" / "bin" / "train")


def write_tree(root: Path, rows: int, cells: list[str], image_components: int | None = None,
               form: str = "base64", minutes: float = 4.0) -> int:
    """An /opt/ml tree with ``rows`` image rows (``form`` paths: each photo a file beside the CSV, the cells its
    path); returns the CSV's size in bytes."""
    import base64

    import numpy as np
    import pandas as pd

    random = np.random.default_rng(1)
    labels = random.integers(0, 3, rows)
    frame = pd.DataFrame({
        "ID": np.arange(rows),
        "size_num": labels + random.normal(0, 1.5, rows),
        "photo_image": [cells[(3 * random.integers(0, len(cells) // 3) + label) % len(cells)] for label in labels],
        "label": labels,
    })
    config = root / "input" / "config"
    data = root / "input" / "data" / "train"
    for directory in (config, data, root / "model", root / "output"):
        directory.mkdir(parents=True)
    hyperparameters = {"quality": "toy", "n_mins": f"{minutes:g}", "num_folds": "3"}
    if image_components is not None:
        hyperparameters["image_components"] = str(image_components)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (config / "inputdataconfig.json").write_text(json.dumps({"train": {"ContentType": "text/csv",
                                                                       "TrainingInputMode": "File"}}))
    if form == "paths":
        (data / "photos").mkdir()
        names = {}
        for k, cell in enumerate(cells):
            names[cell] = f"photos/{k:05d}.jpg"
            (data / names[cell]).write_bytes(base64.b64decode(cell))
        frame["photo_image"] = frame["photo_image"].map(names)
    frame.to_csv(data / "train.csv", index=False)
    return (data / "train.csv").stat().st_size


def peak_rss_kb(root: Path) -> tuple[int, float]:
    """Peak RSS (KB) and wall seconds of one ``train`` process, measured from a fresh parent."""
    probe = ("import resource, subprocess, sys, time; t = time.time(); "
             "r = subprocess.run([sys.argv[1]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
             "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.time() - t)")
    environment = {**os.environ, "SAGEMAKER_BASE_DIR": str(root), "MULTIMODAL_IMAGE_WEIGHTS": "random"}
    output = subprocess.run([sys.executable, "-c", probe, TRAIN], env=environment, capture_output=True, text=True,
                            check=True).stdout.split()
    if output[0] != "0":
        failure = root / "output" / "failure"
        raise SystemExit(f"train failed: {failure.read_text()[:500] if failure.exists() else output}")
    return int(output[1]), float(output[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=4000)
    parser.add_argument("--image-components", type=int, default=None,
                        help="the image_components hyperparameter (default: the algorithm's default)")
    parser.add_argument("--form", choices=["base64", "paths"], default="base64",
                        help="images in the CSV as base64 (default) or as files beside it named by path")
    parser.add_argument("--scale", type=float, default=1.0, help="photo side times this (larger files)")
    parser.add_argument("--minutes", type=float, default=4.0, help="each job's time budget (default 4)")
    args = parser.parse_args()
    cells = common.photo_cells(300, scale=args.scale)
    print(f"{len(cells)} distinct photos, mean {sum(len(c) * 3 / 4 for c in cells) / len(cells) / 1024:.0f} KB "
          f"each as a file; images given as {args.form}")
    results = []
    for rows in (args.small, args.large):
        with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
            csv_bytes = write_tree(Path(scratch), rows, cells, args.image_components, args.form, args.minutes)
            rss_kb, seconds = peak_rss_kb(Path(scratch))
        results.append((rows, csv_bytes, rss_kb, seconds))
    common.print_table("Training peak RSS (fresh `train` process each)",
                       ["image rows", "CSV MB", "peak RSS MB", "wall s"],
                       [[r, f"{b / 1e6:.1f}", f"{k / 1024:.0f}", f"{s:.0f}"] for r, b, k, s in results])
    (small, small_bytes, small_rss, _), (large, large_bytes, large_rss, _) = results
    extra_rows = large - small
    growth = (large_rss - small_rss) * 1024 / extra_rows
    csv_per_row = (large_bytes - small_bytes) / extra_rows
    print(f"\npeak RSS grows by {growth / 1024:.1f} KB per extra image row, of which the CSV's own bytes are "
          f"{csv_per_row / 1024:.1f} KB: {(growth - csv_per_row) / 1024:+.1f} KB beyond the CSV (goal <= about 20 KB). "
          "Run-to-run differences in which AutoGluon models fit the time budget move the peak by a few hundred MB: "
          "compare row counts far apart.")


if __name__ == "__main__":
    main()
