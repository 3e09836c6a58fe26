import json
import logging
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from conftest import FAST
from multimodal import MultimodalClassifier
from multimodal.classifier import tabular
from multimodal.errors import NotFittedError, PlatformError, UserError
from sagemaker_tree import ROOT
from synthetic import make_frame


def test_predict_proba_has_one_column_per_class_and_the_input_index(fitted, test_frame):
    frame = test_frame.set_index(pd.Index([f"k{i}" for i in range(len(test_frame))]))
    proba = fitted.predict_proba(frame)
    assert list(proba.columns) == ["cat", "dog", "fish"] == fitted.classes_
    assert proba.index.equals(frame.index)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    predicted = fitted.predict(frame)
    assert predicted.index.equals(frame.index) and set(predicted) <= {"cat", "dog", "fish"}
    assert (predicted == frame["label"]).mean() >= 0.8


def test_unseen_categories_missing_values_and_extra_columns_predict(fitted, test_frame, caplog):
    frame = test_frame.drop(columns=["label"]).head(4).copy()
    frame["color_cat"] = ["purple", None, "", "red"]
    frame["photo_image"] = ["", None, frame["photo_image"].iloc[2], "not an image"]
    frame["title_text"] = None
    frame["weight_num"] = [None, "", "1.5", 2]
    frame["unrelated"] = 1
    with caplog.at_level(logging.WARNING):
        proba = fitted.predict_proba(frame)
    assert proba.shape == (4, 3) and np.isfinite(proba.to_numpy()).all()
    assert "row 4 (ID='r0003'), column 'photo_image': not a readable image" in caplog.text


def test_the_joint_member_reads_every_non_image_column(fitted, train_frame):
    members = [name for name, _ in fitted.member_columns()]
    assert members == ["text", "num", "cat", "joint", "img/photo_image"]
    joint = next(model for model in fitted.members_ if model.name == "joint")
    assert list(joint.predictor.autogluon.original_features) == [c for c in train_frame.columns
                                                       if c.endswith(("_text", "_num", "_cat"))]
    assert fitted.training_report_["members"]["joint"]["accuracy"] > 0.5


def test_rows_without_an_image_share_one_image_member_output_computed_once(fitted, test_frame, monkeypatch):
    """Missing, empty and undecodable images all get the black square's features: the image member predicts
    them once per model, and AutoGluon sees only the rows with an image; the answer is the full prediction's."""
    from multimodal.classifier.features import split_modalities

    frame = test_frame.drop(columns=["label"]).copy()
    frame.loc[frame.index[::3], "photo_image"] = ""
    frame.loc[frame.index[1], "photo_image"] = "not an image"
    member = next(m for m in fitted.members_ if m.name == "img/photo_image")
    features, missing = member.features_and_missing(split_modalities(frame, fitted.schema_))
    assert 0 < (missing == 1).sum() < len(frame)
    full = member.predict_proba(features)
    seen = []
    original = member.predictor.predict_proba
    monkeypatch.setattr(member.predictor, "predict_proba", lambda f: seen.append(len(f)) or original(f))
    member._missing_output = None
    np.testing.assert_allclose(member.predict_rows(features, missing), full, atol=1e-6)
    assert seen == [1, int((missing == 0).sum())]
    seen.clear()
    np.testing.assert_allclose(member.predict_rows(features, missing), full, atol=1e-6)
    assert seen == [int((missing == 0).sum())], "the shared output is computed once"
    seen.clear()
    member.predict_rows(features[missing == 1], missing[missing == 1])
    assert seen == [], "a batch without images never reaches AutoGluon"


def test_the_prediction_is_the_blend_of_network_and_members(fitted, test_frame):
    inputs = fitted.fusion_inputs(test_frame)
    blend = fitted.blend_
    network_proba = fitted.fusion_network_.predict_proba(inputs)
    n = len(fitted.classes_)
    expected = blend.weights[0] * network_proba
    for weight, (_, columns) in zip(blend.weights[1:], fitted.member_columns()):
        member = inputs[:, columns][:, :n]
        expected = expected + weight * member / member.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(fitted.predict_proba(test_frame).to_numpy(), expected, atol=1e-9)
    report = fitted.training_report_
    assert report["blend"] == blend.described() and sum(report["blend"].values()) == pytest.approx(1.0)
    assert {"blend_holdout", "fusion_network_holdout"} <= set(report)


def test_shuffling_a_modality_moves_the_joint_member_with_it(fitted, test_frame):
    from multimodal.classifier.evaluation import importance_shufflers
    from multimodal.classifier.features import split_modalities

    inputs = fitted.fusion_inputs(test_frame)
    blocks = dict(fitted.member_columns())
    joint_features = split_modalities(test_frame, fitted.schema_).joint_tabular()[0]
    shufflers = dict(importance_shufflers(fitted.learner_, inputs, joint_features))
    assert set(shufflers) == {"text", "num", "cat", "img/photo_image"}, "the joint member is not a modality"
    reverse = np.arange(len(test_frame))[::-1]
    columns_of = {"text": fitted.schema_.text, "num": fitted.schema_.numeric, "cat": fitted.schema_.categorical}
    for name in ("text", "num", "cat"):
        shuffled = shufflers[name](reverse)
        np.testing.assert_array_equal(shuffled[:, blocks[name]], inputs[reverse][:, blocks[name]])
        moved = test_frame.copy()
        moved[list(columns_of[name])] = test_frame[list(columns_of[name])].iloc[reverse].to_numpy()
        expected = fitted.fusion_inputs(moved)[:, blocks["joint"]]
        np.testing.assert_allclose(shuffled[:, blocks["joint"]], expected, rtol=1e-5, atol=1e-6)
        untouched = [b for n, b in blocks.items() if n not in (name, "joint")]
        for block in untouched:
            np.testing.assert_array_equal(shuffled[:, block], inputs[:, block])
    image = shufflers["img/photo_image"](reverse)
    np.testing.assert_array_equal(image[:, blocks["joint"]], inputs[:, blocks["joint"]])


def test_modality_importance_in_the_training_report_and_on_new_data(fitted, test_frame):
    names = [name for name, _ in fitted.member_columns() if name != "joint"]
    report = fitted.training_report_["modality_importance"]
    # the hold-out rows' inputs are out of fold: there the joint member is shuffled as a block of its own
    assert report["source"] == "fusion network hold-out split" and set(report) - {"source"} == {*names, "joint"}
    importance = fitted.modality_importance(test_frame)
    assert set(importance) == set(names)
    for values in importance.values():
        assert np.isfinite(values["log_loss_increase"]) and -1 <= values["accuracy_drop"] <= 1
        assert values["rows"] == len(test_frame)
    # in the synthetic frame every modality follows the label; together they carry the prediction
    assert max(v["log_loss_increase"] for v in importance.values()) > 0


def test_model_directory_layout_and_config(saved_model_dir):
    names = {p.relative_to(saved_model_dir).as_posix() for p in saved_model_dir.iterdir()}
    assert names == {"text", "num", "cat", "joint", "img", "projections", "wholistic", "model_config.json"}
    assert (saved_model_dir / "img" / "photo_image" / "predictor.pkl").is_file()
    assert {p.name for p in (saved_model_dir / "wholistic").iterdir()} == {"fusion.npz", "fusion.keras", "blend.json"}
    pickles = [p for p in saved_model_dir.rglob("*.pkl")]
    assert pickles and all(p.relative_to(saved_model_dir).parts[0] in {"text", "num", "cat", "joint", "img"} for p in pickles), \
        "pickles only inside AutoGluon's own directories"
    config = json.loads((saved_model_dir / "model_config.json").read_text())
    assert config["classes"] == ["cat", "dog", "fish"]
    assert config["schema"]["columns"][0] == "ID" and config["schema"]["image"] == ["photo_image"]
    assert config["image_weights"]["name"] == "random(seed=0)" and len(config["image_weights"]["sha256"]) == 64
    assert config["image_weights"]["precision"] in ("bf16", "fp32")
    assert config["fusion"]["path"] == "wholistic/fusion.npz" and config["fusion"]["layers"] == [14, 8, 3]
    blend = config["fusion"]["blend"]
    assert config["fusion"]["blend_path"] == "wholistic/blend.json" and sum(blend.values()) == pytest.approx(1.0)
    assert set(blend) <= {"fusion network", "text", "num", "cat", "joint", "img/photo_image"}
    assert config["hyperparameters"]["quality"] == "toy" and config["hyperparameters"]["num_folds"] == 2
    layouts = {m["name"]: m["layout"] for m in config["modalities"]}
    assert layouts["text"] == [0, 1, 2, 3] and layouts["img/photo_image"] == [0, 1, 2, 3], "sentinel label 3"
    assert layouts["num"] == [0, 1, 2] and layouts["cat"] == [0, 1, 2], "no missing rows, no sentinel"
    assert layouts["joint"] == [0, 1, 2], "no row without any non-image value"
    assert config["fusion"]["n_inputs"] == 17 and len(config["fusion"]["inputs"]) == 17
    assert config["hyperparameters"]["joint_model"] == "tabular"
    image_entry = next(m for m in config["modalities"] if m["kind"] == "image")
    assert image_entry["projection"] == "projections/photo_image.npz"
    assert all(m["projection"] is None for m in config["modalities"] if m["kind"] != "image")
    with np.load(saved_model_dir / image_entry["projection"], allow_pickle=False) as projection:
        assert projection["components"].shape == (16, 2048) and projection["mean"].shape == (2048,)
    assert {"autogluon.tabular", "tensorflow-cpu", "torch", "python"} <= set(config["versions"])


def test_load_in_a_fresh_process_gives_identical_probabilities(fitted, saved_model_dir, test_frame, tmp_path):
    expected = fitted.predict_proba(test_frame).to_numpy()
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT / "tests")!r})
        import numpy as np
        from multimodal import MultimodalClassifier
        from synthetic import make_frame
        model = MultimodalClassifier.load({str(saved_model_dir)!r})
        frame = make_frame(24, seed=1)   # the session's test_frame, rebuilt
        np.save({str(tmp_path / "proba.npy")!r}, model.predict_proba(frame).to_numpy())
        print(model.predict(frame).tolist()[:3])
        assert "tensorflow" not in sys.modules, "loading and predicting need no TensorFlow"
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "proba.npy"), expected)


def test_loading_with_other_image_weights_fails(saved_model_dir, tmp_path):
    import torch
    from torchvision.models import resnet50

    torch.manual_seed(123)
    torch.save(resnet50(weights=None).state_dict(), tmp_path / "other.pth")
    with pytest.raises(PlatformError, match="trained with ResNet50 weights random"):
        MultimodalClassifier.load(saved_model_dir, image_weights=str(tmp_path / "other.pth"))


def test_predict_before_fit_fails():
    with pytest.raises(NotFittedError, match=r"predict\(\) needs a fitted model"):
        MultimodalClassifier().predict(pd.DataFrame({"a_num": [1]}))


def test_params_follow_the_estimator_contract():
    model = MultimodalClassifier(quality="default")
    assert model.get_params()["quality"] == "default"
    assert model.set_params(n_epochs=3) is model and model.n_epochs == 3
    with pytest.raises(UserError, match="unknown parameter 'epochs'"):
        model.set_params(epochs=3)
    assert repr(model) == "MultimodalClassifier(quality='default', n_epochs=3)"


def test_integer_labels_in_sample_stacking_and_the_time_budget_split(monkeypatch):
    fit_deadlines = []
    real_fit = tabular.fit_member

    def recording_fit(*args, **kwargs):
        fit_deadlines.append(time.monotonic() + kwargs["time_limit"])
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(tabular, "fit_member", recording_fit)
    frame = make_frame(45, seed=3).drop(columns=["photo_image"])
    frame["label"] = frame["label"].map({"cat": 10, "dog": 20, "fish": 30})
    params = {**FAST, "stacking": "in_sample", "n_mins": 1, "joint_model": "none"}
    job_deadline = time.monotonic() + 60
    model = MultimodalClassifier(**params).fit(frame)
    assert model.classes_ == [10, 20, 30]
    predicted = model.predict(frame)
    assert predicted.dtype.kind == "i" and set(predicted) <= {10, 20, 30}
    assert len(fit_deadlines) == 3 and max(fit_deadlines) <= job_deadline, "each fit ends within the job's budget"
    assert [m.name for m in model.members_] == ["text", "num", "cat"], "joint_model=none: no joint member"
    assert model.blend_.described() == {"fusion network": 1.0}, "in-sample members never join the blend"


def test_an_all_empty_image_column_is_skipped_with_a_warning(caplog):
    frame = make_frame(30, seed=4)[["weight_num", "photo_image", "label"]].assign(photo_image="")
    with caplog.at_level(logging.WARNING):
        model = MultimodalClassifier(**FAST).fit(frame)
    assert "member 'img/photo_image' skipped" in caplog.text
    assert [m.name for m in model.members_] == ["num"]


@pytest.mark.parametrize("change, words", [
    (lambda f: f.drop(columns=["label"]), "no 'label' column"),
    (lambda f: f.assign(label="cat"), "at least 2 classes"),
    (lambda f: f[["ID", "label"]], "no feature columns"),
    (lambda f: f.rename(columns={"age_num": "weight_num"}), "duplicate column names ['weight_num']"),
    (lambda f: f.assign(weight_num=["1"] * 29 + ["heavy"]), "row 30 (ID='r0029'), column 'weight_num': 'heavy' is not a number"),
    (lambda f: f.assign(photo_image=["bad"] * 30), "column 'photo_image': none of its 30 non-empty cells"),
])
def test_bad_training_data_fails_early_and_clearly(change, words):
    frame = change(make_frame(30, seed=5, missing=0))
    with pytest.raises(UserError) as error:
        MultimodalClassifier(**FAST).fit(frame)
    assert words in str(error.value)


def test_bad_hyperparameter_fails_before_any_work():
    with pytest.raises(UserError, match="'stacking' must be one of"):
        MultimodalClassifier(stacking="sideways").fit(make_frame(10))


@pytest.mark.slow
def test_fit_lets_go_of_a_handed_over_table_before_autogluon_trains(monkeypatch):
    """The base64 images of the training table are freed once embedded, not held through the AutoGluon fits
    (the training job hands its table over this way)."""
    import gc
    import weakref

    real_fit = tabular.fit_member
    alive_at_fit = []

    def observed_fit(*args, **kwargs):
        gc.collect()
        alive_at_fit.append(table() is not None)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(tabular, "fit_member", observed_fit)
    tables = {"train": make_frame(30, seed=4)}
    table = weakref.ref(tables["train"])
    model = MultimodalClassifier(**{**FAST, "n_mins": 1, "image_components": 0}).fit(tables.pop("train"))
    assert alive_at_fit and not any(alive_at_fit), "the table was still alive when AutoGluon started"
    assert model.training_summary_["rows"] == 30


def test_a_model_saved_before_the_members_were_renamed_still_loads(fitted, saved_model_dir, test_frame, tmp_path):
    """Models written before issue 18 named the joint member after its modalities ("text+num+cat", in
    model_config.json and blend.json); the format is otherwise the same, so they load, predict the same and
    call the joint member "joint". (A model directory written by the code before the change was also loaded
    by hand: the same probabilities to 1e-16.)"""
    import shutil

    old = tmp_path / "old-model"
    shutil.copytree(saved_model_dir, old)
    config = json.loads((old / "model_config.json").read_text())
    for entry in config["modalities"]:
        if entry["kind"] == "joint":
            entry["name"] = "text+num+cat"
    config["fusion"]["inputs"] = [name.replace("joint:", "text+num+cat:") for name in config["fusion"]["inputs"]]
    (old / "model_config.json").write_text(json.dumps(config))
    blend = json.loads((old / "wholistic" / "blend.json").read_text())
    blend["names"] = [name.replace("joint", "text+num+cat") for name in blend["names"]]
    (old / "wholistic" / "blend.json").write_text(json.dumps(blend))
    loaded = MultimodalClassifier.load(old)
    assert [m.name for m in loaded.members_] == ["text", "num", "cat", "joint", "img/photo_image"]
    assert loaded.blend_.names == fitted.blend_.names
    np.testing.assert_array_equal(loaded.predict_proba(test_frame).to_numpy(),
                                  fitted.predict_proba(test_frame).to_numpy())


def test_the_training_summary_says_where_the_time_went(fitted):
    summary = fitted.training_summary_
    timings = summary["timings"]
    assert set(timings["members"]) == {m.name for m in fitted.members_}
    assert set(timings["embedding"]) == {"photo_image"} and timings["fusion_network"] >= 0
    for member in timings["members"].values():
        assert member["share"] > 0 and member["seconds"] is not None
    spent = sum(timings["embedding"].values()) + sum(m["seconds"] for m in timings["members"].values())
    assert spent <= summary["seconds"] <= summary["budget_seconds"] + 30
