"""Serving overhead: rows/s through ``/invocations`` against in-process ``predict_proba``, side by side.

    .venv/bin/python bench/serving.py [--repeats 5]

1. Image rows (the demo's digits, and the same rows with photographs) and text/tabular rows: the real
   ``serve`` (1 worker) takes the demo test rows as 6 MB
   MultiRecord CSV payloads (header-less, label dropped, as a batch transform sends them); the same rows go
   through ``MultimodalClassifier.predict_proba`` in this process. Goal: server >= 0.9 x in-process.
2. The same photo rows with their images and with every image missing, through the server. Goal: >= 20x.
3. Text/tabular rows at batch 1000: ``predict_proba`` against bare AutoGluon ``predict_proba`` of the
   per-modality predictors on already-split features (the work no implementation can skip).
   Goal: <= 1.5 x.
"""
from __future__ import annotations

import argparse
import csv
import io

import common
import pandas as pd

from multimodal.classifier.features import split_modalities
from multimodal.classifier.estimator import MultimodalClassifier
from multimodal.tooling.transform import LocalServer, mini_batches

MAX_PAYLOAD = 6 * 1024 * 1024


def payloads(frame: pd.DataFrame) -> list[bytes]:
    """The rows as header-less CSV lines, grouped into MultiRecord payloads of at most 6 MB."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(frame.astype(str).replace("nan", "").itertuples(index=False))
    records = [line.encode() + b"\n" for line in buffer.getvalue().splitlines()]
    return [b"".join(batch) for batch in mini_batches(records, MAX_PAYLOAD, multi_record=True)]


def server_against_in_process(directory, rows: pd.DataFrame, repeats: int) -> list:
    model = MultimodalClassifier.load(directory, image_weights="random")
    bodies = payloads(rows)
    with LocalServer(directory, {"MULTIMODAL_IMAGE_WEIGHTS": "random"}) as server:
        server.wait_ready()

        def through_server():
            for body in bodies:
                status, answer = server.invoke(body, "text/csv", "text/csv")
                assert status == 200, answer[:300]

        def in_process():
            model.predict_proba(rows)

        through_server(), in_process()  # warm-up
        rates = common.median_rates({"server": through_server, "in process": in_process}, len(rows), repeats)
    return [f"{len(rows)} rows in {len(bodies)} payload(s) of <= 6 MB", f"{rates['in process']:.0f}",
            f"{rates['server']:.0f}", f"{rates['server'] / rates['in process']:.2f}"]


def missing_against_images(directory, rows: pd.DataFrame, repeats: int) -> list:
    """Rows/s through the server for ``rows`` as they are and with every image missing (the image members'
    output for a missing image is computed once per model, so those rows skip the network and AutoGluon's
    image models). Goal: missing >= 20x with an image."""
    images = [c for c in rows.columns if c.endswith("_image")]
    bodies = {"with a photo": payloads(rows), "image missing": payloads(rows.assign(**{c: "" for c in images}))}
    with LocalServer(directory, {"MULTIMODAL_IMAGE_WEIGHTS": "random"}) as server:
        server.wait_ready()

        def through_server(kind):
            for body in bodies[kind]:
                status, answer = server.invoke(body, "text/csv", "text/csv")
                assert status == 200, answer[:300]

        for kind in bodies:
            through_server(kind)  # warm-up
        rates = common.median_rates({kind: (lambda kind=kind: through_server(kind)) for kind in bodies}, len(rows),
                                    repeats)
    ratio = rates["image missing"] / rates["with a photo"]
    return [len(rows), f"{rates['with a photo']:.0f}", f"{rates['image missing']:.0f}", f"{ratio:.1f}"]


def against_bare_autogluon(directory, rows: pd.DataFrame, repeats: int) -> dict[str, float]:
    model = MultimodalClassifier.load(directory)
    frames = split_modalities(rows, model.schema_)
    inputs = {member.name: member.features(frames) for member in model.members_}

    def bare():
        for member in model.members_:
            member.predictor.autogluon.predict_proba(inputs[member.name])

    def ours():
        model.predict_proba(rows)

    bare(), ours()
    return common.median_rates({"bare AutoGluon": bare, "predict_proba": ours}, len(rows), repeats)


def tabular_members(directory) -> list:
    return MultimodalClassifier.load(directory).members_


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    image_model, tabular_model = common.bench_model(True), common.bench_model(False)
    test = common.demo_frame("test").drop(columns=["label"])
    image_rows = pd.concat([test] * 2, ignore_index=True)
    tabular_rows = pd.concat([test.drop(columns=["digit_image"])] * 20, ignore_index=True)

    photo_rows = image_rows.copy()
    photo_rows["digit_image"] = common.photo_cells(len(photo_rows), seed=3)
    table = [["image + text + tabular", *server_against_in_process(image_model, image_rows, args.repeats)],
             ["photos (~50 KB JPEG) + text + tabular", *server_against_in_process(image_model, photo_rows,
                                                                               args.repeats)],
             ["text + tabular", *server_against_in_process(tabular_model, tabular_rows, args.repeats)]]
    common.print_table(f"/invocations against in-process predict_proba, rows/s (median of {args.repeats})",
                       ["model", "rows", "in process", "server", "server / in process"], table)

    missing = missing_against_images(image_model, photo_rows, args.repeats)
    common.print_table("the same rows through /invocations with their photo and with the image missing, rows/s",
                       ["rows", "with a photo", "image missing", "missing / with a photo"], [missing])

    batch = tabular_rows.iloc[:1000].reset_index(drop=True)
    rates = against_bare_autogluon(tabular_model, batch, args.repeats)
    cost = rates["bare AutoGluon"] / rates["predict_proba"]
    common.print_table("text + tabular rows at batch 1000, rows/s", [f"bare AutoGluon ({len(tabular_members(tabular_model))} predictors)",
                       "predict_proba", "cost ratio"],
                       [[f"{rates['bare AutoGluon']:.0f}", f"{rates['predict_proba']:.0f}", f"{cost:.2f}"]])
    print(f"\nserver / in process: goal >= 0.9; cost ratio against bare AutoGluon: {cost:.2f} (goal <= 1.5)")


if __name__ == "__main__":
    main()
