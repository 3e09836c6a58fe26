"""The project's promises to a new user: the README's two commands, CI, the demo data and the demo job."""
import json
import re
from pathlib import Path

import pandas as pd

from multimodal.tooling import cli
from multimodal.classifier.hyperparameters import SPEC_PATH
from multimodal.classifier.schema import infer_schema

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DEMO_COMMAND = "scripts/demo.sh"
TEST_COMMAND = "scripts/test.sh"


def test_readme_names_the_two_setup_commands_and_ci_runs_the_test_command():
    setup = README.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^\s*(\S+\.sh)\s*$", setup, flags=re.M)
    assert commands == [DEMO_COMMAND, TEST_COMMAND]
    assert f"bash {TEST_COMMAND}" in (ROOT / ".ci" / "run").read_text()
    for command in commands:
        assert "setup-venv.sh" in (ROOT / command).read_text(), f"{command} creates .venv when missing"


def test_readme_lists_every_hyperparameter_with_its_default():
    from multimodal.sagemaker.channels import JOB_SPEC_PATH

    for entry in json.loads(SPEC_PATH.read_text()) + json.loads(JOB_SPEC_PATH.read_text()):
        row = re.search(rf"^\| `{entry['Name']}` \|.*$", README, flags=re.M)
        assert row, f"{entry['Name']} missing from the README table"
        default = f"`{entry['DefaultValue']}`" if entry["DefaultValue"] else "(empty)"
        assert default in row.group(0), f"{entry['Name']} default differs in the README"


def test_demo_dataset_is_small_real_and_has_all_four_modalities():
    train = ROOT / "data" / "demo" / "train.csv"
    test = ROOT / "data" / "demo" / "test.csv"
    assert train.stat().st_size + test.stat().st_size < 2_000_000
    frame = pd.read_csv(train)
    schema = infer_schema(frame.columns)
    assert schema.text and schema.numeric and schema.categorical and schema.image and schema.has_id
    assert frame["label"].nunique() == 3 and len(frame) >= 300
    assert list(pd.read_csv(test, nrows=1).columns) == list(frame.columns)


def test_demo_validates_trains_and_transforms_like_sagemaker_and_prints_accuracy(tmp_path, capsys):
    for name, rows in (("train.csv", 45), ("test.csv", 15)):
        pd.read_csv(ROOT / "data" / "demo" / name, nrows=rows).to_csv(tmp_path / name, index=False)
    code = cli.main(["demo", "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"),
                     "--output", str(tmp_path / "out"), "--minutes", "1", "--image-weights", "random",
                     "--hp", "num_folds=2", "--hp", "n_epochs=10"])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    assert "OK: no problem that would fail a job" in out
    assert "test.csv: 15 records of" in out, "the held-back rows are checked as transform input"
    assert re.search(r"accuracy:\s+[01]\.\d{4} on 15 held-back rows", out)
    assert f"model:        {tmp_path / 'out' / 'training' / 'model.tar.gz'}" in out
    predictions = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert len(predictions) == 15 and list(predictions.columns) == ["ID", "label", "predicted"]
    assert predictions["ID"].tolist() == pd.read_csv(tmp_path / "test.csv")["ID"].tolist()
    assert (tmp_path / "out" / "training" / "opt_ml" / "model" / "model_config.json").is_file()
    assert (tmp_path / "out" / "transform-output" / "test.csv.out").is_file()


def test_cli_reports_user_errors_in_one_line(tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("a_num,label\nx,1\ny,2\n")
    code = cli.main(["demo", "--train", str(tmp_path / "bad.csv"), "--test", str(tmp_path / "bad.csv"),
                     "--image-weights", "random", "--output", str(tmp_path / "out")])
    assert code == 2
    out = capsys.readouterr().out
    assert "ERROR   bad.csv: bad.csv line 2, column 'a_num': 'x' is not a number" in out
    assert "UserError: the dataset fails validation: bad.csv: bad.csv line 2, column 'a_num'" in out


def test_a_regular_install_finds_its_specification_files(tmp_path):
    """`pip install .` (not editable): the files read at run time are package data, found wherever it lands."""
    import subprocess
    import sys

    target = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                            "--target", str(target), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    probe = ("import multimodal, multimodal.classifier.hyperparameters as hp; "
             "import multimodal.sagemaker.algorithm_spec as spec; "
             "assert multimodal.__file__.startswith(%r), multimodal.__file__; "
             "assert hp.declarations()['quality'].default; "
             "assert spec.create_algorithm_request('a', 't', 'i')['TrainingSpecification']['MetricDefinitions']; "
             "print('ok')") % str(target)
    run = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]
