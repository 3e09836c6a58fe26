"""``MultimodalClassifier``: the late-fusion classifier's facade in the scikit-learn manner (parameters,
``fit``, ``predict``, ``predict_proba``, ``evaluate``, ``save``, ``load``); the work is done by its learner
(``multimodal.classifier.learner``) and judged by ``multimodal.classifier.evaluation``."""
from __future__ import annotations

import inspect
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from multimodal.classifier import hyperparameters as hp
from multimodal.classifier.budget import TimeBudget
from multimodal.classifier.labels import RARE_CLASS_ROWS, LabelMap, drop_missing_labels
from multimodal.classifier.model_config import ModelConfig
from multimodal.classifier.schema import LABEL_COLUMN, infer_schema
from multimodal.errors import NotFittedError, UserError

logger = logging.getLogger(__name__)

_DEFAULTS = hp.defaults()
_RUNTIME_PARAMS = ("image_weights", "image_precision")  # how to run, not what to learn: not hyperparameters


class MultimodalClassifier:
    """Late-fusion classifier over text, numeric, categorical and image columns.

    One AutoGluon model per modality (and per image column) predicts the class, or an extra
    "too little information" label for rows where the modality is missing; by default one more model
    reads all non-image columns together (``joint_model``), for interactions across them; a small Keras
    network combines their probabilities, and ensemble selection blends the network with the members
    (``blend_rounds``). Keyword arguments are the algorithm's hyperparameters, as
    declared in ``hyperparameter_specification.json``, plus ``image_weights``.

    Parameters
    ----------
    quality, n_hours, n_mins, n_secs, n_epochs, missing_threshold, stacking, num_folds, refit_full, joint_model, eval_metric,
    validation_fraction, early_stopping_patience, blend_rounds, learning_rate, batch_size, image_batch_size, image_components, seed
        See ``hyperparameter_specification.json`` (or the README table).
    image_weights : str or None
        ResNet50 weights: ``"imagenet"`` (None means this), ``"random"`` (tests and offline demos only) or a
        file path. (``train`` and ``serve`` pass ``$MULTIMODAL_IMAGE_WEIGHTS``.)
    image_precision : str or None
        ResNet50 arithmetic: ``"auto"`` (None means this: bfloat16 where the CPU or GPU computes it natively,
        else fp32), ``"bf16"`` or ``"fp32"``. A loaded model uses the precision it was trained with where the
        device allows.

    Attributes
    ----------
    classes_ : list
        The original label values, in probability-column order.
    schema_ : Schema
        The training columns and their roles.
    members_ : list of Member
        The fitted AutoGluon members (``multimodal.classifier.members``): one per non-image modality, the
        joint member, one per image column.
    fusion_network_ : FusionNetwork
        The fitted fusion network as arrays (``multimodal.classifier.fusion.to_keras`` makes a Keras model of it).
    blend_ : FusionBlend
        What predicts: the network's and the members' probabilities, weighted by ensemble selection
        (``blend_.described()`` lists the weights).
    training_report_ : dict
        Metrics from training alone (``multimodal.classifier.evaluation.training_report``).
    """

    def __init__(
        self,
        *,
        quality: str = _DEFAULTS["quality"],
        n_hours: float = _DEFAULTS["n_hours"],
        n_mins: float = _DEFAULTS["n_mins"],
        n_secs: float = _DEFAULTS["n_secs"],
        n_epochs: int = _DEFAULTS["n_epochs"],
        missing_threshold: float = _DEFAULTS["missing_threshold"],
        stacking: str = _DEFAULTS["stacking"],
        num_folds: int = _DEFAULTS["num_folds"],
        refit_full: str | bool = _DEFAULTS["refit_full"],
        joint_model: str = _DEFAULTS["joint_model"],
        eval_metric: str = _DEFAULTS["eval_metric"],
        validation_fraction: float = _DEFAULTS["validation_fraction"],
        early_stopping_patience: int = _DEFAULTS["early_stopping_patience"],
        blend_rounds: int = _DEFAULTS["blend_rounds"],
        learning_rate: float = _DEFAULTS["learning_rate"],
        batch_size: int = _DEFAULTS["batch_size"],
        image_batch_size: int = _DEFAULTS["image_batch_size"],
        image_components: int = _DEFAULTS["image_components"],
        seed: int = _DEFAULTS["seed"],
        image_weights: str | None = None,
        image_precision: str | None = None,
    ):
        self.quality = quality
        self.n_hours = n_hours
        self.n_mins = n_mins
        self.n_secs = n_secs
        self.n_epochs = n_epochs
        self.missing_threshold = missing_threshold
        self.stacking = stacking
        self.num_folds = num_folds
        self.refit_full = refit_full
        self.joint_model = joint_model
        self.eval_metric = eval_metric
        self.validation_fraction = validation_fraction
        self.early_stopping_patience = early_stopping_patience
        self.blend_rounds = blend_rounds
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.image_batch_size = image_batch_size
        self.image_components = image_components
        self.seed = seed
        self.image_weights = image_weights
        self.image_precision = image_precision

    # -- scikit-learn style parameters -------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict:
        """The constructor arguments, by name."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> "MultimodalClassifier":
        """Set constructor arguments; unknown names raise ``UserError``."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise UserError(f"unknown parameter {name!r}; valid parameters: {valid}.")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items() if k in _RUNTIME_PARAMS and v is not None
                   or k in _DEFAULTS and v != _DEFAULTS[k]}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    # -- fitted state ---------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        """Whether ``fit`` or ``load`` has run."""
        return hasattr(self, "learner_")

    def _check_fitted(self, method: str) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__}.{method}() needs a fitted model: call fit() or load() first.")

    @property
    def schema_(self):
        """The training columns and their roles."""
        return self.learner_.schema

    @property
    def label_map_(self) -> LabelMap:
        return self.learner_.label_map

    @property
    def classes_(self) -> list:
        """The original label values, in probability-column order."""
        return self.learner_.label_map.to_list()

    @property
    def members_(self) -> list:
        return self.learner_.members

    @property
    def fusion_network_(self):
        return self.learner_.network

    @property
    def blend_(self):
        return self.learner_.blend

    @property
    def weights_identity_(self):
        """The ResNet50 weights' name and sha256 (None without an image member)."""
        return self.learner_.embedder.identity if self.learner_.embedder is not None else None

    @property
    def fusion_holdout_(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(label codes, blend probabilities) of the rows the fusion network held out for early stopping,
        from the last ``fit`` (None after ``load`` or when nothing was held out)."""
        return getattr(self, "_holdout", None)

    # -- training -------------------------------------------------------------------------------
    def fit(self, data: pd.DataFrame, time_budget: TimeBudget | None = None,
            checkpoint_dir: str | Path | None = None, executor=None,
            image_folder: str | Path | None = None) -> "MultimodalClassifier":
        """Fit on a DataFrame with a ``label`` column, feature columns by suffix and an optional ``ID``.

        ``data`` is not modified; fit lets go of it once the images are embedded, so a caller that keeps
        no reference of its own (``fit(read_table())``) frees the base64 strings before AutoGluon trains.
        ``time_budget``: the budget to draw on when the caller has spent part of it already (the training
        job starts it when the job starts); default: ``n_hours``/``n_mins``/``n_secs`` from now.
        ``checkpoint_dir``: where finished units of work are kept (each image column's embeddings by chunks, each
        member's fit); a fit restarted with the same directory reuses the units whose inputs have not changed and
        charges their time to the budget.
        ``executor``: where the embedding chunks and the member fits run (``multimodal.classifier.executors``;
        default: in this process, one after the other).
        ``image_folder``: the directory that image cells given as paths (``images/0001.jpg``; the rule is
        ``multimodal.classifier.image_files``) are relative to; each file is read when its batch is embedded.
        A member that cannot be trained is skipped with a warning; only when none is left does fit fail.
        Returns ``self``.
        """
        from multimodal.classifier import evaluation
        from multimodal.classifier.learner import FusionLearner, ImageSettings

        if not isinstance(data, pd.DataFrame):
            raise UserError(f"fit() takes a pandas DataFrame; got {type(data).__name__}.")
        params = hp.validate({k: v for k, v in self.get_params().items() if k not in _RUNTIME_PARAMS})
        started = time.monotonic()
        budget = time_budget or TimeBudget(hp.time_budget_seconds(params), started)
        schema = infer_schema(data.columns)
        data = drop_missing_labels(data, LABEL_COLUMN)
        label_map = LabelMap.fit(data[LABEL_COLUMN])
        codes = label_map.encode(data[LABEL_COLUMN])
        counts = np.bincount(codes, minlength=label_map.n_classes)
        rows = len(data)
        logger.info("fit: %d rows, %d classes (%s), columns: %d text, %d numeric, %d categorical, %d image; "
                    "time budget %.0f s", rows, label_map.n_classes,
                    ", ".join(f"{c!r}: {n}" for c, n in zip(label_map.classes[:10], counts[:10])),
                    len(schema.text), len(schema.numeric), len(schema.categorical), len(schema.image),
                    budget.remaining())
        rare = [f"{c!r} ({n})" for c, n in zip(label_map.classes, counts) if n < RARE_CLASS_ROWS]
        if rare:
            logger.warning("%d class(es) with fewer than %d training rows: %s; AutoGluon may leave them out of the "
                           "members and their predictions will be unreliable: add rows of these classes",
                           len(rare), RARE_CLASS_ROWS, ", ".join(rare[:10]))
        images = ImageSettings(self.image_weights, self.image_precision, self.image_batch_size,
                               _image_folder(image_folder))
        handed_over = [data]   # the learner takes the table out and lets go of it once the images are embedded
        del data
        store = None
        if checkpoint_dir is not None:
            from multimodal.classifier.checkpoints import UnitStore

            store = UnitStore(Path(checkpoint_dir))
            store.sweep()
        learner, record = FusionLearner.fit(handed_over, schema, label_map, codes, params, budget, images, store,
                                            executor)
        if store is not None:
            logger.info("%s; %.1f MB on disk", store.summary(), store.size_bytes() / 1e6)
        self.learner_ = learner
        self.hyperparameters_ = params
        self.training_report_ = evaluation.training_report(learner, record, params)
        self._holdout = evaluation.holdout(learner, record)
        self.training_summary_ = {
            "rows": int(rows),
            "skipped_members": record.skipped,
            "class_counts": {str(c): int(n) for c, n in zip(label_map.classes, counts)},
            "seconds": round(time.monotonic() - started, 1),
            "budget_seconds": round(budget.seconds, 1),
            "timings": record.timings,
        }
        logger.info("fit: done in %.1f s of a %.0f s budget (%d members + fusion network); %s",
                    time.monotonic() - started, budget.seconds, len(learner.members), describe_timings(record.timings))
        return self

    # -- prediction -------------------------------------------------------------------------------
    def predict_proba(self, data: pd.DataFrame, require_data: bool = False,
                      image_folder: str | Path | None = None) -> pd.DataFrame:
        """Class probabilities: one column per original class, rows sum to 1, ``data``'s index.

        ``require_data``: raise ``RowsWithoutData`` instead of predicting rows whose every feature is missing
        (an image that cannot be decoded counts as missing), as the inference server does.
        ``image_folder``: the directory image cells given as paths are relative to (as in ``fit``).
        """
        self._check_fitted("predict_proba")
        if not isinstance(data, pd.DataFrame):
            raise UserError(f"predict_proba() takes a pandas DataFrame; got {type(data).__name__}.")
        proba = self.learner_.blend.predict_proba(
            self.learner_.fusion_inputs(data, require_data=require_data, image_folder=_image_folder(image_folder)))
        return pd.DataFrame(proba, index=data.index, columns=pd.Index(self.classes_))

    def explain(self, data: pd.DataFrame, all_classes: bool = False, image_folder: str | Path | None = None,
                require_data: bool = False) -> pd.DataFrame:
        """Each row's prediction split exactly among its modalities: Shapley values over the modalities
        (``multimodal.classifier.explanations``), each modality missing meaning what it means in a request.

        Columns: ``predicted`` (the label), ``probability`` (of that label), ``baseline`` (its probability with
        every modality missing), and one per modality (named as in ``modality_importance``: ``text``, ``num``,
        ``cat``, ``img/<column>``); ``baseline`` plus the modality columns equals ``probability``. With
        ``all_classes``, one row per (row, class) instead, indexed by ``data``'s index and the class, with the
        same columns for that class's probability. ``image_folder``, ``require_data``: as in ``predict_proba``.
        """
        self._check_fitted("explain")
        if not isinstance(data, pd.DataFrame):
            raise UserError(f"explain() takes a pandas DataFrame; got {type(data).__name__}.")
        from multimodal.classifier.explanations import ModalityExplainer, shapley_values

        explainer = getattr(self, "_explainer", None)
        if explainer is None or explainer.learner is not self.learner_:
            explainer = self._explainer = ModalityExplainer(self.learner_)
        values = explainer.coalition_values(data, image_folder=_image_folder(image_folder), require_data=require_data)
        contributions = shapley_values(values)            # (modalities, rows, classes)
        proba, baseline = values[-1], values[0]
        predicted = proba.argmax(axis=1)
        labels = self.label_map_.decode(predicted, index=data.index)
        names = [player.name for player in explainer.players]
        if not all_classes:
            rows = np.arange(len(data))
            frame = pd.DataFrame({"predicted": labels, "probability": proba[rows, predicted],
                                  "baseline": baseline[rows, predicted]}, index=data.index)
            for name, values_of in zip(names, contributions):
                frame[name] = values_of[rows, predicted]
            return frame
        classes = self.classes_
        index = pd.MultiIndex.from_product([data.index, classes], names=[data.index.name, "class"])
        frame = pd.DataFrame({"predicted": np.repeat(labels.to_numpy(), len(classes)),
                              "probability": proba.reshape(-1), "baseline": baseline.reshape(-1)}, index=index)
        for name, values_of in zip(names, contributions):
            frame[name] = values_of.reshape(-1)
        return frame

    def warm_up(self) -> None:
        """Predict two made-up rows (every feature given; every feature missing), so that the first real
        prediction pays none of the set-up: the image network's first runs, AutoGluon's first calls, the
        image members' shared output for rows without an image."""
        self._check_fitted("warm_up")
        from multimodal.classifier.images import black_square_base64

        schema = self.schema_
        given = {**{c: "warm up" for c in schema.text}, **{c: "0" for c in schema.numeric},
                 **{c: "unknown" for c in schema.categorical}, **{c: black_square_base64() for c in schema.image}}
        columns = list(schema.inference_columns)
        frame = pd.DataFrame([{c: given.get(c, "warm-up") for c in columns}, {c: None for c in columns}],
                             columns=columns, dtype=object)
        if self.learner_.embedder is not None:
            self.learner_.embedder.warm_up()
        self.predict_proba(frame)

    def predict(self, data: pd.DataFrame, image_folder: str | Path | None = None) -> pd.Series:
        """The most probable original label value for each row, with ``data``'s index (``image_folder``: as in
        ``predict_proba``)."""
        self._check_fitted("predict")
        return self.predict_from_proba(self.predict_proba(data, image_folder=image_folder))

    def predict_from_proba(self, proba: pd.DataFrame | np.ndarray) -> pd.Series:
        """The original label value with the highest probability in each row (the one place this is decided)."""
        self._check_fitted("predict_from_proba")
        index = proba.index if isinstance(proba, pd.DataFrame) else None
        return self.label_map_.decode(np.argmax(np.asarray(proba), axis=1), index=index)

    def fusion_inputs(self, data: pd.DataFrame, require_data: bool = False,
                      image_folder: str | Path | None = None) -> np.ndarray:
        """The members' probabilities side by side, as the fusion network and the blend take them
        (``require_data``, ``image_folder``: see ``predict_proba``)."""
        self._check_fitted("fusion_inputs")
        return self.learner_.fusion_inputs(data, require_data=require_data, image_folder=_image_folder(image_folder))

    def member_columns(self) -> list[tuple[str, slice]]:
        """Each member's name and its columns in ``fusion_inputs`` (classes 0..n-1 first, then the sentinel)."""
        self._check_fitted("member_columns")
        return self.learner_.member_columns()

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self, data: pd.DataFrame, image_folder: str | Path | None = None) -> dict:
        """Metrics of the blend and of each member on labelled ``data`` (accuracy, balanced accuracy, log
        loss, macro F1, ...), and each modality's permutation importance: ``{"blend", "members",
        "modality_importance"}``. ``image_folder``: as in ``predict_proba``."""
        from multimodal.classifier import evaluation

        self._check_fitted("evaluate")
        return evaluation.evaluate(self.learner_, data, image_folder=_image_folder(image_folder))[0]

    def modality_importance(self, data: pd.DataFrame, repeats: int = 5, seed: int = 0,
                            fusion_inputs: np.ndarray | None = None,
                            image_folder: str | Path | None = None) -> dict[str, dict]:
        """Permutation importance of each modality for the final prediction on labelled ``data`` (see
        ``multimodal.classifier.importance``): {modality: {"log_loss_increase", "accuracy_drop", their "_std",
        "rows", "repeats"}}. ``fusion_inputs``: those of ``data``'s rows when already computed (saves
        embedding the images again); ``data`` then must have no missing labels. ``image_folder``: as in
        ``predict_proba``."""
        from multimodal.classifier import evaluation

        self._check_fitted("modality_importance")
        labelled = drop_missing_labels(data, LABEL_COLUMN)
        codes = self.label_map_.encode(labelled[LABEL_COLUMN])
        if fusion_inputs is None:
            fusion_inputs = self.learner_.fusion_inputs(labelled, image_folder=_image_folder(image_folder))
        elif len(fusion_inputs) != len(labelled):
            raise ValueError(f"fusion_inputs has {len(fusion_inputs)} rows; the labelled data has {len(labelled)}.")
        return evaluation.importance_on(self.learner_, labelled, codes, fusion_inputs, repeats=repeats, seed=seed)

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the model directory: one AutoGluon folder per member, ``wholistic/`` (network and blend
        weights) and ``model_config.json``, written last, so a directory without it is incomplete."""
        self._check_fitted("save")
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        self.learner_.save(directory, self.hyperparameters_, {**self.training_summary_,
                                                              "report": self.training_report_})
        logger.info("saved model to %s", directory)
        return directory

    @classmethod
    def load(cls, path: str | Path, image_weights: str | None = None,
             image_precision: str | None = None) -> "MultimodalClassifier":
        """Load a model directory written by ``save``.

        ``image_weights`` (default: the setting recorded at training) must produce the same ResNet50 weights
        as at training; different weights raise ``PlatformError``. ``image_precision`` (default: the precision
        recorded at training).
        """
        from multimodal.classifier.learner import FusionLearner, ImageSettings

        directory = Path(path)
        config = ModelConfig.read(directory)
        model = cls(**{k: v for k, v in config.hyperparameters.items() if k in cls._param_names()})
        learner = FusionLearner.load(directory, config, ImageSettings(image_weights, image_precision,
                                                                      model.image_batch_size))
        model.learner_ = learner
        model.hyperparameters_ = config.hyperparameters
        if learner.embedder is not None:
            model.image_weights = learner.weights_setting
            model.image_precision = learner.embedder.precision
        model.training_summary_ = {k: v for k, v in config.training.items() if k != "report"}
        model.training_report_ = config.training.get("report", {})
        return model


def _image_folder(value):
    """An ``ImageFolder`` from a directory (``str`` or ``Path``; an ``ImageFolder`` as it is); None stays None."""
    from multimodal.classifier.image_files import ImageFolder

    if value is None or isinstance(value, ImageFolder):
        return value
    return ImageFolder(value)


def describe_timings(timings: dict) -> str:
    """One line of where the time went: ``embedding photo_image 41 s; members text 12/48 s, num 3/45 s, ...;
    fusion network 4 s`` (each member's seconds over the share it was given)."""
    parts = []
    if timings.get("embedding"):
        parts.append("embedding " + ", ".join(f"{c} {s:.0f} s" for c, s in timings["embedding"].items()))
    members = timings.get("members", {})
    if members:
        parts.append("members " + ", ".join(
            f"{name} {'skipped' if m['seconds'] is None else format(m['seconds'], '.0f')}/{m['share']:.0f} s"
            for name, m in members.items()))
    if "fusion_network" in timings:
        parts.append(f"fusion network {timings['fusion_network']:.0f} s")
    return "; ".join(parts)
