"""Distributed training: the same training job on 1, 2 and 3 hosts, one core each, each host the real `train`
in a network namespace of its own (``multimodal.tooling.local_job.run_namespaced_training``; needs root).

Runs are interleaved (1, 2, 3 hosts, then again) so that a noisy neighbour slows all of them alike. For each
run: the job's wall time (from laying out the trees to the last host's exit), the speed-up against one host,
the embedding and member-fit seconds, the units each host ran, and how far its predictions on held-back rows
are from the one-host job's. A member whose fit used 80 % or more of its share of the budget is budget-bound:
then the hosts change the shares (a member's share grows with the hosts) and predictions may differ; such
members are listed with their share and their out-of-fold score.

    python bench/distributed.py                      # both data sets, hosts 1 2 (3 when there are 3 cores)
    python bench/distributed.py --data demo2 --hosts 1 2 3 --rounds 2

Data sets: ``demo2``, the bundled demo data with a second image column (real photographs, unrelated to the
label: the cost of a second image column); ``reviews4k``, about 4,000 rows of reviews and MNIST digits
(``bench/accuracy.py reviews_digits``). Results go to bench/results/distributed/<data>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401 - sets the random image weights and the import path

import numpy as np

RESULTS = common.ROOT / "bench" / "results" / "distributed"
BOUND_SHARE = 0.8


def demo2() -> tuple:
    """The demo data with a second image column of real photographs."""
    frames = []
    for split, seed in (("train", 1), ("test", 2)):
        frame = common.demo_frame(split)
        frame.insert(frame.columns.get_loc("label"), "photo_image", common.photo_cells(len(frame), seed=seed))
        frames.append(frame)
    return frames[0], frames[1]


def reviews4k() -> tuple:
    """About 4,000 training rows of reviews with a digit image each (plus 600 held back)."""
    import accuracy

    table, _ = accuracy.reviews_digits(per_class=1534)
    table = table.sample(frac=1.0, random_state=0).reset_index(drop=True)
    return table.iloc[:-600].reset_index(drop=True), table.iloc[-600:].reset_index(drop=True)


DATA = {"demo2": demo2, "reviews4k": reviews4k}


def run_job(work: Path, train_csv: Path, hyperparameters: dict, hosts: int, cores: list[int]) -> dict:
    """One namespaced job on ``hosts`` hosts, host i on core ``cores[i % len(cores)]``: its figures."""
    from multimodal.tooling.local_job import run_namespaced_training

    job_dir = work / f"hosts-{hosts}-{time.monotonic_ns()}"
    result = run_namespaced_training(job_dir, {"train": train_csv}, hyperparameters, f"bench-{hosts}", hosts,
                                     cores=[[cores[i % len(cores)]] for i in range(hosts)])
    if result.status != "Completed":
        raise SystemExit(f"the {hosts}-host job failed: {result.failure_reason}\nlog: {result.log_path}")
    config = json.loads((result.ml_root / "model" / "model_config.json").read_text())
    training = config["training"]
    members = training["timings"]["members"]
    oof = training["report"]["members"]
    bound = {name: {"share": entry["share"], "seconds": entry["seconds"],
                    "oof_accuracy": round(oof.get(name, {}).get("accuracy", float("nan")), 4)}
             for name, entry in members.items() if entry["seconds"] >= BOUND_SHARE * entry["share"]}
    distributed = training.get("distributed", {})
    return {"hosts": hosts, "wall_seconds": round(result.seconds, 1), "fit_seconds": training["seconds"],
            "embedding_seconds": round(sum(training["timings"]["embedding"].values()), 1),
            "member_seconds": round(sum(entry["seconds"] for entry in members.values()), 1),
            "fusion_seconds": training["timings"].get("fusion_network"), "members": members,
            "budget_bound": bound, "work": distributed.get("work", {}), "model": str(result.ml_root / "model")}


def predictions(model_dir: str, test) -> np.ndarray:
    from multimodal import MultimodalClassifier

    return MultimodalClassifier.load(model_dir).predict_proba(test.drop(columns=["label"])).to_numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", choices=sorted(DATA), default=["demo2", "reviews4k"])
    parser.add_argument("--hosts", nargs="+", type=int, default=None,
                        help="host counts (default: 1 2, and 3 when this machine has 3 cores)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=60.0,
                        help="every job's budget in minutes (default 60: large enough that no fit is budget-bound)")
    parser.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE",
                        help="another hyperparameter (default: every other at its default)")
    parser.add_argument("--allow-shared-cores", action="store_true",
                        help="run host counts above the core count (hosts then share cores: not a fair figure)")
    parser.add_argument("--tag", default="", help="appended to the results file's name (<data>-<tag>.json)")
    args = parser.parse_args(argv)
    import torch  # noqa: F401 - before tensorflow

    from multimodal.tooling.local_hosts import NamespacedHosts

    reason = NamespacedHosts.available()
    if reason:
        print(f"skipped: {reason}")
        return 1
    cores = sorted(os.sched_getaffinity(0))
    counts = args.hosts or [n for n in (1, 2, 3) if n <= len(cores)]
    if 1 not in counts:
        counts = [1] + counts
    if max(counts) > len(cores) and not args.allow_shared_cores:
        print(f"{max(counts)} hosts need {max(counts)} cores, one each; this machine has {len(cores)}: "
              f"running {[n for n in counts if n <= len(cores)]} (--allow-shared-cores runs the rest anyway)")
        counts = [n for n in counts if n <= len(cores)]
    hours, minutes = divmod(args.minutes, 60)   # n_mins takes 0-59
    hyperparameters = {"n_hours": str(int(hours)), "n_mins": str(minutes), **dict(pair.split("=", 1) for pair in args.hp)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.data:
        train, test = DATA[name]()
        work = Path(tempfile.mkdtemp(prefix=f"bench-distributed-{name}-"))
        train_csv = work / "train.csv"
        train.to_csv(train_csv, index=False)
        print(f"{name}: {len(train)} training rows, columns {list(train.columns)}, {len(test)} held back; "
              f"hosts {counts}, {args.rounds} round(s), hyperparameters {hyperparameters}", flush=True)
        runs: dict[int, list[dict]] = {n: [] for n in counts}
        for round_ in range(args.rounds):
            for count in counts:
                run = run_job(work, train_csv, hyperparameters, count, cores)
                run["proba"] = predictions(run["model"], test)
                runs[count].append(run)
                print(f"  round {round_ + 1}, {count} host(s): {run['wall_seconds']} s (fit {run['fit_seconds']} s: "
                      f"embedding {run['embedding_seconds']} s, members {run['member_seconds']} s); work "
                      f"{run['work'] or 'one host'}; budget-bound {sorted(run['budget_bound']) or 'none'}", flush=True)
        reference = runs[1][0]["proba"]
        single = statistics.median(r["wall_seconds"] for r in runs[1])
        summary = []
        for count, entries in runs.items():
            wall = statistics.median(r["wall_seconds"] for r in entries)
            difference = max(float(np.abs(r["proba"] - reference).max()) for r in entries)
            bound = {member: figures for r in entries for member, figures in r["budget_bound"].items()}
            summary.append({"hosts": count, "wall_seconds": wall, "speedup": round(single / wall, 2),
                            "max_abs_proba_difference": difference, "budget_bound": bound,
                            "runs": [{k: v for k, v in r.items() if k not in ("proba", "model")} for r in entries]})
            rows.append([name, count, wall, f"{single / wall:.2f}x",
                         statistics.median(r["embedding_seconds"] for r in entries),
                         statistics.median(r["member_seconds"] for r in entries), f"{difference:.1e}",
                         ", ".join(f"{m} ({f['seconds']:.0f} of {f['share']:.0f} s, oof {f['oof_accuracy']})"
                                   for m, f in bound.items()) or "none"])
        record = {"data": name, "train_rows": len(train), "test_rows": len(test), "hyperparameters": hyperparameters,
                  "cores": len(cores), "hosts_share_cores": max(counts) > len(cores), "processor": _processor(),
                  "rounds": args.rounds, "summary": summary}
        (RESULTS / f"{name}{'-' + args.tag if args.tag else ''}.json").write_text(json.dumps(record, indent=1, default=float))
    common.print_table("Distributed training: one core per host (median wall time of the job)",
                       ["data", "hosts", "wall s", "speed-up", "embedding s", "members s",
                        "max |Δ proba| vs 1 host", "budget-bound members"], rows)
    return 0


def _processor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
