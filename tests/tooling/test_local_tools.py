"""The local SageMaker emulation commands: validate, local-train, local-transform, local-validate-algorithm."""
import json
import re
import tarfile

import pytest

from multimodal.tooling import cli
from multimodal.tooling.containers import container_run
from multimodal.errors import PlatformError
from multimodal.tooling.local_job import lay_out_training_job, sync_checkpoints, training_invocation
from synthetic import csv_lines, make_frame

QUICK = ["--hp", "quality=toy", "--hp", "n_mins=0", "--hp", "n_secs=40", "--hp", "num_folds=2", "--hp", "n_epochs=20"]


def _members(archive):
    with tarfile.open(archive) as tar:
        return set(tar.getnames())


def test_validate_passes_a_good_dataset_and_describes_it(tmp_path, capsys):
    frame = make_frame(45)
    frame.to_csv(tmp_path / "train.csv", index=False)
    (tmp_path / "test.csv").write_text(csv_lines(make_frame(9, seed=3).drop(columns=["label"])))
    code = cli.main(["validate", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "train.csv: 45 rows, 8 columns: 2 text, 2 numeric, 1 categorical, 1 image" in out
    assert "3 classes ('cat': 15, 'dog': 15, 'fish': 15)" in out
    assert re.search(r"image missing: photo_image \d+%", out)
    assert "column 'photo_image': 20 sampled image(s) decoded" in out
    assert "test.csv: 9 records of 7 fields, as the training header without 'label'" in out
    assert out.rstrip().endswith("OK: no problem that would fail a job (0 warning(s))")


def test_validate_reports_every_problem_that_would_fail_a_job(tmp_path, capsys):
    frame = make_frame(12).assign(label="cat", notes="x")
    frame.loc[2, "title_text"] = "two\nlines"
    frame["photo_image"] = "bm90IGFuIGltYWdl"
    frame.to_csv(tmp_path / "train.csv", index=False)
    test = make_frame(4, seed=5).drop(columns=["label"]).assign(notes="x")   # inference rows keep ignored columns
    lines = csv_lines(test).splitlines()
    header = ",".join(test.columns)
    broken = [header, lines[0], lines[1] + ",extra", lines[2].replace(lines[2].split(",")[3], "1;5", 1),
              '"r9","a\nb",x,1,2,red,"",x']
    (tmp_path / "test.csv").write_text("\n".join(broken) + "\n")
    code = cli.main(["validate", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv")])
    out = capsys.readouterr().out
    assert code == 1
    errors = [line for line in out.splitlines() if line.startswith("ERROR")]
    assert any("'label' has 1 distinct value(s)" in e for e in errors), out
    assert any("12 of 12 sampled image(s) are not readable (first: data row 1" in e for e in errors), out
    assert any("line 1 is a header" in e for e in errors), out
    assert any("span several lines (first starts at line 5)" in e and "JSON Lines" in e for e in errors), out
    assert any("wrong number of fields (first: line 3 has 9, expected 8" in e for e in errors), out
    warnings = [line for line in out.splitlines() if line.startswith("warning")]
    assert any("without a feature suffix" in w and "['notes']" in w for w in warnings), out
    assert any("column 'title_text': 1 cell(s) contain line breaks" in w for w in warnings), out
    assert "FAILED: " in out


def test_validate_names_the_line_and_column_of_a_bad_number_in_the_test_file(tmp_path, capsys):
    make_frame(30).to_csv(tmp_path / "train.csv", index=False)
    test = make_frame(3, seed=4).drop(columns=["label"]).astype(object)
    test.loc[1, "age_num"] = "ten"
    (tmp_path / "test.csv").write_text(csv_lines(test))
    assert cli.main(["validate", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv")]) == 1
    assert "ERROR   test.csv: line 2, column 'age_num': 'ten' is not a number" in capsys.readouterr().out


def test_local_train_lays_out_the_tree_and_packs_the_artifacts(tmp_path, capsys):
    make_frame(45).drop(columns=["photo_image"]).to_csv(tmp_path / "train.csv", index=False)
    code = cli.main(["local-train", "--train", str(tmp_path / "train.csv"), *QUICK, "--output", str(tmp_path / "job")])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    job = tmp_path / "job"
    assert "Completed" in out and str(job / "model.tar.gz") in out
    config = job / "opt_ml" / "input" / "config"
    hyperparameters = json.loads((config / "hyperparameters.json").read_text())
    assert hyperparameters == {"quality": "toy", "n_mins": "0", "n_secs": "40", "num_folds": "2", "n_epochs": "20"}
    assert json.loads((config / "inputdataconfig.json").read_text())["train"]["TrainingInputMode"] == "File"
    assert json.loads((config / "resourceconfig.json").read_text())["hosts"] == ["algo-1"]
    assert (job / "opt_ml" / "input" / "data" / "train" / "train.csv").is_file()
    assert {"model_config.json", "text", "num", "cat", "wholistic"} <= _members(job / "model.tar.gz"), \
        "files at the top level of model.tar.gz, as /opt/ml/model holds them"
    assert {"metrics.json", "confusion_matrix.png"} <= _members(job / "output.tar.gz")
    assert "training job done" in (job / "train.log").read_text()


@pytest.mark.slow
def test_local_train_with_a_checkpoint_dir_checkpoints_each_member_and_syncs_back(tmp_path, capsys):
    make_frame(45).drop(columns=["photo_image"]).to_csv(tmp_path / "train.csv", index=False)
    checkpoints = tmp_path / "s3"
    (checkpoints / "stale-unit").mkdir(parents=True)   # no manifest: not a finished unit, never reused
    code = cli.main(["local-train", "--train", str(tmp_path / "train.csv"), *QUICK, "--output", str(tmp_path / "job"),
                     "--checkpoint-dir", str(checkpoints)])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    config = tmp_path / "job" / "opt_ml" / "input" / "config" / "checkpointconfig.json"
    assert json.loads(config.read_text()) == {"LocalPath": "/opt/ml/checkpoints"}
    log = (tmp_path / "job" / "train.log").read_text()
    assert f"checkpoints: {tmp_path / 'job' / 'opt_ml' / 'checkpoints'}" in log
    assert re.search(r"resumed 0 \(none\); computed 6 \(member-text-\w{8}, member-num-\w{8}, member-cat-\w{8}, "
                     r"member-joint-\w{8}, fusion-network, blend\)", log), log
    assert "checkpoints: cleared" in log
    assert checkpoints.is_dir() and not any(checkpoints.iterdir()), "the finished job's deletions are synced back"


def test_the_checkpoints_are_copied_in_and_synced_back_with_deletions(tmp_path):
    s3 = tmp_path / "s3"
    (s3 / "member-text").mkdir(parents=True)
    (s3 / "member-text" / "UNIT.json").write_text("{}")
    (tmp_path / "train.csv").write_text("label,a_num\n1,2\n")
    root = lay_out_training_job(tmp_path / "opt_ml", {"train": tmp_path / "train.csv"}, {}, checkpoints=s3)
    assert (root / "checkpoints" / "member-text" / "UNIT.json").read_text() == "{}"
    (root / "checkpoints" / "member-num").mkdir()
    (root / "checkpoints" / "member-num" / "x").write_bytes(b"1")
    import shutil
    shutil.rmtree(root / "checkpoints" / "member-text")
    sync_checkpoints(root, s3)
    assert sorted(p.relative_to(s3).as_posix() for p in s3.rglob("*")) == ["member-num", "member-num/x"]
    fresh = lay_out_training_job(tmp_path / "opt_ml2", {"train": tmp_path / "train.csv"}, {},
                                 checkpoints=tmp_path / "missing")
    assert (fresh / "checkpoints").is_dir() and not any((fresh / "checkpoints").iterdir())
    assert not (lay_out_training_job(tmp_path / "opt_ml3", {"train": tmp_path / "train.csv"}, {})
                / "input" / "config" / "checkpointconfig.json").exists()


def test_a_failing_local_training_job_reports_its_failure_reason_and_packs_no_model(tmp_path, capsys):
    make_frame(20).to_csv(tmp_path / "train.csv", index=False)
    code = cli.main(["local-train", "--train", str(tmp_path / "train.csv"), "--hp", "n_epochs=0",
                     "--output", str(tmp_path / "job")])
    out = capsys.readouterr().out
    assert code == 1
    assert "FailureReason: UserError: hyperparameter 'n_epochs' must be an integer from 1 to 1000; got '0'." in out
    assert not (tmp_path / "job" / "model.tar.gz").exists()


@pytest.mark.slow
def test_local_validate_algorithm_trains_then_transforms(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MULTIMODAL_IMAGE_WEIGHTS", "random")   # the training job and serve inherit it
    make_frame(45).to_csv(tmp_path / "train.csv", index=False)
    (tmp_path / "test.csv").write_text(csv_lines(make_frame(12, seed=7).drop(columns=["label"])))
    code = cli.main(["local-validate-algorithm", "--train", str(tmp_path / "train.csv"), *QUICK,
                     "--test", str(tmp_path / "test.csv"), "--output", str(tmp_path / "validation")])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    assert "validation:   Completed: training job and transform job (12 records" in out
    results = (tmp_path / "validation" / "transform-output" / "test.csv.out").read_text().splitlines()
    assert len(results) == 12 and all(line.split(",")[1] in {"cat", "dog", "fish"} for line in results)


def test_the_image_variants_run_the_images_as_sagemaker_does(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIMODAL_DOCKER", "true")   # any executable stands for the docker CLI here
    monkeypatch.setenv("MULTIMODAL_IMAGE_WEIGHTS", "random")
    command, _ = training_invocation(tmp_path, "job-1", "multimodal-training:1")
    assert command[:5] == ["true", "run", "--rm", "--name", "job-1"]
    assert command[5:7] == ["-v", f"{tmp_path.resolve()}:/opt/ml"]
    assert "TRAINING_JOB_NAME=job-1" in command and "MULTIMODAL_IMAGE_WEIGHTS=random" in command
    assert command[-2:] == ["multimodal-training:1", "train"]
    local, environment = training_invocation(tmp_path, "job-1", None)
    assert local[0].endswith("/train") and environment["SAGEMAKER_BASE_DIR"] == str(tmp_path)
    serve = container_run("multimodal-inference:1", "serve", "s1", {"/models/m": "/opt/ml/model:ro"},
                          {"SAGEMAKER_BATCH": "true"}, {50123: 8080})
    assert serve[:5] == ["true", "run", "--rm", "--name", "s1"] and serve[-2:] == ["multimodal-inference:1", "serve"]
    assert ["-v", "/models/m:/opt/ml/model:ro"] == serve[5:7] and "SAGEMAKER_BATCH=true" in serve
    assert serve[serve.index("-p") + 1] == "127.0.0.1:50123:8080"
    monkeypatch.setenv("MULTIMODAL_DOCKER", "no-such-docker-here")
    with pytest.raises(PlatformError, match="'no-such-docker-here' not found: install Docker"):
        training_invocation(tmp_path, "job-1", "multimodal-training:1")


def test_validate_checks_a_json_lines_transform_input(tmp_path, capsys):
    make_frame(30).to_csv(tmp_path / "train.csv", index=False)
    records = make_frame(3, seed=6).drop(columns=["label"]).to_dict(orient="records")
    records[1]["photo_image"] = "bm90IGFuIGltYWdl"
    records[2]["colour_cat"] = "typo"
    (tmp_path / "test.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert cli.main(["validate", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "test.jsonl: 3 JSON Lines records" in out
    assert "keys that are not training columns are ignored: ['colour_cat']" in out
    assert re.search(r"column 'photo_image': 1 of \d sampled image\(s\) are not readable \(first: line 2", out)
    (tmp_path / "bad.jsonl").write_text('{"ID": "a"}\n[1, 2]\n')
    assert cli.main(["validate", str(tmp_path / "train.csv"), "--test", str(tmp_path / "bad.jsonl")]) == 1
    assert "line 2: a JSON list, not an object keyed by column" in capsys.readouterr().out


def test_validate_reports_constant_and_empty_columns(tmp_path, capsys):
    frame = make_frame(30).drop(columns=["photo_image"]).assign(color_cat="same", weight_num="", age_num="12.0")
    frame.loc[::2, "age_num"] = "12"   # one value spelt two ways is still one value
    frame.to_csv(tmp_path / "train.csv", index=False)
    code = cli.main(["validate", str(tmp_path / "train.csv")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "column 'color_cat' has the same value 'same' in every row" in out
    assert "column 'weight_num' is empty in every row" in out
    assert "column 'age_num' has the same value '12.0' in every row" in out
    assert "every categorical column is constant or empty: training skips the categorical member" in out
    assert "every numeric column is constant or empty" in out

    frame.assign(title_text="x", body_text="y").to_csv(tmp_path / "constant.csv", index=False)
    assert cli.main(["validate", str(tmp_path / "constant.csv")]) == 1
    assert "every feature column is constant or empty in every row" in capsys.readouterr().out


def test_images_extract_then_inline_round_trips_and_inline_writes_transform_input(tmp_path, capsys):
    import pandas as pd

    frame = make_frame(10, missing=0.3)
    frame.to_csv(tmp_path / "b64.csv", index=False)
    assert cli.main(["images", "extract", str(tmp_path / "b64.csv"), "-o", str(tmp_path / "channel" / "train.csv")]) == 0
    paths = pd.read_csv(tmp_path / "channel" / "train.csv", keep_default_na=False)
    written = paths["photo_image"][paths["photo_image"] != ""]
    assert len(written) == (frame["photo_image"] != "").sum() and written.str.match(r"images/\d+-photo_image\.jpg").all()
    assert all((tmp_path / "channel" / p).is_file() for p in written)
    assert cli.main(["images", "inline", str(tmp_path / "channel" / "train.csv"), "-o", str(tmp_path / "back.csv")]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "back.csv", keep_default_na=False),
                                  pd.read_csv(tmp_path / "b64.csv", keep_default_na=False))
    capsys.readouterr()
    assert cli.main(["images", "inline", str(tmp_path / "channel" / "train.csv"), "-o", str(tmp_path / "in.csv"),
                     "--inference"]) == 0
    assert f"in.csv: 10 rows, {len(written)} image path(s) written as base64" in capsys.readouterr().out
    assert (tmp_path / "in.csv").read_text() == csv_lines(frame.drop(columns=["label"]).fillna(""))


def test_validate_checks_image_paths_inside_the_csvs_folder_and_refuses_them_in_transform_input(tmp_path, capsys):
    from synthetic import with_image_files

    channel = tmp_path / "channel"
    frame = with_image_files(make_frame(30, missing=0.0), channel)
    frame.loc[4, "photo_image"] = "../escape.jpg"
    frame.to_csv(channel / "train.csv", index=False)
    test = frame.drop(columns=["label"]).head(3)
    (tmp_path / "test.csv").write_text(csv_lines(test))
    assert cli.main(["validate", str(channel / "train.csv"), "--test", str(tmp_path / "test.csv")]) == 1
    out = capsys.readouterr().out
    assert ("column 'photo_image': 1 of 30 image path(s) cannot be read inside" in out
            and "data row 5: '../escape.jpg' has a '..' part" in out and "such images count as missing" in out)
    assert "test.csv: column 'photo_image': 3 of 3 sampled image(s) are not readable" in out
    assert "a transform job or an endpoint reads no image file; `multimodal images inline`" in out
