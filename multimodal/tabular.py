"""One AutoGluon TabularPredictor per modality, trained on that modality's sentinel labels.

Only this module imports AutoGluon. ``fit_modality`` returns the fitted model and the training
rows' class probabilities for the fusion network: out-of-fold (AutoGluon bagging) by default, or
in-sample (the original algorithm's way) when asked.
"""
from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from multimodal.errors import AlgorithmError, UserError

logger = logging.getLogger(__name__)

LABEL = "__label__"
OUT_OF_FOLD = "out_of_fold"
IN_SAMPLE = "in_sample"
PERSIST_MEMORY_FRACTION = 0.4  # keep a predictor's models in memory when they take less than this of what is free
# Model families that need a package this project does not install; dropped from the presets.
_OPTIONAL_FAMILIES = {"FASTAI": "fastai"}
# Families whose installed wheels train on a CUDA GPU (LightGBM's PyPI wheel has no CUDA; CatBoost's GPU
# mode changes its defaults and results, so it stays on the CPU).
GPU_FAMILIES = ("XGB", "NN_TORCH")


def hyperparameter_preset(quality: str, num_gpus: int = 0) -> dict:
    """AutoGluon's hyperparameter preset for ``quality``, without model families that are not installed;
    with ``num_gpus`` > 0 the families in ``GPU_FAMILIES`` are given one GPU each."""
    from autogluon.tabular.configs.hyperparameter_configs import get_hyperparameter_config

    preset = get_hyperparameter_config(quality)
    for family, package in _OPTIONAL_FAMILIES.items():
        if family in preset and importlib.util.find_spec(package) is None:
            del preset[family]
    if num_gpus > 0:
        for family in GPU_FAMILIES:
            if family in preset:
                configs = preset[family] if isinstance(preset[family], list) else [preset[family]]
                preset[family] = [_with_gpu(config) for config in configs]
    return preset


def _with_gpu(config):
    if not isinstance(config, dict):  # a named configuration such as "GBMLarge": leave it as AutoGluon defines it
        return config
    ag_args_fit = {**config.get("ag_args_fit", {}), "num_gpus": 1}
    return {**config, "ag_args_fit": ag_args_fit}


def visible_gpus() -> int:
    """How many CUDA GPUs this process can use (0 on a CPU machine)."""
    from autogluon.common.utils.resource_utils import ResourceManager

    try:
        return int(ResourceManager.get_gpu_count_torch(cuda_only=True))
    except Exception:  # noqa: BLE001 - no CUDA runtime or driver means no GPU
        return 0


@dataclass
class ModalityModel:
    """A fitted per-modality AutoGluon predictor and the label layout of its probabilities.

    ``layout`` lists the integer labels of the probability columns this modality contributes to the
    fusion input: the classes 0..n-1, then the sentinel label n when the modality had missing rows.
    """

    name: str
    path: Path
    layout: list[int]
    predictor: object
    leaderboard: pd.DataFrame | None = None

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Class probabilities in ``layout`` order, one row per feature row."""
        if len(features) == 0:
            return np.zeros((0, len(self.layout)), dtype=np.float32)
        proba = self.predictor.predict_proba(features, as_multiclass=True)
        return _in_layout(proba, self.layout)

    @classmethod
    def load(cls, name: str, path: Path, layout: list[int]) -> "ModalityModel":
        """Load a saved predictor and keep its models in memory for fast repeated predictions."""
        from autogluon.tabular import TabularPredictor

        predictor = TabularPredictor.load(str(path), verbosity=0, require_py_version_match=False)
        # AutoGluon's own memory check before persisting runs gc.collect() once per fold model (about 2.5 s
        # per predictor in a process holding torch); the size on disk is a cheap, sufficient stand-in.
        on_disk = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
        available = psutil.virtual_memory().available
        if on_disk < PERSIST_MEMORY_FRACTION * available:
            predictor.persist(models="best", with_ancestors=True, max_memory=None)
        else:
            logger.warning("modality '%s': its models (%.0f MB on disk) are not kept in memory (%.0f MB available);"
                           " predictions read them from disk each time: give the endpoint more memory",
                           name, on_disk / 1e6, available / 1e6)
        return cls(name=name, path=path, layout=layout, predictor=predictor)


def _in_layout(proba: pd.DataFrame, layout: list[int]) -> np.ndarray:
    columns = {int(c): proba[c].to_numpy(dtype=np.float32) for c in proba.columns}
    zeros = np.zeros(len(proba), dtype=np.float32)
    return np.column_stack([columns.get(label, zeros) for label in layout])


def fit_modality(
    name: str,
    features: pd.DataFrame,
    labels: np.ndarray,
    n_classes: int,
    path: Path,
    *,
    quality: str,
    eval_metric: str,
    time_limit: float,
    stacking: str,
    num_folds: int,
    seed: int,
) -> tuple[ModalityModel, np.ndarray]:
    """Fit one modality's predictor; return it and the training rows' probabilities (see module doc)."""
    from autogluon.tabular import TabularPredictor

    present = sorted(int(v) for v in np.unique(labels))
    if len(present) < 2:
        raise UserError(f"modality '{name}' has a single label value; it cannot be trained.")
    layout = list(range(n_classes)) + ([n_classes] if n_classes in present else [])
    if not features.index.equals(pd.RangeIndex(len(features))):
        features = features.reset_index(drop=True)
    # The label joins the features without copying them (2048 float columns per image column add up).
    data = pd.concat([features, pd.Series(labels, name=LABEL)], axis=1, copy=False)
    problem_type = "binary" if len(present) == 2 else "multiclass"
    started = time.monotonic()
    predictor = TabularPredictor(
        label=LABEL, problem_type=problem_type, eval_metric=eval_metric, path=str(path), verbosity=0,
    )
    num_gpus = visible_gpus()
    fit_kwargs = dict(
        hyperparameters=hyperparameter_preset(quality, num_gpus),
        time_limit=max(1.0, time_limit),
        ag_args_fit={"random_seed": seed},
        num_gpus=num_gpus,
    )
    if stacking == OUT_OF_FOLD:
        fit_kwargs.update(
            num_bag_folds=num_folds, num_bag_sets=1, num_stack_levels=0,
            ag_args_ensemble={"fold_fitting_strategy": "sequential_local"},
        )
    try:
        predictor.fit(data, **fit_kwargs)
    except (ValueError, AssertionError) as error:
        raise AlgorithmError(f"AutoGluon could not fit the '{name}' modality.", caused_by=error) from error
    if not predictor.model_names():
        raise UserError(
            f"AutoGluon trained no model for modality '{name}' within {time_limit:.0f} s; raise the time budget "
            "(n_hours, n_mins, n_secs) or use a smaller quality."
        )
    model = ModalityModel(name=name, path=path, layout=layout, predictor=predictor)
    del data
    if stacking == OUT_OF_FOLD:
        train_proba = _out_of_fold(predictor, features, layout)
    else:
        train_proba = model.predict_proba(features)
    best = predictor.model_best
    model.leaderboard = predictor.leaderboard(silent=True)
    score = model.leaderboard.set_index("model").loc[best, "score_val"]
    predictor.delete_models(models_to_keep="best", dry_run=False)
    predictor.save_space()
    logger.info(
        "modality '%s': fitted %d rows x %d features in %.1f s (budget %.0f s); best model %s, "
        "validation %s %.4f; %d label values (%s)",
        name, len(features), features.shape[1], time.monotonic() - started, time_limit, best,
        eval_metric, score, len(layout), "with sentinel" if len(layout) > n_classes else "no sentinel",
    )
    return model, train_proba


def _out_of_fold(predictor, features: pd.DataFrame, layout: list[int]) -> np.ndarray:
    """Out-of-fold probabilities aligned to the training rows.

    AutoGluon drops rows of very rare classes (and may duplicate rows under log_loss); rows without
    an out-of-fold prediction fall back to the in-sample prediction.
    """
    oof = predictor.predict_proba_oof(as_multiclass=True)
    oof = oof[~oof.index.duplicated(keep="first")].reindex(features.index)
    proba = _in_layout(oof.fillna(0.0), layout)
    lacking = oof.isna().any(axis=1).to_numpy()
    if lacking.any():
        logger.info("%d rows have no out-of-fold prediction (rare classes); using in-sample ones", int(lacking.sum()))
        fallback = predictor.predict_proba(features.loc[lacking], as_multiclass=True)
        proba[lacking] = _in_layout(fallback, layout)
    return proba
