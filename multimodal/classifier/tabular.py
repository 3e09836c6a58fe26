"""The AutoGluon TabularPredictor of each member, trained on the member's sentinel labels.

Only this module trains or loads AutoGluon predictors. ``fit_member`` returns the fitted predictor and the training
rows' class probabilities for the fusion network: out-of-fold (AutoGluon bagging) by default, or
in-sample (the original algorithm's way) when asked.
"""
from __future__ import annotations

import contextlib
import errno
import importlib.util
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from multimodal.classifier.gpu import visible_gpus
from multimodal.errors import PlatformError, UserError

logger = logging.getLogger(__name__)

LABEL = "__label__"
OUT_OF_FOLD = "out_of_fold"
IN_SAMPLE = "in_sample"
PERSIST_MEMORY_FRACTION = 0.4  # keep a predictor's models in memory when they take less than this of what is free
# Model families that need a package this project does not install; dropped from the presets.
_OPTIONAL_FAMILIES = {"FASTAI": "fastai"}
# When no model of the preset finished within a member's share of the time budget: one quick LightGBM,
# without a time limit, so that the member still counts (the warning says to raise the budget).
FALLBACK_HYPERPARAMETERS = {"GBM": {"num_boost_round": 200}}
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


class MemberNotTrained(UserError):
    """A member that cannot be trained (no usable feature, or AutoGluon failed on it); the message says why,
    in the user's terms. The classifier skips the member and goes on with the others."""


def all_columns_constant(features: pd.DataFrame) -> bool:
    """Whether every column has a single value in every row (constant, or missing everywhere after imputation);
    stops at the first column that varies, so 2048 image features cost one comparison as a rule."""
    return all(features[c].nunique(dropna=False) <= 1 for c in features.columns)


@dataclass
class MemberPredictor:
    """A member's fitted AutoGluon predictor and the label layout of its probabilities.

    ``layout`` lists the integer labels of the probability columns this member contributes to the
    fusion input: the classes 0..n-1, then the sentinel label n when the member had rows with too
    little information.
    """

    name: str
    path: Path
    layout: list[int]
    autogluon: object   # the TabularPredictor
    leaderboard: pd.DataFrame | None = None

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Class probabilities in ``layout`` order, one row per feature row."""
        if len(features) == 0:
            return np.zeros((0, len(self.layout)), dtype=np.float32)
        proba = self.autogluon.predict_proba(features, as_multiclass=True)
        return _in_layout(proba, self.layout)

    @classmethod
    def load(cls, name: str, path: Path, layout: list[int]) -> "MemberPredictor":
        """Load a saved predictor and keep its models in memory for fast repeated predictions."""
        from autogluon.tabular import TabularPredictor

        predictor = TabularPredictor.load(str(path), verbosity=0, require_py_version_match=False)
        # AutoGluon's own memory check before persisting runs gc.collect() once per fold model (about 2.5 s
        # per predictor in a process holding torch); the size on disk is a cheap, sufficient stand-in.
        on_disk = directory_bytes(Path(path))
        available = psutil.virtual_memory().available
        if on_disk < PERSIST_MEMORY_FRACTION * available:
            predictor.persist(models="best", with_ancestors=True, max_memory=None)
            single_threaded_forests(predictor)
        else:
            logger.warning("member '%s': its models (%.0f MB on disk) are not kept in memory (%.0f MB available);"
                           " predictions read them from disk each time: give the endpoint more memory",
                           name, on_disk / 1e6, available / 1e6)
        return cls(name=name, path=path, layout=layout, autogluon=predictor)


def single_threaded_forests(predictor) -> int:
    """Let the in-memory scikit-learn models of a predictor (random forest, extra trees, k-nearest neighbours)
    predict on one thread; returns how many were changed. They were fitted with ``n_jobs`` = the cores, and
    joblib then costs about 100 ms per call in thread hand-offs and its polling sleeps, whatever the number of
    rows: most of a single-record prediction. On one thread they predict thousands of rows in milliseconds."""
    changed = 0
    for model in getattr(predictor, "_trainer").models.values():
        for child in getattr(model, "models", None) or [model]:
            estimator = getattr(child, "model", None)
            if getattr(estimator, "n_jobs", None) not in (None, 1) and hasattr(estimator, "predict_proba"):
                estimator.n_jobs = 1
                changed += 1
    return changed


def directory_bytes(path: Path) -> int:
    """The size of the files under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _in_layout(proba: pd.DataFrame, layout: list[int]) -> np.ndarray:
    columns = {int(c): proba[c].to_numpy(dtype=np.float32) for c in proba.columns}
    zeros = np.zeros(len(proba), dtype=np.float32)
    return np.column_stack([columns.get(label, zeros) for label in layout])


def fit_member(
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
    refit_full: bool = False,
) -> tuple[MemberPredictor, np.ndarray]:
    """Fit one member's predictor; return it and the training rows' probabilities (see module doc).

    ``refit_full`` (with out-of-fold stacking): once the out-of-fold probabilities are taken, the best model is
    fitted again on all rows (AutoGluon's ``refit_full``), and that one model predicts instead of one per fold;
    the bagged fit gets ``num_folds / (num_folds + 1)`` of ``time_limit``, leaving the rest for the refit.
    Raises ``MemberNotTrained`` when the member cannot be trained: every column constant or missing, no
    feature left after AutoGluon's feature generation, or AutoGluon failing. When no model of the preset
    finishes within ``time_limit``, one quick LightGBM is fitted without a limit instead.
    """
    present = sorted(int(v) for v in np.unique(labels))
    if len(present) < 2:
        raise MemberNotTrained("its rows have a single label value")
    if all_columns_constant(features):
        shown = list(features.columns[:5]) + (["..."] if features.shape[1] > 5 else [])
        raise MemberNotTrained(f"every column has the same value in every row (constant or missing): {shown}")
    layout = list(range(n_classes)) + ([n_classes] if n_classes in present else [])
    if not features.index.equals(pd.RangeIndex(len(features))):
        features = features.reset_index(drop=True)
    # The label joins the features without copying them (2048 float columns per image column add up).
    data = pd.concat([features, pd.Series(labels, name=LABEL)], axis=1, copy=False)
    problem_type = "binary" if len(present) == 2 else "multiclass"
    started = time.monotonic()
    num_gpus = visible_gpus()
    fit_kwargs = dict(ag_args_fit={"random_seed": seed}, num_gpus=num_gpus, raise_on_no_models_fitted=False)
    refit_full = refit_full and stacking == OUT_OF_FOLD
    if stacking == OUT_OF_FOLD:
        fit_kwargs.update(
            num_bag_folds=num_folds, num_bag_sets=1, num_stack_levels=0,
            ag_args_ensemble={"fold_fitting_strategy": "sequential_local"},
        )
        if refit_full:
            time_limit = time_limit * num_folds / (num_folds + 1)
    try:
        predictor = _fit_predictor(data, path, problem_type, eval_metric, hyperparameter_preset(quality, num_gpus),
                                   max(0.01, time_limit), fit_kwargs)
    except MemberNotTrained as error:
        if not _ran_out_of_time(error.__cause__):
            raise
        predictor = None   # the share was spent before AutoGluon could start a model
    if predictor is None or not predictor.model_names():
        if predictor is not None and not predictor.features(feature_stage="transformed"):
            raise MemberNotTrained("AutoGluon's feature generation left no usable feature (constant, missing or "
                                   "unusable values)")
        logger.warning("member '%s': no model of quality %r finished within its %.1f s share of the time budget; "
                       "fitting one quick LightGBM without a limit instead: raise n_mins/n_hours for better models",
                       name, quality, time_limit)
        shutil.rmtree(path, ignore_errors=True)
        predictor = _fit_predictor(data, path, problem_type, eval_metric, FALLBACK_HYPERPARAMETERS, None, fit_kwargs)
        if not predictor.model_names():
            raise MemberNotTrained("AutoGluon trained no model, even without a time limit: its models found no "
                                   "feature they can use in these columns")
    model = MemberPredictor(name=name, path=path, layout=layout, autogluon=predictor)
    del data
    with _member_failures():
        if stacking == OUT_OF_FOLD:
            train_proba = _out_of_fold(predictor, features, layout)
        else:
            train_proba = model.predict_proba(features)
        best = predictor.model_best
        model.leaderboard = predictor.leaderboard(silent=True)
        score = model.leaderboard.set_index("model").loc[best, "score_val"]
        refit = _refit_on_all_rows(name, predictor, num_gpus) if refit_full else ""
        if refit:
            model.leaderboard = predictor.leaderboard(silent=True)   # with the model that predicts
        predictor.delete_models(models_to_keep="best", dry_run=False)
        predictor.save_space()
    logger.info(
        "member '%s': fitted %d rows x %d features in %.1f s (budget %.0f s); best model %s, "
        "validation %s %.4f%s; %d label values (%s)",
        name, len(features), features.shape[1], time.monotonic() - started, time_limit, best,
        eval_metric, score, refit, len(layout), "with sentinel" if len(layout) > n_classes else "no sentinel",
    )
    return model, train_proba


def _refit_on_all_rows(name: str, predictor, num_gpus: int) -> str:
    """AutoGluon's ``refit_full`` of the best model, which then predicts; the log's words for it. A refit that
    fails keeps the bagged model (a warning says so): the member is not lost."""
    started = time.monotonic()
    try:
        predictor.refit_full(model="best", set_best_to_refit_full=True, num_gpus=num_gpus)
    except Exception as error:  # noqa: BLE001 - the bagged model is still good
        logger.warning("member '%s': refit_full failed (%s: %s); its bagged models predict instead", name,
                       type(error).__name__, str(error).splitlines()[0][:200] if str(error) else "")
        return ""
    return f"; refitted on all rows as {predictor.model_best} in {time.monotonic() - started:.1f} s"


def _fit_predictor(data, path: Path, problem_type: str, eval_metric: str, hyperparameters: dict,
                   time_limit: float | None, fit_kwargs: dict):
    from autogluon.tabular import TabularPredictor

    predictor = TabularPredictor(label=LABEL, problem_type=problem_type, eval_metric=eval_metric, path=str(path),
                                 verbosity=0)
    with _member_failures():
        predictor.fit(data, hyperparameters=hyperparameters, time_limit=time_limit, **fit_kwargs)
    return predictor


def _ran_out_of_time(error: BaseException | None) -> bool:
    """Whether AutoGluon stopped because the time limit was spent (its own exception, or the assertion it makes
    when preprocessing alone used up the limit)."""
    from autogluon.core.utils.exceptions import TimeLimitExceeded

    return isinstance(error, TimeLimitExceeded) or (isinstance(error, AssertionError)
                                                    and "Not enough time left" in str(error))


@contextlib.contextmanager
def _member_failures():
    """What AutoGluon fails of while fitting or summing up a member: this member is lost, not the job. Memory
    and disk are the machine's problem, for every member alike: they stop the job with what to change."""
    try:
        yield
    except MemoryError as error:
        raise PlatformError("AutoGluon ran out of memory; use an instance type with more memory, a smaller "
                            "quality, or image_components to shrink the image features.", caused_by=error) from error
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise MemberNotTrained(f"AutoGluon failed on it ({type(error).__name__}: {error})") from error
        raise PlatformError("the disk is full: AutoGluon could not write its models; give the training job a larger "
                            "volume (VolumeSizeInGB).", caused_by=error) from error
    except Exception as error:  # noqa: BLE001 - anything else inside AutoGluon concerns this member only
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
        raise MemberNotTrained(f"AutoGluon failed on it ({type(error).__name__}: {reason})") from error


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
