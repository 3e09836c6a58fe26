"""Artifact size per ``quality`` on the demo data: the saved model directory and its model.tar.gz.

    .venv/bin/python bench/artifact_size.py [--qualities toy,very_light,light,default] [--minutes 10]

Each quality is fitted on the bundled demo training set with the same time budget, saved, and packed
as SageMaker packs /opt/ml/model. Prints the sizes, the largest parts and the test accuracy.
Goal: ``default`` <= 300 MB.
"""
from __future__ import annotations

import argparse
import tarfile
import tempfile
import time
from pathlib import Path

import common
import torch  # noqa: F401 - before tensorflow

from multimodal.classifier.estimator import MultimodalClassifier


def size_mb(path: Path) -> float:
    """Bytes under ``path`` in MB."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qualities", default="toy,very_light,light,default")
    parser.add_argument("--minutes", type=float, default=10)
    args = parser.parse_args()
    train, test = common.demo_frame("train"), common.demo_frame("test")
    rows = []
    for quality in args.qualities.split(","):
        with tempfile.TemporaryDirectory(prefix="bench-size-") as scratch:
            started = time.monotonic()
            model = MultimodalClassifier(quality=quality, n_mins=args.minutes, image_weights="random").fit(train)
            seconds = time.monotonic() - started
            directory = model.save(Path(scratch) / "model")
            accuracy = (model.predict(test.drop(columns=["label"])).to_numpy() == test["label"].to_numpy()).mean()
            archive = Path(scratch) / "model.tar.gz"
            with tarfile.open(archive, "w:gz") as tar:
                tar.add(directory, arcname=".")
            folders = [p for p in directory.iterdir() if p.is_dir()]
            folders = [c for p in folders for c in (p.iterdir() if p.name == "img" else [p]) if c.is_dir()]
            parts = sorted(((size_mb(p), str(p.relative_to(directory))) for p in folders), reverse=True)
            largest = ", ".join(f"{name} {mb:.0f}" for mb, name in parts[:3])
            rows.append([quality, f"{size_mb(directory):.0f}", f"{archive.stat().st_size / 1e6:.0f}", largest,
                         f"{accuracy:.3f}", f"{seconds:.0f}"])
            print(f"{quality}: done", flush=True)
    common.print_table(f"Model size per quality on the demo data ({args.minutes:g} min budget each)",
                       ["quality", "model dir MB", "model.tar.gz MB", "largest parts (MB)", "test accuracy", "fit s"],
                       rows)


if __name__ == "__main__":
    main()
