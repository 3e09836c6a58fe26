"""Bad training data through the real ``train`` entrypoint: every case ends with exit 0 and a logged
warning, or exit != 0 with a one-line actionable reason at the top of /opt/ml/output/failure; a model
directory is either complete or empty, never half-written."""
import json
from pathlib import Path

import pytest

from sagemaker_tree import make_tree, run_train
from synthetic import make_frame

QUICK = {"quality": "toy", "n_mins": "0", "n_secs": "40", "num_folds": "2", "n_epochs": "20"}


def _csv(frame) -> bytes:
    return frame.to_csv(index=False).encode()


def _tabular(n=40, seed=0):
    """Text, numeric and categorical columns (no image: no ResNet50 in the runs that succeed)."""
    return make_frame(n, seed=seed).drop(columns=["photo_image"])


def _tree(root: Path, *files: bytes, hyperparameters=None) -> Path:
    root = make_tree(root, {"train": []}, hyperparameters or QUICK)
    for i, content in enumerate(files):
        (root / "input" / "data" / "train" / f"part-{i}.csv").write_bytes(content)
    return root


def _with_labels(frame, labels):
    return frame.assign(label=labels)


FAILING = [
    ("no label column", lambda: [_csv(_tabular().drop(columns=["label"]))],
     "UserError: channel 'train': no 'label' column"),
    ("a single class", lambda: [_csv(_tabular().assign(label="cat"))],
     "UserError: the 'label' column has 1 distinct value(s) ['cat']; classification needs at least 2 classes."),
    ("an empty file", lambda: [b""], "channel 'train' has no data files (skipped: ['part-0.csv']"),
    ("a file of blank lines", lambda: [b"\n\n"], "part-0.csv: the file is empty"),
    ("header only", lambda: [b"ID,title_text,weight_num,label\n"], "part-0.csv: header only, no data rows"),
    ("files with different headers", lambda: [_csv(_tabular()), _csv(_tabular().drop(columns=["color_cat"]))],
     "part-1.csv has different columns than part-0.csv: extra [], missing ['color_cat']"),
    ("duplicate column names", lambda: [b"ID,x_num,x_num,label\n1,2,3,a\n2,3,4,b\n"],
     "duplicate column names ['x_num']"),
    ("not UTF-8", lambda: ["ID,a_text,label\n1,caf\xe9,x\n2,th\xe9,y\n".encode("latin-1")], "part-0.csv: not UTF-8"),
    ("a _num column with text", lambda: [_csv(_tabular().assign(age_num="ten"))],
     "UserError: part-0.csv line 2 (ID='r0000'), column 'age_num': 'ten' is not a number"),
    ("every image undecodable", lambda: [_csv(make_frame(12).assign(photo_image="bm90IGFuIGltYWdl"))],
     "UserError: column 'photo_image': none of its 12 non-empty cells is a decodable image"),
    ("all feature columns empty", lambda: [b"ID,a_text,b_num,c_cat,label\n" + b"".join(
        f"{i},,,,{'xy'[i % 2]}\n".encode() for i in range(20))],
     "UserError: no member has enough non-missing values to train on."),
    ("no feature columns", lambda: [b"ID,notes,label\n1,a,x\n2,b,y\n"],
     "no feature columns; name features with a suffix _text, _num, _cat or _image"),
    ("a label-only file with NaN labels", lambda: [b"ID,a_text,label\n1,hello,\n2,world,\n"],
     "UserError: no training rows have a value in the 'label' column."),
    ("a quote left open", lambda: [b'ID,a_text,label\n1,"never closed,x\n2,ok,y\n'], "part-0.csv line"),
    ("a row with fewer fields than the header", lambda: [b'ID,a_text,b_num,label\n1,"two\nlines",3,x\n2,ok\n'],
     "UserError: part-0.csv line 4: 2 field(s), but the header has 4 columns"),
    ("another header in mid-file", lambda: [_csv(_tabular(20)) + b"ID,label,title_text\n"],
     "UserError: part-0.csv line 22: another header in mid-stream"),
    ("every feature column constant", lambda: [b"ID,a_cat,b_num,label\n" + b"".join(
        f"{i},same,7,{'xy'[i % 2]}\n".encode() for i in range(30))],
     "UserError: no member could be trained: num: every column has the same value in every row"),
]


@pytest.mark.parametrize("files, words", [case[1:] for case in FAILING], ids=[case[0] for case in FAILING])
def test_bad_training_data_fails_with_a_one_line_reason_and_no_model(tmp_path, files, words):
    root = _tree(tmp_path, *files())
    (root / "model" / "stale.txt").write_text("left from an earlier attempt")
    result = run_train(root, timeout=300)
    assert result.returncode != 0, result.stdout[-2000:]
    failure = (root / "output" / "failure").read_text()
    first = failure.splitlines()[0]
    assert words in first and len(first) < 1024, first
    assert "Traceback" in failure, "details follow the headline"
    assert not any((root / "model").iterdir()), "no half-written model is left"


def _bom_crlf_single_row_class():
    frame = _with_labels(_tabular(41), ["cat", "dog"] * 20 + ["fish"])
    return [b"\xef\xbb\xbf" + frame.to_csv(index=False, lineterminator="\r\n").encode()]


def _nan_labels_and_a_50_mb_text_cell():
    frame = _tabular(40).astype({"label": object})
    frame.loc[[3, 17, 29], "label"] = None
    frame.loc[5, "body_text"] = "long words " * 4_600_000   # 50.6 MB in one cell
    return [_csv(frame)]


def _constant_categorical_column():
    return [_csv(_tabular(40).assign(color_cat="same"))]


def _header_repeated_files_any_name():
    frame = _tabular(40)
    return [_csv(frame.iloc[:20]) + _csv(frame.iloc[20:]), b""]   # two files as cat joins them, and an empty one


SUCCEEDING = [
    ("a constant categorical column", _constant_categorical_column,
     ["member 'cat' (columns ['color_cat']) skipped: every column has the same value in every row"], 40),
    ("two files joined with their headers, and an empty file", _header_repeated_files_any_name,
     ["read part-0.csv: 40 rows, 1 repeated header line(s) dropped"], 40),
    ("BOM, CRLF line endings and a class with a single row", _bom_crlf_single_row_class,
     ["1 class(es) with fewer than 10 training rows: 'fish' (1)"], 41),
    ("label NaN in some rows and a 50 MB text cell", _nan_labels_and_a_50_mb_text_cell,
     ["dropping 3 of 40 training rows whose 'label' is empty or missing (first: row 4 (ID='r0003'))",
      "column 'body_text': 1 text cell(s) longer than 100000 characters cut to that length (first: row 5 "
      "(ID='r0005'))"], 37),
]


# In the default suite, repeated headers are read by test_csv_input and several files by the two-train-files job.
SLOW_CASES = {"two files joined with their headers, and an empty file"}


@pytest.mark.parametrize("files, warnings, rows", [
    pytest.param(*case[1:], id=case[0], marks=[pytest.mark.slow] if case[0] in SLOW_CASES else [])
    for case in SUCCEEDING])
def test_awkward_training_data_trains_with_warnings(tmp_path, files, warnings, rows):
    root = _tree(tmp_path, *files())
    result = run_train(root, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for warning in warnings:
        assert warning in result.stdout, result.stdout[-3000:]
    assert not (root / "output" / "failure").exists()
    config = json.loads((root / "model" / "model_config.json").read_text())
    assert config["training"]["rows"] == rows


def _two_channels(root: Path, train: bytes, validation: bytes, hyperparameters=None, hosts=("algo-1",)) -> Path:
    root = make_tree(root, {"train": [], "validation": []}, hyperparameters or QUICK)
    (root / "input" / "data" / "train" / "train.csv").write_bytes(train)
    (root / "input" / "data" / "validation" / "validation.csv").write_bytes(validation)
    (root / "input" / "config" / "resourceconfig.json").write_text(json.dumps(
        {"current_host": hosts[0], "hosts": list(hosts), "network_interface_name": "eth0"}))
    return root


def test_labels_follow_one_rule_over_both_channels(tmp_path):
    """Training labels 1, 2, x are text; validation labels 1, 2 must be the same text classes, not integers."""
    frame = _tabular(60)
    train = frame.assign(label=["1", "2", "x"] * 20)
    validation = frame.iloc[:20].assign(label=["1", "2"] * 10)
    root = _two_channels(tmp_path, _csv(train), _csv(validation))
    result = run_train(root, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    metrics = json.loads((root / "output" / "data" / "metrics.json").read_text())
    assert metrics["validation"]["source"] == "validation channel" and "accuracy" in metrics["validation"]["blend"]
    assert json.loads((root / "model" / "model_config.json").read_text())["classes"] == ["1", "2", "x"]


@pytest.mark.parametrize("train_labels, validation_labels, words", [
    (["a", "b"], ["a", "c"], "channel 'validation' has label value(s) ['c'] that channel 'train' never has"),
    (["1", "2"], ["1", "01"], "label value(s) ['01']"),
])
def test_a_validation_class_training_never_saw_fails_at_the_start(tmp_path, train_labels, validation_labels, words):
    frame = _tabular(40)
    root = _two_channels(tmp_path, _csv(frame.assign(label=train_labels * 20)),
                         _csv(frame.iloc[:10].assign(label=validation_labels * 5)))
    result = run_train(root, timeout=300)
    assert result.returncode == 2
    assert words in (root / "output" / "failure").read_text().splitlines()[0]
    assert "fit:" not in result.stdout, "refused before any fit"


def test_a_sharded_validation_channel_on_several_hosts_fails_on_every_host(tmp_path):
    """Channel 'train' may be sharded (the leader gathers it); the validation report is the leader's alone, so
    a sharded validation channel would report on part of it."""
    frame = _tabular(20)
    for host in ("algo-1", "algo-2"):
        root = _two_channels(tmp_path / host, _csv(frame), _csv(frame), hosts=(host, "algo-1", "algo-2"))
        config = root / "input" / "config" / "inputdataconfig.json"
        config.write_text(json.dumps({"train": {"TrainingInputMode": "File", "S3DistributionType": "ShardedByS3Key"},
                                      "validation": {"TrainingInputMode": "File",
                                                     "S3DistributionType": "ShardedByS3Key"}}))
        result = run_train(root, timeout=300)
        assert result.returncode == 2
        assert "channel 'validation': S3DataDistributionType ShardedByS3Key on 3 instances" in \
            (root / "output" / "failure").read_text()
