"""The SageMaker training contract, run for real: the `train` executable against temporary /opt/ml trees."""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from multimodal.sagemaker import aws_shapes
from multimodal.classifier import hyperparameters as hp
from multimodal.classifier.hyperparameters import SPEC_PATH, declarations
from sagemaker_tree import ROOT, TRAIN, make_tree, run_train
from synthetic import make_frame, with_image_files

FAST_HP = {"quality": "toy", "n_mins": "1", "num_folds": "2", "n_epochs": "40", "learning_rate": "0.01"}
METRICS = json.loads((ROOT / "metric_definitions.json").read_text())


def headline(root: Path) -> str:
    return (root / "output" / "failure").read_text().splitlines()[0]


def test_two_train_files_a_validation_channel_and_json_encoded_hyperparameters(tmp_path):
    frame = make_frame(60)
    encoded = {name: json.dumps(value) for name, value in FAST_HP.items()}   # as SDK framework estimators send
    root = make_tree(tmp_path, {"train": [frame.iloc[:30], frame.iloc[30:]], "validation": [make_frame(21, seed=2)]},
                     encoded)
    result = run_train(root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not (root / "output" / "failure").exists()
    config = json.loads((root / "model" / "model_config.json").read_text())
    assert config["training"]["rows"] == 60 and config["hyperparameters"]["quality"] == "toy"
    data = root / "output" / "data"
    metrics = json.loads((data / "metrics.json").read_text())
    assert metrics["validation"]["source"] == "validation channel"
    assert metrics["validation"]["blend"]["rows"] == 21
    assert set(metrics["validation"]["members"]) == {"text", "num", "cat", "joint", "img/photo_image"}
    assert set(metrics["validation"]["modality_importance"]) == {"text", "num", "cat", "img/photo_image"}
    assert "modality contributions (each shuffled on the 21 validation rows)" in result.stdout
    attribution = metrics["validation"]["modality_attribution"]
    assert set(attribution) == {"baseline", "text", "num", "cat", "img/photo_image"}
    assert all(attribution[name]["mean_abs"] >= abs(attribution[name]["mean"]) for name in attribution
               if name != "baseline")
    assert "modality attributions (exact Shapley values" in result.stdout
    assert (data / "modality_attribution.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(metrics["train"]["members"]) == {"text", "num", "cat", "joint", "img/photo_image"}
    assert sum(metrics["train"]["blend"].values()) == pytest.approx(1.0) and "blend weights" in result.stdout
    assert (data / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (data / "leaderboards").iterdir()) == \
        ["cat.csv", "img__photo_image.csv", "joint.csv", "num.csv", "text.csv"]
    for definition in METRICS["MetricDefinitions"]:
        values = re.findall(definition["Regex"], result.stdout)
        assert len(values) == 1, f"{definition['Name']}: {values}"
        assert 0.0 <= float(values[0]) < 100
    assert float(re.findall(r"validation:accuracy=([0-9.]+);", result.stdout)[0]) == \
        pytest.approx(metrics["validation"]["blend"]["accuracy"], abs=1e-6)
    for phase in ("channel 'train' (File mode): 60 rows from 2 source(s)", "embedded", "member 'text': fitted",
                  "fusion network", "training job done"):
        assert phase in result.stdout


def test_pipe_mode_streams_the_csv_and_reports_the_fusion_hold_out(tmp_path):
    frame = make_frame(45, seed=6).drop(columns=["photo_image"])
    root = make_tree(tmp_path, {}, FAST_HP)
    (root / "input" / "config" / "inputdataconfig.json").write_text(json.dumps(
        {"train": {"ContentType": "text/csv", "TrainingInputMode": "Pipe", "S3DistributionType": "FullyReplicated"}}))
    pipe = root / "input" / "data" / "train_0"
    pipe.parent.mkdir(parents=True)
    os.mkfifo(pipe)

    def feed():
        with open(pipe, "w") as handle:
            handle.write(frame.to_csv(index=False))

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    result = run_train(root)
    writer.join(timeout=5)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "channel 'train' (Pipe mode): 45 rows" in result.stdout
    metrics = json.loads((root / "output" / "data" / "metrics.json").read_text())
    assert metrics["validation"]["source"].startswith("fusion network hold-out")
    assert (root / "output" / "data" / "confusion_matrix.png").is_file()
    assert (root / "model" / "model_config.json").is_file()


def test_image_files_beside_the_csv_are_read_by_path_and_paths_leaving_the_channel_are_refused(tmp_path):
    root = make_tree(tmp_path, {"train": [], "validation": []}, FAST_HP)
    data = root / "input" / "data"
    train = with_image_files(make_frame(60), data / "train")
    train.loc[3, "photo_image"] = "../../config/hyperparameters.json"
    train.loc[4, "photo_image"] = "images/absent.jpg"
    train.to_csv(data / "train" / "part-0.csv", index=False)
    validation = with_image_files(make_frame(21, seed=2), data / "validation", folder="pictures")
    validation.to_csv(data / "validation" / "part-0.csv", index=False)
    present = int(train["photo_image"].str.startswith("images/").sum()) - 1   # one of them is absent
    result = run_train(root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert ("row 4 (ID='r0003'), column 'photo_image': '../../config/hyperparameters.json' has a '..' part; "
            "image paths stay inside the channel directory; treated as a missing image") in result.stdout
    assert "row 5 (ID='r0004'), column 'photo_image': no file 'images/absent.jpg'" in result.stdout
    assert f"column 'photo_image': embedded {present} images" in result.stdout
    metrics = json.loads((root / "output" / "data" / "metrics.json").read_text())
    assert metrics["validation"]["blend"]["rows"] == 21 and "img/photo_image" in metrics["validation"]["members"]
    in_validation = int(validation["photo_image"].str.startswith("pictures/").sum())
    assert f"column 'photo_image': embedded {in_validation} images (" in result.stdout, "read from its own channel"


def test_image_paths_in_pipe_mode_fail_before_training_naming_the_row(tmp_path):
    frame = make_frame(20)
    frame.loc[2, "photo_image"] = "images/0002.jpg"
    root = make_tree(tmp_path, {}, FAST_HP)
    (root / "input" / "config" / "inputdataconfig.json").write_text(json.dumps(
        {"train": {"ContentType": "text/csv", "TrainingInputMode": "Pipe"}}))
    pipe = root / "input" / "data" / "train_0"
    pipe.parent.mkdir(parents=True)
    os.mkfifo(pipe)
    writer = threading.Thread(target=lambda: pipe.write_text(frame.to_csv(index=False)), daemon=True)
    writer.start()
    result = run_train(root, timeout=120)
    writer.join(timeout=5)
    assert result.returncode != 0
    assert headline(root).startswith("UserError: channel 'train' (Pipe mode stream), data row 3, column "
                                     "'photo_image': 'images/0002.jpg' is an image path, but Pipe mode")
    assert not (root / "model" / "model_config.json").exists()


def test_an_augmented_manifest_in_pipe_mode_trains_on_its_objects_and_attributes(tmp_path):
    """Ground Truth's output as SageMaker streams it: one RecordIO record per listed attribute and manifest line,
    an image object's bytes for a '-ref' attribute, inputdataconfig.json without the attribute names."""
    import base64

    from multimodal.sagemaker.recordio import frame_records

    frame = make_frame(45, seed=6, missing=0.0)
    names = ["ID", "title_text", "weight_num", "photo_image-ref", "pets-job", "pets-job-metadata"]
    records = []
    for row in frame.itertuples():
        records += [json.dumps(row.ID).encode(), json.dumps(row.title_text).encode(),
                    json.dumps(row.weight_num).encode(), base64.b64decode(row.photo_image),
                    json.dumps(row.label).encode(), b'{"class-name": "x", "human-annotated": "yes"}']
    root = make_tree(tmp_path, {}, {**FAST_HP, "attribute_names": json.dumps(json.dumps(names))})
    (root / "input" / "config" / "inputdataconfig.json").write_text(json.dumps(
        {"train": {"ContentType": "application/x-recordio", "TrainingInputMode": "Pipe",
                   "S3DistributionType": "FullyReplicated", "RecordWrapperType": "RecordIO"}}))
    pipe = root / "input" / "data" / "train_0"
    pipe.parent.mkdir(parents=True)
    os.mkfifo(pipe)
    writer = threading.Thread(target=lambda: pipe.write_bytes(b"".join(frame_records(records))), daemon=True)
    writer.start()
    result = run_train(root)
    writer.join(timeout=5)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert ("augmented manifest, Pipe mode): 45 manifest lines, attributes ['ID', 'title_text', 'weight_num', "
            "'photo_image-ref', 'pets-job'] as columns ['ID', 'title_text', 'weight_num', 'photo_image', 'label'] "
            "(['pets-job-metadata'] skipped)") in result.stdout
    assert "column 'photo_image': embedded 45 images" in result.stdout
    config = json.loads((root / "model" / "model_config.json").read_text())
    assert config["schema"]["columns"] == ["ID", "title_text", "weight_num", "photo_image", "label"]
    assert sorted(config["classes"]) == sorted(set(frame["label"])), "the labelling job's attribute is the label"


def test_a_one_host_job_never_imports_ray(tmp_path):
    """Ray is for jobs on several instances: one host trains as before, without it (AutoGluon's defaults change
    when Ray is imported)."""
    root = make_tree(tmp_path, {"train": [make_frame(40).drop(columns=["photo_image"])]}, FAST_HP)
    script = ("import sys; from multimodal.sagemaker.entrypoints import train_main; code = train_main(); "
              "print('RAY IMPORTED' if 'ray' in sys.modules else 'no ray'); sys.exit(code)")
    result = run_train(root, command=[sys.executable, "-c", script])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "no ray" in result.stdout and (root / "model" / "model_config.json").is_file()


@pytest.mark.parametrize("hosts, words", [
    (["localhost", "algo-1"], "host name 'algo-1' did not resolve within 3 s"),
    (["127.0.0.1", "localhost"], "the leader 127.0.0.1 (127.0.0.1) did not accept connections on port 6379 within 3 s"),
])
def test_a_host_whose_leader_never_appears_fails_naming_it(tmp_path, monkeypatch, hosts, words):
    """A host other than the first works for the first (the leader); when the leader cannot be reached in
    $MULTIMODAL_HOST_WAIT_SECONDS the host fails with the reason, and writes no model."""
    monkeypatch.setenv("MULTIMODAL_HOST_WAIT_SECONDS", "3")
    root = make_tree(tmp_path, {"train": [make_frame(10)]})
    (root / "input" / "config" / "resourceconfig.json").write_text(json.dumps(
        {"current_host": "localhost", "hosts": hosts}))
    result = run_train(root, timeout=120)
    assert result.returncode != 0
    assert headline(root).startswith("PlatformError: ") and words in headline(root), headline(root)
    assert not any((root / "model").iterdir())


def _empty_channel(root):
    """Only markers, hidden and empty files: File mode reads every other file, whatever its name."""
    root = make_tree(root, {"train": []})
    (root / "input" / "data" / "train" / "_SUCCESS").write_text("")
    (root / "input" / "data" / "train" / ".notes.txt").write_text("not a csv")
    (root / "input" / "data" / "train" / "empty.csv").write_text("")
    return root


@pytest.mark.parametrize("build, words", [
    (lambda r: make_tree(r, {"train": [make_frame(10)]}, {"qualty": "toy"}),
     "UserError: unknown hyperparameter(s) ['qualty']; valid names: "),
    (lambda r: make_tree(r, {"train": [make_frame(10)]}, {"n_epochs": "-1"}),
     "UserError: hyperparameter 'n_epochs' must be an integer from 1 to 1000; got '-1'."),
    (_empty_channel, "UserError: channel 'train' has no data files (skipped: ['.notes.txt', '_SUCCESS', 'empty.csv']"),
    (lambda r: make_tree(r, {"validation": [make_frame(10)]}), "UserError: the 'train' channel is required"),
    (lambda r: make_tree(r, {"train": [make_frame(10)], "validation": [make_frame(5).assign(extra_num=1)]}),
     "UserError: channel 'validation' has other columns than channel 'train': extra ['extra_num'], missing []"),
    (lambda r: make_tree(r, {"train": [make_frame(10)], "testing": [make_frame(5)]}),
     "UserError: unknown channel(s) ['testing']; this algorithm takes ['train', 'validation']"),
])
def test_each_failure_writes_a_one_line_reason_and_leaves_no_model(tmp_path, build, words):
    root = build(tmp_path)
    (root / "model" / "stale.txt").write_text("left from an earlier attempt")
    result = run_train(root, timeout=120)
    assert result.returncode != 0
    first = headline(root)
    prefix, _, rest = words.partition("...")
    assert first.startswith(prefix) and rest in first, first
    assert len(first) < 1024
    assert "Traceback" in (root / "output" / "failure").read_text()
    assert not any((root / "model").iterdir()), "no half-written model is left"


def test_sigterm_stops_training_within_30_seconds_with_a_failure_message(tmp_path):
    root = make_tree(tmp_path, {"train": [make_frame(60)]}, {"quality": "toy", "n_mins": "30"})
    environment = {**os.environ, "SAGEMAKER_BASE_DIR": str(root), "MULTIMODAL_IMAGE_WEIGHTS": "random"}
    process = subprocess.Popen([TRAIN], env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(process.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while not any("member 'text': fitted" in line for line in seen):
        assert time.monotonic() < deadline and process.poll() is None, "".join(seen)[-3000:]
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    code = process.wait(timeout=30)
    assert time.monotonic() - stopped < 30
    assert code == 143
    assert headline(root).startswith("TrainingStopped: training stopped by SIGTERM")
    assert not any((root / "model").iterdir())


def test_train_on_the_environment_path_is_this_projects_entrypoint():
    text = Path(TRAIN).read_text()
    assert "from multimodal.sagemaker.entrypoints import train_main" in text, \
        "the toolkit's `train` must not shadow ours"


def test_hyperparameter_specification_is_a_valid_supported_hyperparameters_list():
    spec = json.loads(SPEC_PATH.read_text())
    member = aws_shapes.shape("TrainingSpecification").members["SupportedHyperParameters"]
    assert aws_shapes.problems(spec, member) == []
    names = [entry["Name"] for entry in spec]
    assert len(names) == len(set(names))
    assert {"n_hours", "n_mins", "n_secs", "n_epochs", "quality"} <= set(names), "the original's names stay"
    for entry in spec:
        assert not (entry.get("IsRequired") and "DefaultValue" in entry), entry["Name"]
        assert list(entry["Range"]) == [entry["Type"] + "ParameterRangeSpecification"], entry["Name"]
        declaration = declarations()[entry["Name"]]
        assert declaration.parse(entry["DefaultValue"]) is not None   # the default is inside its own range


def test_metric_definitions_and_tuning_objectives_are_valid():
    for definition in METRICS["MetricDefinitions"]:
        assert aws_shapes.problems(definition, aws_shapes.shape("MetricDefinition")) == []
        re.compile(definition["Regex"])
    names = {d["Name"] for d in METRICS["MetricDefinitions"]}
    for objective in METRICS["SupportedTuningJobObjectiveMetrics"]:
        assert aws_shapes.problems(objective, aws_shapes.shape("HyperParameterTuningJobObjective")) == []
        assert objective["MetricName"] in names


def test_strict_shape_check_catches_what_botocore_skips():
    found = aws_shapes.problems({"Name": "x" * 300, "Type": "Bogus"}, aws_shapes.shape("HyperParameterSpecification"))
    assert any("longer than 256" in p for p in found) and any("'Bogus' is not one of" in p for p in found)


def test_the_budget_counts_from_the_job_start_and_a_failing_report_keeps_the_model(tmp_path, monkeypatch, caplog):
    """In process: 6 s spent before the fit (a slow channel) come off the fit's budget; a report that fails
    after the model is saved is logged as an ERROR, and the model stays."""
    from multimodal.sagemaker import training_job
    from multimodal.sagemaker.paths import SageMakerPaths

    root = make_tree(tmp_path, {"train": [make_frame(40).drop(columns=["photo_image"])]},
                     {"quality": "toy", "n_mins": "0", "n_secs": "50", "num_folds": "2", "n_epochs": "20"})
    read = training_job.read_channels

    def slow_read(*args):
        time.sleep(6)
        return read(*args)

    def failing_report(*args):
        raise RuntimeError("the report broke")

    monkeypatch.setattr(training_job, "read_channels", slow_read)
    monkeypatch.setattr(training_job, "write_reports", failing_report)
    with caplog.at_level("INFO"):
        training_job.run_training(SageMakerPaths(root))
    budget = float(re.search(r"time budget (\d+) s", caplog.text).group(1))
    assert budget <= 44, caplog.text[-2000:]
    assert "the model is saved, but the training report failed (RuntimeError: the report broke)" in caplog.text
    assert (root / "model" / "model_config.json").is_file()


def test_a_job_with_only_n_mins_trains_the_classifiers_default(tmp_path):
    """The training job and MultimodalClassifier read their defaults from the one specification: a job that
    sets only n_mins trains exactly what MultimodalClassifier(n_mins=...) trains."""
    from multimodal import MultimodalClassifier
    from multimodal.sagemaker.paths import SageMakerPaths
    from multimodal.sagemaker.training_job import read_hyperparameters

    paths = SageMakerPaths(tmp_path)
    paths.hyperparameters_file.parent.mkdir(parents=True)
    paths.hyperparameters_file.write_text(json.dumps({"n_mins": "4", "sagemaker_region": "\"eu-west-1\""}))
    job, channel_settings = read_hyperparameters(paths)
    python = {k: v for k, v in MultimodalClassifier(n_mins=4).get_params().items()
              if k not in ("image_weights", "image_precision")}
    assert job == hp.validate(python)
    assert channel_settings == {"attribute_names": ""}, "the job's own hyperparameters, apart from the classifier's"
    assert job["quality"] == "light", "the default chosen by the accuracy study"
