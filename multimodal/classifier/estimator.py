"""``MultimodalClassifier``: the late-fusion classifier facade (fit, predict, predict_proba, save, load)."""
from __future__ import annotations

import inspect
import logging
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from multimodal.classifier import hyperparameters as hp
from multimodal.classifier.budget import TimeBudget
from multimodal.errors import NotFittedError, PlatformError, RowsWithoutData, UserError
from multimodal.classifier.features import ModalityFrames, describe_row, split_modalities
from multimodal.classifier.labels import RARE_CLASS_ROWS, LabelMap, drop_missing_labels, sentinel_labels
from multimodal.classifier.model_config import ModalityEntry, ModelConfig
from multimodal.classifier.schema import LABEL_COLUMN, Schema, infer_schema

logger = logging.getLogger(__name__)

_DEFAULTS = hp.defaults()
_RUNTIME_PARAMS = ("image_weights", "image_precision")  # how to run, not what to learn: not hyperparameters
MIN_FIT_SECONDS = 10.0
# Kept from the members' shares: the fusion network, the blend, the reports and saving the model.
FINISH_RESERVE_SECONDS = 60.0
REPORT_RESERVE_SECONDS = 10.0
FUSION_DIR = "wholistic"
JOINT_TABULAR = "tabular"  # joint_model value: one more member, fitted on all non-image columns together
JOINT_KIND = "joint"


def _modality_dir(kind: str, column: str | None, taken: set[str]) -> str:
    if column is None:
        return kind
    base = "img/" + (re.sub(r"[^A-Za-z0-9._-]", "_", column) or "column")
    name, suffix = base, 1
    while name in taken:
        suffix += 1
        name = f"{base}_{suffix}"
    taken.add(name)
    return name


def _image_setting_from_identity(name: str) -> str:
    if name.startswith("random"):
        return "random"
    if name.startswith("torchvision:"):
        return "imagenet"
    return name


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
    quality, n_hours, n_mins, n_secs, n_epochs, missing_threshold, stacking, num_folds, joint_model, eval_metric,
    validation_fraction, early_stopping_patience, blend_rounds, learning_rate, batch_size, image_batch_size, image_components, seed
        See ``hyperparameter_specification.json`` (or the README table).
    image_weights : str or None
        ResNet50 weights: ``"imagenet"``, ``"random"`` (tests and offline demos only) or a file path;
        None reads ``$MULTIMODAL_IMAGE_WEIGHTS``, else ``"imagenet"``.
    image_precision : str or None
        ResNet50 arithmetic: ``"auto"`` (bfloat16 where the CPU or GPU computes it natively, else fp32),
        ``"bf16"`` or ``"fp32"``; None reads ``$MULTIMODAL_IMAGE_PRECISION``, else ``"auto"``. A loaded
        model uses the precision it was trained with where the device allows.

    Attributes
    ----------
    classes_ : list
        The original label values, in probability-column order.
    schema_ : Schema
        The training columns and their roles.
    modalities_ : list of ModalityModel
        The fitted per-modality AutoGluon models.
    fusion_model_ : FusionNetwork
        The fitted fusion network as arrays (``multimodal.classifier.fusion.to_keras`` makes a Keras model of it).
    fusion_blend_ : FusionBlend
        What predicts: the network's and the modality models' probabilities, weighted by ensemble selection
        (``fusion_blend_.described()`` lists the weights).
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
        return hasattr(self, "fusion_model_")

    def _check_fitted(self, method: str) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__}.{method}() needs a fitted model: call fit() or load() first.")

    # -- training -------------------------------------------------------------------------------
    def fit(self, data: pd.DataFrame, time_budget: TimeBudget | None = None) -> "MultimodalClassifier":
        """Fit on a DataFrame with a ``label`` column, feature columns by suffix and an optional ``ID``.

        ``data`` is not modified; fit lets go of it once the images are embedded, so a caller that keeps
        no reference of its own (``fit(read_table())``) frees the base64 strings before AutoGluon trains.
        ``time_budget``: the budget to draw on when the caller has spent part of it already (the training
        job starts it when the job starts); default: ``n_hours``/``n_mins``/``n_secs`` from now.
        A member that cannot be trained is skipped with a warning; only when none is left does fit fail.
        Returns ``self``.
        """
        from multimodal.classifier import fusion
        from multimodal.classifier.tabular import MemberNotTrained, fit_modality

        if not isinstance(data, pd.DataFrame):
            raise UserError(f"fit() takes a pandas DataFrame; got {type(data).__name__}.")
        params = hp.validate({k: v for k, v in self.get_params().items() if k not in _RUNTIME_PARAMS})
        started = time.monotonic()
        budget = time_budget or TimeBudget(hp.time_budget_seconds(params), started)
        schema = infer_schema(data.columns)
        data = drop_missing_labels(data, LABEL_COLUMN)
        label_map = LabelMap.fit(data[LABEL_COLUMN])
        codes = label_map.encode(data[LABEL_COLUMN])
        frames = split_modalities(data, schema)
        counts = np.bincount(codes, minlength=label_map.n_classes)
        logger.info("fit: %d rows, %d classes (%s), columns: %d text, %d numeric, %d categorical, %d image; "
                    "time budget %.0f s", len(data), label_map.n_classes,
                    ", ".join(f"{c!r}: {n}" for c, n in zip(label_map.classes[:10], counts[:10])),
                    len(schema.text), len(schema.numeric), len(schema.categorical), len(schema.image),
                    budget.remaining())

        rare = [f"{c!r} ({n})" for c, n in zip(label_map.classes, counts) if n < RARE_CLASS_ROWS]
        if rare:
            logger.warning("%d class(es) with fewer than %d training rows: %s; AutoGluon may leave them out of the "
                           "modality models and their predictions will be unreliable: add rows of these classes",
                           len(rare), RARE_CLASS_ROWS, ", ".join(rare[:10]))
        embedder, image_features, projections = self._embed_training_images(frames, data, params["image_components"])
        # The base64 strings are no longer needed: without these references (and when the caller handed its
        # table over, as the training job does) they are freed before AutoGluon makes its copies.
        rows = len(data)
        frames.images.clear()
        del data
        inputs = self._modality_inputs(frames, image_features, params["joint_model"])
        work_dir = tempfile.TemporaryDirectory(prefix="multimodal-fit-")
        taken: set[str] = set()
        models, entries, train_probas = [], [], []
        planned = []
        for name, kind, columns, features, missing_fraction in inputs:
            labels = sentinel_labels(codes, missing_fraction, params["missing_threshold"], label_map.n_classes)
            if len(np.unique(labels)) < 2:
                logger.warning("modality '%s' skipped: every row has too little information (missing values)", name)
                continue
            planned.append((name, kind, columns, features, labels))
        if not planned:
            raise UserError("no modality has enough non-missing values to train on.")
        skipped = []
        for position, (name, kind, columns, features, labels) in enumerate(planned):
            remaining = max(budget.remaining(), 0.0)
            share = budget.share(len(planned) - position, reserve=min(FINISH_RESERVE_SECONDS, 0.15 * remaining))
            if share < MIN_FIT_SECONDS:
                logger.warning("time budget nearly spent: giving modality '%s' %.0f s; raise n_mins/n_hours "
                               "for better models", name, MIN_FIT_SECONDS)
                share = MIN_FIT_SECONDS
            relative = _modality_dir(kind, columns[0] if kind == "image" else None, taken)
            try:
                model, proba = fit_modality(
                    name, features, labels, label_map.n_classes, Path(work_dir.name) / relative,
                    quality=params["quality"], eval_metric=params["eval_metric"], time_limit=share,
                    stacking=params["stacking"], num_folds=params["num_folds"], seed=params["seed"],
                )
            except MemberNotTrained as error:
                shown = columns[:8] + (["..."] if len(columns) > 8 else [])
                logger.warning("member '%s' (columns %s) skipped: %s; training goes on with the other members",
                               name, shown, error)
                skipped.append(f"{name}: {error}")
                continue
            models.append(model)
            train_probas.append(proba)
            entries.append(ModalityEntry(name=name, kind=kind, columns=list(columns), path=relative,
                                         layout=model.layout,
                                         projection=_projection_file(relative) if name in projections else None))
        if not models:
            raise UserError("no member could be trained: " + "; ".join(skipped) + ". Check the columns named "
                            "(multimodal validate reports constant and empty columns) or raise the time budget.")
        fusion_inputs = np.concatenate(train_probas, axis=1)
        fusion_model, validation_rows = fusion.train_network(
            fusion_inputs, codes, label_map.n_classes, epochs=params["n_epochs"], batch_size=params["batch_size"],
            validation_fraction=params["validation_fraction"], patience=params["early_stopping_patience"],
            learning_rate=params["learning_rate"], seed=params["seed"],
            time_limit=max(30.0, budget.remaining() - REPORT_RESERVE_SECONDS),
        )
        self.schema_ = schema
        self.label_map_ = label_map
        self.classes_ = label_map.to_list()
        self.hyperparameters_ = params
        self.modalities_ = models
        self._modality_entries = entries
        self._work_dir = work_dir
        self._image_embedder = embedder
        self._projections = {name: projection for name, projection in projections.items()
                             if any(entry.name == name for entry in entries)}
        self.weights_identity_ = embedder.identity if embedder else None
        self._image_weights_setting = embedder.weights if embedder else None
        self.fusion_model_ = fusion_model
        self.fusion_blend_ = self._select_blend(fusion_model, fusion_inputs, codes, validation_rows, params)
        self.training_report_ = self._training_report(entries, fusion_inputs, codes, validation_rows, params)
        self.training_summary_ = {
            "rows": int(rows),
            "skipped_members": skipped,
            "class_counts": {str(c): int(n) for c, n in zip(label_map.classes, counts)},
            "seconds": round(time.monotonic() - started, 1),
        }
        logger.info("fit: done in %.1f s (%d modality models + fusion network)", time.monotonic() - started,
                    len(models))
        return self

    def _select_blend(self, network, fusion_inputs, codes, validation_rows, params):
        """Ensemble selection over the network and the members on the network's hold-out rows (out-of-fold
        stacking only: in-sample member probabilities are overfit on those rows and would win unfairly)."""
        from multimodal.classifier.blend import FusionBlend, describe_weights

        if params["stacking"] != "out_of_fold" or not params["blend_rounds"] or not len(validation_rows):
            return FusionBlend.network_only(network)
        members = [(entry.name, start) for entry, (start, _) in zip(self._modality_entries,
                                                                   modality_slices(self._modality_entries))]
        blend = FusionBlend.select(network, fusion_inputs[validation_rows], codes[validation_rows], members,
                                   params["blend_rounds"])
        logger.info("blend weights (ensemble selection, %d rounds on %d hold-out rows): %s", params["blend_rounds"],
                    len(validation_rows), describe_weights(blend.described()))
        return blend

    def _training_report(self, entries, fusion_inputs, codes, validation_rows, params) -> dict:
        """Metrics from training alone: each modality's training-row probabilities (out of fold by default),
        scored on the rows where it was present, the blend weights, and the blend and the network alone on the
        network's held-out split (which chose the epoch and the weights: slightly optimistic)."""
        from multimodal.classifier.importance import describe_importance, modality_importance
        from multimodal.classifier.metrics import classification_metrics

        n = self.label_map_.n_classes
        report = {"stacking": params["stacking"], "blend": self.fusion_blend_.described(), "modalities": {}}
        for entry, (start, stop) in zip(entries, modality_slices(entries)):
            block = fusion_inputs[:, start:stop]
            present = block[:, :n].sum(axis=1) > 0
            if len(entry.layout) > n:
                present &= block[:, n] < 0.5
            report["modalities"][entry.name] = classification_metrics(codes[present], block[present, :n])
        self._fusion_holdout = None
        if len(validation_rows):
            held_out = self.fusion_blend_.predict_proba(fusion_inputs[validation_rows])
            report["fusion_holdout"] = classification_metrics(codes[validation_rows], held_out)
            report["fusion_network_holdout"] = classification_metrics(
                codes[validation_rows], self.fusion_model_.predict_proba(fusion_inputs[validation_rows]))
            self._fusion_holdout = (codes[validation_rows], held_out)
            # No joint features: these rows' fusion inputs are out of fold, and the joint member predicting again
            # on shuffled training rows would use fold models that saw them (the contributions came out skewed).
            shufflers = self._importance_shufflers(fusion_inputs[validation_rows], None)
            importance = modality_importance(self.fusion_blend_.predict_proba, fusion_inputs[validation_rows],
                                             codes[validation_rows], shufflers, seed=params["seed"])
            if importance:
                report["modality_importance"] = {"source": "fusion network hold-out split", **importance}
                logger.info("modality contributions (each shuffled on the %d hold-out rows): %s",
                            len(validation_rows), describe_importance(importance))
        return report

    def modality_importance(self, data: pd.DataFrame, repeats: int = 5, seed: int = 0,
                            fusion_inputs: np.ndarray | None = None) -> dict[str, dict]:
        """Permutation importance of each modality on labelled ``data`` (see ``multimodal.classifier.importance``):
        {modality name: {"log_loss_increase", "accuracy_drop", their "_std", "rows", "repeats"}}.

        ``fusion_inputs``: those of ``data``'s rows when already computed (saves embedding the images again);
        ``data`` then must have no missing labels.
        """
        from multimodal.classifier.importance import modality_importance

        self._check_fitted("modality_importance")
        labelled = drop_missing_labels(data, LABEL_COLUMN)
        codes = self.label_map_.encode(labelled[LABEL_COLUMN])
        if fusion_inputs is None:
            fusion_inputs = self.fusion_inputs(labelled)
        elif len(fusion_inputs) != len(labelled):
            raise ValueError(f"fusion_inputs has {len(fusion_inputs)} rows; the labelled data has {len(labelled)}.")
        joint = split_modalities(labelled, self.schema_).joint_tabular()
        shufflers = self._importance_shufflers(fusion_inputs, joint[0] if joint else None)
        return modality_importance(self.fusion_blend_.predict_proba, fusion_inputs, codes, shufflers,
                                   repeats=repeats, seed=seed)

    def _importance_shufflers(self, inputs: np.ndarray, joint_features: pd.DataFrame | None) -> list:
        """One shuffler per modality. The joint member is not a modality of its own: a modality's shuffle
        recomputes the joint member's probabilities from the shuffled columns (``joint_features``: all
        non-image columns of the scored rows). Without ``joint_features`` (training rows, whose inputs are
        out of fold) the joint member is shuffled as a block of its own instead."""
        from multimodal.classifier.importance import block_shuffler

        blocks = dict(self.modality_columns())
        joint = [(model, entry) for model, entry in zip(self.modalities_, self._modality_entries)
                 if entry.kind == JOINT_KIND]
        shufflers = []
        for entry in self._modality_entries:
            own = block_shuffler(inputs, blocks[entry.name])
            if entry.kind == JOINT_KIND:
                if joint_features is None:
                    shufflers.append((entry.name, own))
                continue
            readers = [(model, reader) for model, reader in joint if set(entry.columns) <= set(reader.columns)]
            if not readers or joint_features is None:
                shufflers.append((entry.name, own))
                continue

            def shuffled(permutation, own=own, columns=entry.columns, readers=readers):
                result = own(permutation)
                features = joint_features.copy()
                for column in columns:  # column by column keeps each column's dtype (categoricals stay categorical)
                    features[column] = features[column].iloc[permutation].set_axis(features.index)
                for model, reader in readers:
                    result[:, blocks[reader.name]] = model.predict_proba(features[reader.columns])
                return result

            shufflers.append((entry.name, shuffled))
        return shufflers

    @property
    def fusion_holdout_(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(label codes, probabilities) of the rows the fusion network held out for early stopping,
        from the last ``fit`` (None after ``load`` or when nothing was held out)."""
        return getattr(self, "_fusion_holdout", None)

    def _embed_training_images(self, frames: ModalityFrames, data: pd.DataFrame, n_components: int):
        """Embed each image column, then project it to ``n_components`` principal components (0: keep all).

        Returns the embedder, {column: (features, missing mask)} and {modality name: FeatureProjection}.
        Each column's 2048-wide embeddings are dropped once projected, before the next column is embedded.
        """
        from multimodal.classifier.images import ImageEmbedder, check_not_all_undecodable, resolve_weights_setting
        from multimodal.classifier.projection import FeatureProjection

        if not frames.images:
            return None, {}, {}
        embedder = ImageEmbedder(resolve_weights_setting(self.image_weights), batch_size=self.image_batch_size,
                                 precision=self.image_precision)
        logger.info("image embedding: %s", embedder.describe())
        features, projections = {}, {}
        for column, cells in frames.images.items():
            embeddings, missing, undecodable = embedder.embed(cells.tolist(), column,
                                                              lambda row: describe_row(data, row))
            check_not_all_undecodable(column, cells.tolist(), undecodable)
            if n_components and (~missing).any():
                started = time.monotonic()
                projection = FeatureProjection.fit(embeddings, n_components, rows=~missing)
                embeddings = projection.transform(embeddings)
                projections[f"img/{column}"] = projection
                logger.info("column '%s': %d features projected to %d principal components (fitted on %d images, "
                            "%.1f%% of the variance kept) in %.1f s", column, projection.n_features_in,
                            projection.n_components, int((~missing).sum()), 100 * projection.explained_variance,
                            time.monotonic() - started)
            features[column] = (embeddings, missing)
        return embedder, features, projections

    @staticmethod
    def _modality_inputs(frames: ModalityFrames, image_features: dict, joint_model: str):
        """(name, kind, columns, features, missing fraction) of every modality present, and of the joint
        model of the non-image columns (``joint_model="tabular"``, two or more such modalities)."""
        inputs = [(kind, kind, list(frame.columns), frame, frames.missing_fraction[kind])
                  for kind, frame in frames.tabular()]
        joint = frames.joint_tabular() if joint_model == JOINT_TABULAR else None
        if joint is not None:
            frame, missing = joint
            name = "+".join(kind for kind, _ in frames.tabular())
            inputs.append((name, JOINT_KIND, list(frame.columns), frame, missing))
        for column, (embeddings, missing) in image_features.items():
            inputs.append((f"img/{column}", "image", [column], _embedding_frame(embeddings),
                           missing.astype(np.float64)))
        return inputs

    # -- prediction -------------------------------------------------------------------------------
    def predict_proba(self, data: pd.DataFrame, require_data: bool = False) -> pd.DataFrame:
        """Class probabilities: one column per original class, rows sum to 1, ``data``'s index.

        ``require_data``: raise ``RowsWithoutData`` instead of predicting rows whose every feature is missing
        (an image that cannot be decoded counts as missing), as the inference server does.
        """
        self._check_fitted("predict_proba")
        if not isinstance(data, pd.DataFrame):
            raise UserError(f"predict_proba() takes a pandas DataFrame; got {type(data).__name__}.")
        fusion_inputs = self.fusion_inputs(data, require_data=require_data)
        proba = self.fusion_blend_.predict_proba(fusion_inputs)
        return pd.DataFrame(proba, index=data.index, columns=pd.Index(self.classes_))

    def predict(self, data: pd.DataFrame) -> pd.Series:
        """The most probable original label value for each row, with ``data``'s index."""
        self._check_fitted("predict")
        return self.predict_from_proba(self.predict_proba(data))

    def predict_from_proba(self, proba: pd.DataFrame | np.ndarray) -> pd.Series:
        """The original label value with the highest probability in each row (the one place this is decided)."""
        self._check_fitted("predict_from_proba")
        index = proba.index if isinstance(proba, pd.DataFrame) else None
        return self.label_map_.decode(np.argmax(np.asarray(proba), axis=1), index=index)

    def fusion_inputs(self, data: pd.DataFrame, require_data: bool = False) -> np.ndarray:
        """The concatenated per-modality probabilities the fusion network takes, for ``data``
        (``require_data``: see ``predict_proba``)."""
        self._check_fitted("fusion_inputs")
        frames = split_modalities(data, self.schema_)
        informed = np.zeros(len(data), dtype=bool)
        for kind, _ in frames.tabular():
            informed |= frames.missing_fraction[kind] < 1.0
        parts = []
        for model, entry in zip(self.modalities_, self._modality_entries):
            if entry.kind == "image":
                column = entry.columns[0]
                embeddings, missing, _ = self._embedder().embed(frames.images[column].tolist(), column,
                                                                lambda row: describe_row(data, row))
                informed |= ~missing
                projection = self._projections.get(entry.name)
                features = _embedding_frame(projection.transform(embeddings) if projection else embeddings)
            else:
                features = _tabular_features(frames, entry)
            parts.append(model.predict_proba(features))
        if require_data and not informed.all():
            raise RowsWithoutData(np.flatnonzero(~informed))
        return np.concatenate(parts, axis=1)

    def modality_columns(self) -> list[tuple[str, slice]]:
        """Each modality's name and its columns in ``fusion_inputs`` (classes 0..n-1 first, then the sentinel)."""
        self._check_fitted("modality_columns")
        return [(entry.name, slice(start, stop))
                for entry, (start, stop) in zip(self._modality_entries, modality_slices(self._modality_entries))]

    def _embedder(self):
        if self._image_embedder is None:
            from multimodal.classifier.images import ImageEmbedder

            self._image_embedder = ImageEmbedder(self._image_weights_setting, batch_size=self.image_batch_size,
                                                 precision=self.image_precision)
        return self._image_embedder

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the model directory: one AutoGluon folder per modality, ``wholistic/`` (network and blend
        weights) and ``model_config.json``.

        ``model_config.json`` is written last, so a directory without it is incomplete.
        """
        from multimodal.classifier import fusion
        self._check_fitted("save")
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "model_config.json").unlink(missing_ok=True)
        for model, entry in zip(self.modalities_, self._modality_entries):
            target = directory / entry.path
            if Path(model.path).resolve() != target.resolve():
                if target.exists():
                    shutil.rmtree(target)
                shutil.copytree(model.path, target)
        for entry in self._modality_entries:
            if entry.projection:
                self._projections[entry.name].save(directory / entry.projection)
        network = self.fusion_model_
        weights_path = network.save(directory / FUSION_DIR)
        keras_path = fusion.save_keras(network, directory / FUSION_DIR)
        blend_path = self.fusion_blend_.save(directory / FUSION_DIR)
        config = ModelConfig(
            schema=self.schema_.to_dict(),
            classes=self.classes_,
            modalities=self._modality_entries,
            fusion={"path": f"{FUSION_DIR}/{weights_path.name}", "keras_path": f"{FUSION_DIR}/{keras_path.name}",
                    "blend_path": f"{FUSION_DIR}/{blend_path.name}", "blend": self.fusion_blend_.described(),
                    "n_inputs": network.n_inputs, "layers": network.layer_sizes,
                    "inputs": [f"{e.name}:{label}" for e in self._modality_entries for label in e.layout]},
            hyperparameters=self.hyperparameters_,
            image_weights=({**self.weights_identity_.to_dict(), "setting": self._image_weights_setting,
                            "precision": self._image_embedder.precision}
                           if self.weights_identity_ else None),
            training={**self.training_summary_, "report": self.training_report_},
        )
        config.write(directory)
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
        from multimodal.classifier.blend import FusionBlend
        from multimodal.classifier.images import ImageEmbedder
        from multimodal.classifier.projection import FeatureProjection
        from multimodal.classifier.tabular import ModalityModel

        directory = Path(path)
        config = ModelConfig.read(directory)
        model = cls(**{k: v for k, v in config.hyperparameters.items() if k in cls._param_names()})
        model.schema_ = Schema.from_dict(config.schema)
        model.label_map_ = LabelMap(tuple(config.classes))
        model.classes_ = list(config.classes)
        model.hyperparameters_ = config.hyperparameters
        model._modality_entries = config.modalities
        model.modalities_ = [ModalityModel.load(e.name, directory / e.path, e.layout) for e in config.modalities]
        model._projections = {e.name: FeatureProjection.load(directory / e.projection)
                              for e in config.modalities if e.projection}
        model._work_dir = None
        model._image_embedder = None
        model.weights_identity_ = None
        model._image_weights_setting = None
        if config.image_weights:
            recorded = config.image_weights
            setting = image_weights or recorded.get("setting") or _image_setting_from_identity(recorded["name"])
            precision = image_precision or recorded.get("precision", "fp32")
            embedder = ImageEmbedder(setting, batch_size=model.image_batch_size, precision=precision)
            if embedder.identity.sha256 != recorded["sha256"]:
                raise PlatformError(
                    f"the model was trained with ResNet50 weights {recorded['name']} (sha256 {recorded['sha256'][:12]}...) "
                    f"but {setting!r} gives {embedder.identity.name} (sha256 {embedder.identity.sha256[:12]}...); "
                    "load it with the same image weights."
                )
            model.image_weights = setting
            model.image_precision = embedder.precision
            model._image_embedder = embedder
            model._image_weights_setting = setting
            model.weights_identity_ = embedder.identity
        model.fusion_model_ = _load_fusion(directory, config)
        model.fusion_blend_ = FusionBlend.load((directory / config.fusion["path"]).parent, model.fusion_model_)
        model.training_summary_ = {k: v for k, v in config.training.items() if k != "report"}
        model.training_report_ = config.training.get("report", {})
        return model


def _load_fusion(directory: Path, config: ModelConfig):
    """The fusion network's arrays; a directory saved before ``fusion.npz`` existed has only ``fusion.keras``."""
    from multimodal.classifier.fusion_network import FusionNetwork

    path = directory / config.fusion["path"]
    if path.suffix == ".keras":
        from multimodal.classifier import fusion
        return fusion.load_keras(path.parent)
    return FusionNetwork.load(path.parent)


def _tabular_features(frames: ModalityFrames, entry: ModalityEntry) -> pd.DataFrame:
    """The features a text, numeric, categorical or joint member predicts from."""
    if entry.kind == JOINT_KIND:
        return frames.joint_tabular()[0][entry.columns]
    return {"text": frames.text, "num": frames.numeric, "cat": frames.categorical}[entry.kind]


def modality_slices(entries) -> list[tuple[int, int]]:
    """The (start, stop) columns of each modality in the fusion input."""
    slices, start = [], 0
    for entry in entries:
        slices.append((start, start + len(entry.layout)))
        start += len(entry.layout)
    return slices


def _projection_file(modality_dir: str) -> str:
    """Where an image modality's projection is saved: beside the AutoGluon folders, named after its folder."""
    return f"projections/{modality_dir.split('/', 1)[-1]}.npz"


def _embedding_frame(embeddings: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(embeddings, columns=[f"f{j:04d}" for j in range(embeddings.shape[1])])
