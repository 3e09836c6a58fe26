"""What managed spot training's checkpoints cost (issue 19): disk per kind of unit against the model
directory, and the time a fully resumed fit takes against the fit that computed the units.

    .venv/bin/python bench/checkpoints.py [--datasets reviews_digits trump_tweets] [--minutes 4]

Each data set of the accuracy study (split 0's training rows) is fitted with ``checkpoint_dir`` at the default
hyperparameters, the model saved, then fitted again on the same checkpoint directory (every unit resumed).
Prints a table and writes ``bench/results/checkpoints.json``.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import common
import study

RESULTS = common.ROOT / "bench" / "results" / "checkpoints.json"
KINDS = ("embedding", "member", "fusion-network", "blend")


def megabytes(path: Path) -> float:
    """Megabytes of every file under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def unit_kind(name: str) -> str:
    """The kind of a unit from its name (``member-text-…`` -> member)."""
    return next(kind for kind in KINDS if name == kind or name.startswith(kind + "-"))


def measure(dataset: str, minutes: float) -> dict:
    """Disk and time of one data set's checkpointed fit and of its fully resumed refit."""
    from multimodal import MultimodalClassifier

    table, _, _ = study.load(dataset)
    train, _ = study.split(table, 0)
    with tempfile.TemporaryDirectory(prefix="bench-checkpoints-") as work:
        checkpoints, model_dir = Path(work) / "checkpoints", Path(work) / "model"
        started = time.monotonic()
        model = MultimodalClassifier(n_mins=minutes, image_weights="random").fit(train, checkpoint_dir=checkpoints)
        fit_seconds = time.monotonic() - started
        model.save(model_dir)
        by_kind = {kind: 0.0 for kind in KINDS}
        for unit in checkpoints.iterdir():
            by_kind[unit_kind(unit.name)] += megabytes(unit)
        started = time.monotonic()
        MultimodalClassifier(n_mins=minutes, image_weights="random").fit(train, checkpoint_dir=checkpoints)
        resumed_seconds = time.monotonic() - started
        return {"dataset": dataset, "rows": len(train), "columns": len(train.columns) - 2, "minutes": minutes,
                "fit_seconds": round(fit_seconds, 1), "resumed_fit_seconds": round(resumed_seconds, 1),
                "checkpoint_mb": round(megabytes(checkpoints), 1), "model_mb": round(megabytes(model_dir), 1),
                "checkpoint_mb_by_kind": {kind: round(mb, 1) for kind, mb in by_kind.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["reviews_digits", "trump_tweets"],
                        choices=sorted(study.DATASETS))
    parser.add_argument("--minutes", type=float, default=4.0)
    arguments = parser.parse_args()
    results = [measure(name, arguments.minutes) for name in arguments.datasets]
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    common.print_table(
        f"Checkpoints at a {arguments.minutes:g}-minute budget (default hyperparameters, split 0's training rows)",
        ["data set", "rows", "fit s", "resumed fit s", "checkpoints MB", "of which embeddings", "members",
         "network + blend", "model MB"],
        [[r["dataset"], r["rows"], r["fit_seconds"], r["resumed_fit_seconds"], r["checkpoint_mb"],
          r["checkpoint_mb_by_kind"]["embedding"], r["checkpoint_mb_by_kind"]["member"],
          round(r["checkpoint_mb_by_kind"]["fusion-network"] + r["checkpoint_mb_by_kind"]["blend"], 2),
          r["model_mb"]] for r in results])


if __name__ == "__main__":
    main()
