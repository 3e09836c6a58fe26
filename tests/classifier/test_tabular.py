import numpy as np
import pandas as pd
import pytest

from multimodal.classifier import tabular
from multimodal.classifier.gpu import visible_gpus
from multimodal.classifier.tabular import (GPU_FAMILIES, IN_SAMPLE, OUT_OF_FOLD, MemberPredictor, fit_member,
                                           hyperparameter_preset)


def test_presets_drop_model_families_that_are_not_installed():
    preset = hyperparameter_preset("very_light")
    assert "FASTAI" not in preset and "GBM" in preset
    assert set(hyperparameter_preset("toy")) == {"NN_TORCH", "GBM", "CAT", "XGB"}


def test_with_a_gpu_the_cuda_capable_families_ask_for_it_and_the_others_do_not():
    cpu, gpu = hyperparameter_preset("default"), hyperparameter_preset("default", num_gpus=1)
    for family in GPU_FAMILIES:
        assert all(c["ag_args_fit"]["num_gpus"] == 1 for c in gpu[family] if isinstance(c, dict)), family
    assert gpu["GBM"] == cpu["GBM"] and gpu["CAT"] == cpu["CAT"]
    assert "num_gpus" not in str(cpu)
    import torch

    assert visible_gpus() == torch.cuda.device_count()


def numeric_task(n=80, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    features = pd.DataFrame({"a_num": labels * 2 + rng.normal(size=n), "b_num": rng.normal(size=n)})
    return features, labels


def test_out_of_fold_probabilities_cover_every_row_in_layout_order(tmp_path, caplog, monkeypatch):
    features, labels = numeric_task()
    labels = labels.copy()
    labels[:12] = 2                      # sentinel rows (n_classes=2)
    model, proba = fit_member("num", features, labels, 2, tmp_path / "num", quality="toy",
                                eval_metric="log_loss", time_limit=60, stacking=OUT_OF_FOLD, num_folds=2, seed=0)
    assert model.layout == [0, 1, 2]
    assert proba.shape == (80, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    in_sample = model.predict_proba(features)
    assert not np.allclose(proba, in_sample), "out-of-fold probabilities differ from in-sample ones"
    loaded = MemberPredictor.load("num", tmp_path / "num", model.layout)
    np.testing.assert_array_equal(loaded.predict_proba(features), in_sample)
    assert loaded.autogluon.model_best in loaded.autogluon.unpersist(), "the best model is kept in memory"

    monkeypatch.setattr(tabular, "PERSIST_MEMORY_FRACTION", 0.0)  # as if the machine had no memory to spare
    from_disk = MemberPredictor.load("num", tmp_path / "num", model.layout)
    assert "not kept in memory" in caplog.text and from_disk.autogluon.unpersist() == []
    np.testing.assert_array_equal(from_disk.predict_proba(features), in_sample)


def test_refit_full_keeps_the_out_of_fold_probabilities_and_predicts_with_one_model_per_family(tmp_path, caplog):
    import logging

    features, labels = numeric_task()
    options = dict(quality="toy", eval_metric="log_loss", time_limit=60, stacking=OUT_OF_FOLD, num_folds=3, seed=0)
    bagged, bagged_oof = fit_member("num", features, labels, 2, tmp_path / "bagged", **options)
    with caplog.at_level(logging.INFO):
        refit, refit_oof = fit_member("num", features, labels, 2, tmp_path / "refit", refit_full=True, **options)
    assert refit.autogluon.model_best.endswith("_FULL") and "refitted on all rows as" in caplog.text
    assert refit_oof.shape == bagged_oof.shape == (80, 2)
    assert not np.allclose(refit_oof, refit.predict_proba(features)), "the fusion inputs stay out of fold"
    names = refit.autogluon.model_names()
    assert names and all(name.endswith("_FULL") for name in names), names
    def children(predictor, name):
        return predictor.model_info(name).get("bagged_info", {}).get("num_child_models", 1)

    assert all(children(refit.autogluon, name) == 1 for name in names)
    assert any(children(bagged.autogluon, name) == 3 for name in bagged.autogluon.model_names())
    loaded = MemberPredictor.load("num", tmp_path / "refit", refit.layout)
    np.testing.assert_array_equal(loaded.predict_proba(features), refit.predict_proba(features))
    assert (loaded.predict_proba(features).argmax(1) == labels).mean() > 0.8


def test_in_sample_stacking_and_no_sentinel_layout(tmp_path):
    features, labels = numeric_task()
    model, proba = fit_member("num", features, labels, 2, tmp_path / "num", quality="toy",
                                eval_metric="accuracy", time_limit=60, stacking=IN_SAMPLE, num_folds=2, seed=0)
    assert model.layout == [0, 1]
    np.testing.assert_array_equal(proba, model.predict_proba(features))


@pytest.mark.parametrize("share", [0.02, 0.0001])
def test_a_share_too_small_for_any_model_still_gives_a_member(tmp_path, caplog, share):
    """No model of the preset finishes in the share (at 0.0001 s AutoGluon's preprocessing alone spends it and
    AutoGluon refuses to start): one quick LightGBM without a limit stands in, with a warning."""
    features, labels = numeric_task(400)
    with caplog.at_level("WARNING"):
        model, proba = fit_member("num", features, labels, 2, tmp_path / "num", quality="toy",
                                    eval_metric="log_loss", time_limit=share, stacking=OUT_OF_FOLD, num_folds=2,
                                    seed=0)
    assert "fitting one quick LightGBM without a limit instead" in caplog.text
    names = model.autogluon.model_names()
    assert any(n.startswith("LightGBM") for n in names) and all(n.startswith(("LightGBM", "WeightedEnsemble"))
                                                                 for n in names), names
    assert proba.shape == (400, 2)


def test_members_that_cannot_be_trained_say_why(tmp_path):
    import pytest

    from multimodal.classifier.tabular import MemberNotTrained

    features, labels = numeric_task(60)
    with pytest.raises(MemberNotTrained, match=r"every column has the same value in every row .*\['a_num', 'b_num'\]"):
        fit_member("num", features.assign(a_num=1.0, b_num=0.0), labels, 2, tmp_path / "a", quality="toy",
                     eval_metric="log_loss", time_limit=20, stacking=IN_SAMPLE, num_folds=2, seed=0)
    with pytest.raises(MemberNotTrained, match="single label value"):
        fit_member("num", features, np.zeros(60, dtype=int), 2, tmp_path / "b", quality="toy",
                     eval_metric="log_loss", time_limit=20, stacking=IN_SAMPLE, num_folds=2, seed=0)


def test_chinese_text_without_spaces_trains_a_text_member(tmp_path):
    """Text written without spaces gave AutoGluon no n-gram feature at all ("No valid features"); its character
    runs now reach it as bigrams."""
    from multimodal.classifier.features import split_modalities
    from multimodal.classifier.schema import infer_schema

    rng = np.random.default_rng(0)
    good, bad = ["质量很好非常满意", "物流很快推荐购买", "手机好用屏幕清晰"], ["质量太差了不推荐", "物流很慢非常失望", "屏幕坏了要退货"]
    labels = np.arange(300) % 2
    reviews = ["".join(rng.choice(good if label else bad, 2)) + "。" for label in labels]
    frame = pd.DataFrame({"review_text": reviews, "label": labels})
    text = split_modalities(frame, infer_schema(frame.columns)).text
    model, proba = fit_member("text", text, labels, 2, tmp_path / "text", quality="toy", eval_metric="log_loss",
                                time_limit=60, stacking=IN_SAMPLE, num_folds=2, seed=0)
    assert (proba.argmax(axis=1) == labels).mean() > 0.9


def test_loaded_forests_predict_on_one_thread(tmp_path):
    """joblib's thread hand-offs cost a forest about 100 ms per call whatever the rows: loaded members' random
    forests and extra trees predict on one thread, with the same probabilities."""
    from autogluon.tabular import TabularPredictor

    features, labels = numeric_task()
    data = features.assign(**{tabular.LABEL: labels})
    predictor = TabularPredictor(label=tabular.LABEL, path=str(tmp_path / "rf"), verbosity=0).fit(
        data, hyperparameters={"RF": {"n_estimators": 20}, "XT": {"n_estimators": 20}})
    before = predictor.predict_proba(features, as_multiclass=True).to_numpy()
    loaded = MemberPredictor.load("num", tmp_path / "rf", [0, 1])
    forests = [child.model for model in loaded.autogluon._trainer.models.values()
               for child in (getattr(model, "models", None) or [model]) if hasattr(child.model, "estimators_")]
    assert forests and all(forest.n_jobs == 1 for forest in forests)
    np.testing.assert_allclose(loaded.predict_proba(features), before, atol=1e-6)
