"""Cold start of ``serve``: process start to the first ``/ping`` 200, and where the time goes.

    .venv/bin/python bench/cold_start.py [--repeats 3]

For a model with an image column and one without, starts the real ``serve`` (one worker) several
times and reports the median seconds to the first 200 from /ping; then, in a fresh process, times
each loading step (imports, AutoGluon predictors, image network) for the image model.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import common

from multimodal.tooling.transform import LocalServer

PHASES = r'''
import sys, time
started = time.perf_counter()
def lap(name):
    global started
    now = time.perf_counter(); print(f"{name}|{now - started:.2f}", flush=True); started = now
import multimodal.sagemaker.serving.server, multimodal.sagemaker.serving.app; lap("import flask, gunicorn, the app")
import torch, torchvision; lap("import torch + torchvision (image models only)")
import autogluon.tabular; lap("import autogluon.tabular")
from pathlib import Path
from multimodal.classifier.estimator import MultimodalClassifier
from multimodal.classifier.model_config import ModelConfig
from multimodal.classifier.tabular import MemberPredictor
from multimodal.classifier.fusion_network import FusionNetwork
from multimodal.classifier.images import ImageEmbedder
directory = Path(sys.argv[1]); config = ModelConfig.read(directory)
models = [MemberPredictor.load(e.name, directory / e.path, e.layout) for e in config.modalities]
lap(f"load + persist {len(models)} AutoGluon predictors")
FusionNetwork.load(directory / "wholistic"); lap("load the fusion network (NumPy)")
ImageEmbedder("random", precision=config.image_weights.get("precision"))
lap("build ResNet50 (weights, sha256, fold, bf16)")
print("tensorflow imported|" + str("tensorflow" in sys.modules))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    models = {"with an image column": common.bench_model(True), "without images": common.bench_model(False)}
    rows = []
    for name, directory in models.items():
        seconds = []
        for _ in range(args.repeats):
            with LocalServer(directory, {"MULTIMODAL_IMAGE_WEIGHTS": "random"}) as server:
                started = time.monotonic()
                server.wait_ready(poll_seconds=0.1)
                seconds.append(time.monotonic() - started)
        rows.append([name, f"{statistics.median(seconds):.1f}", " / ".join(f"{s:.1f}" for s in seconds)])
    common.print_table("serve: start to first /ping 200 (1 worker)", ["model", "median s", "runs"], rows)

    output = subprocess.run([sys.executable, "-c", PHASES, str(models["with an image column"])], capture_output=True,
                            text=True, check=True).stdout
    phases = [line.split("|") for line in output.splitlines() if "|" in line]
    common.print_table("where a worker's start goes (image model, fresh process)", ["step", "s"], phases)


if __name__ == "__main__":
    main()
