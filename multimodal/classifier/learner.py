"""The learner behind ``MultimodalClassifier``: it fits the members on their sentinel labels, drawing each
member's share from the time budget, trains the fusion network over their (out-of-fold) probabilities,
selects the blend, and predicts, saves and loads all of it. The facade holds one."""
from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from multimodal.classifier.budget import TimeBudget
from multimodal.classifier.executors import run_units
from multimodal.classifier.features import describe_row, split_modalities
from multimodal.classifier.image_files import ImageFolder, require_folder_for_paths
from multimodal.classifier.labels import LabelMap, sentinel_labels
from multimodal.classifier.members import FitOptions, Member, member_from_entry, member_slices, plan_members
from multimodal.classifier.model_config import ModelConfig
from multimodal.classifier.schema import Schema
from multimodal.errors import PlatformError, RowsWithoutData, UserError

logger = logging.getLogger(__name__)

FUSION_DIR = "wholistic"
JOINT_MODEL_ON = "tabular"   # the joint_model value that adds the joint member (the other: "none")


@dataclass
class FitRecord:
    """What the fit leaves for the training report: the fusion inputs of the training rows (out of fold by
    default), their label codes, the rows the network held out, and the members that were skipped."""

    fusion_inputs: np.ndarray
    codes: np.ndarray
    validation_rows: np.ndarray
    skipped: list[str] = field(default_factory=list)
    # Where the time went, in seconds: image embedding per column, each member's fit with the share of the
    # budget it was given, the fusion network.
    timings: dict = field(default_factory=dict)


@dataclass
class ImageSettings:
    """How images are embedded: the weights setting, the precision, the batch size and the folder that image
    cells given as paths are relative to (an ``image_files.ImageFolder``; training only)."""

    weights: str | None = None
    precision: str | None = None
    batch_size: int = 32
    folder: ImageFolder | None = None


class FusionLearner:
    """The fitted state: ``schema``, ``label_map``, ``members``, the fusion ``network`` and the ``blend``
    (what predicts), and the image ``embedder`` shared by the image members (None without images)."""

    def __init__(self, schema: Schema, label_map: LabelMap, members: list[Member], network, blend, embedder=None,
                 weights_setting: str | None = None):
        self.schema = schema
        self.label_map = label_map
        self.members = members
        self.network = network
        self.blend = blend
        self.embedder = embedder
        self.weights_setting = weights_setting
        self._work_dir = None   # the temporary directory of a fresh fit's predictors (kept alive with the learner)

    # -- training -------------------------------------------------------------------------------
    @classmethod
    def fit(cls, handed_over: list[pd.DataFrame], schema: Schema, label_map: LabelMap, codes: np.ndarray,
            params: dict, budget: TimeBudget, images: ImageSettings,
            store=None, executor=None) -> tuple["FusionLearner", FitRecord]:
        """Fit on the one table in ``handed_over`` (labelled rows only, whose labels ``label_map`` encodes as
        ``codes``), taken out of the list so that it is let go of once the images are embedded; ``params`` are
        validated hyperparameters. With ``store`` (a ``checkpoints.UnitStore``), each image column's embeddings
        (by chunks), each member's finished fit, the fusion network and the blend are kept there, and those
        already there for the same inputs are reused. ``executor`` (``multimodal.classifier.executors``) says
        where the embedding chunks and the member fits run (default: here, one after the other)."""
        from multimodal.classifier.executors import LocalExecutor
        from multimodal.classifier.fusion_units import network_or_resume

        executor = executor or LocalExecutor()
        data = handed_over.pop()
        require_folder_for_paths(data, schema.image, images.folder, lambda row: describe_row(data, row))
        frames = split_modalities(data, schema, images.folder)
        embedder = cls._embedder_for(frames, images)
        members = plan_members(frames, joint=params["joint_model"] == JOINT_MODEL_ON, embedder=embedder)
        if params["refit_full"] == "true" and params["stacking"] != "out_of_fold":
            logger.warning("refit_full=true has no effect with stacking=%s (no bagged models to refit)",
                           params["stacking"])
        options = FitOptions(quality=params["quality"], eval_metric=params["eval_metric"],
                             stacking=params["stacking"], num_folds=params["num_folds"], seed=params["seed"],
                             image_components=params["image_components"],
                             refit_full=params["refit_full"] == "true")
        features, timings = {}, {"embedding": {}, "members": {}}
        for member in [m for m in members if m.reads_images]:
            started = time.monotonic()
            features[member.name] = member.training_features(frames, options, lambda row: describe_row(data, row),
                                                             store=store, budget=budget, executor=executor)
            timings["embedding"][member.columns[0]] = round(time.monotonic() - started, 1)
        # The base64 strings are no longer needed: without these references (and when the caller handed its
        # table over, as the training job does) they are freed before AutoGluon makes its copies.
        frames.images.clear()
        del data
        for member in [m for m in members if not m.reads_images]:
            features[member.name] = member.training_features(frames, options)

        planned = []
        for member in members:
            frame, missing = features.pop(member.name)
            labels = sentinel_labels(codes, missing, params["missing_threshold"], label_map.n_classes)
            if len(np.unique(labels)) < 2:
                logger.warning("member '%s' skipped: every row has too little information (missing values)",
                               member.name)
                continue
            planned.append((member, frame, labels))
        if not planned:
            raise UserError("no member has enough non-missing values to train on.")

        work_dir = tempfile.TemporaryDirectory(prefix="multimodal-fit-")
        outcomes = _fit_members(planned, label_map.n_classes, Path(work_dir.name), budget, options, store, executor)
        fitted, train_probas, skipped = [], [], []
        for (member, _, _), (proba, seconds, error) in zip(planned, outcomes):
            timings["members"][member.name] = {"share": round(member.share, 1), "seconds": seconds}
            if error is not None:
                skipped.append(f"{member.name}: {error}")
                continue
            fitted.append(member)
            train_probas.append(proba)
        if len(executor.places) > 1:   # recorded by the executor's owner (model_config: training.distributed)
            logger.info("work per place (embedding chunks and member fits): %s", ", ".join(
                f"{place} {entry['units']} units in {entry['seconds']:.1f} s"
                for place, entry in executor.summary().items()))
        if not fitted:
            raise UserError("no member could be trained: " + "; ".join(skipped) + ". Check the columns named "
                            "(multimodal validate reports constant and empty columns) or raise the time budget.")
        fusion_inputs = np.concatenate(train_probas, axis=1)
        started = time.monotonic()
        network, validation_rows = network_or_resume(fusion_inputs, codes, label_map.n_classes, params, budget,
                                                     store)
        timings["fusion_network"] = round(time.monotonic() - started, 1)
        if not any(m.reads_images for m in fitted):
            embedder = None
        learner = cls(schema, label_map, fitted, network, None, embedder, embedder.weights if embedder else None)
        learner.blend = learner._select_blend(fusion_inputs, codes, validation_rows, params, store)
        learner._work_dir = work_dir
        return learner, FitRecord(fusion_inputs, codes, validation_rows, skipped, timings)

    @staticmethod
    def _embedder_for(frames, images: ImageSettings):
        if not frames.images:
            return None
        from multimodal.classifier.images import ImageEmbedder, resolve_weights_setting

        embedder = ImageEmbedder(resolve_weights_setting(images.weights), batch_size=images.batch_size,
                                 precision=images.precision)
        logger.info("image embedding: %s", embedder.describe())
        return embedder

    def _select_blend(self, fusion_inputs, codes, validation_rows, params, store=None):
        """Ensemble selection over the network and the members on the network's hold-out rows (out-of-fold
        stacking only: in-sample member probabilities are overfit on those rows and would win unfairly)."""
        from multimodal.classifier.blend import FusionBlend, describe_weights
        from multimodal.classifier.fusion_units import blend_or_resume

        if params["stacking"] != "out_of_fold" or not params["blend_rounds"] or not len(validation_rows):
            return FusionBlend.network_only(self.network)
        starts = [(name, columns.start) for name, columns in self.member_columns()]
        blend = blend_or_resume(self.network, fusion_inputs[validation_rows], codes[validation_rows], starts,
                                params["blend_rounds"], store)
        logger.info("blend weights (ensemble selection, %d rounds on %d hold-out rows): %s", params["blend_rounds"],
                    len(validation_rows), describe_weights(blend.described()))
        return blend

    # -- prediction -------------------------------------------------------------------------------
    def fusion_inputs(self, data: pd.DataFrame, require_data: bool = False,
                      image_folder: ImageFolder | None = None) -> np.ndarray:
        """The members' probabilities side by side, for ``data``; ``require_data``: raise ``RowsWithoutData``
        for rows whose every feature is missing (an undecodable image counts as missing); ``image_folder``:
        where image cells given as paths are read (without it, such a cell is a ``UserError``)."""
        require_folder_for_paths(data, self.schema.image, image_folder, lambda row: describe_row(data, row))
        frames = split_modalities(data, self.schema, image_folder)
        # A row is informed by any non-image value of the schema (also one whose member was skipped at
        # training: the joint member may read it) or by any member's input (an image member's usable image).
        informed = np.zeros(len(data), dtype=bool)
        for kind, _ in frames.tabular():
            informed |= frames.missing_fraction[kind] < 1.0
        parts = []
        for member in self.members:
            features, missing = member.features_and_missing(frames, lambda row: describe_row(data, row))
            informed |= missing < 1.0
            parts.append(member.predict_rows(features, missing))
        if require_data and not informed.all():
            raise RowsWithoutData(np.flatnonzero(~informed))
        return np.concatenate(parts, axis=1)

    def member_columns(self) -> list[tuple[str, slice]]:
        """Each member's name and its columns in the fusion inputs (classes 0..n-1 first, then the sentinel)."""
        return [(member.name, slice(start, stop))
                for member, (start, stop) in zip(self.members, member_slices(self.members))]

    def joint_members(self) -> list[Member]:
        """The members that read several modalities (the joint member)."""
        return [m for m in self.members if not m.is_modality]

    # -- persistence ------------------------------------------------------------------------------
    def save(self, directory: Path, hyperparameters: dict, training: dict) -> None:
        """Write every member's predictor (and projection), ``wholistic/`` (network and blend) and, last,
        ``model_config.json``."""
        from multimodal.classifier import fusion

        (directory / "model_config.json").unlink(missing_ok=True)
        for member in self.members:
            target = directory / member.path
            if Path(member.predictor.path).resolve() != target.resolve():
                if target.exists():
                    shutil.rmtree(target)
                shutil.copytree(member.predictor.path, target, copy_function=_link_or_copy)
            member.save_extras(directory)
        weights_path = self.network.save(directory / FUSION_DIR)
        keras_path = fusion.save_keras(self.network, directory / FUSION_DIR)
        blend_path = self.blend.save(directory / FUSION_DIR)
        entries = [member.entry() for member in self.members]
        ModelConfig(
            schema=self.schema.to_dict(),
            classes=self.label_map.to_list(),
            modalities=entries,
            fusion={"path": f"{FUSION_DIR}/{weights_path.name}", "keras_path": f"{FUSION_DIR}/{keras_path.name}",
                    "blend_path": f"{FUSION_DIR}/{blend_path.name}", "blend": self.blend.described(),
                    "n_inputs": self.network.n_inputs, "layers": self.network.layer_sizes,
                    "inputs": [f"{e.name}:{label}" for e in entries for label in e.layout]},
            hyperparameters=hyperparameters,
            image_weights=({**self.embedder.identity.to_dict(), "setting": self.weights_setting,
                            "precision": self.embedder.precision} if self.embedder else None),
            training=training,
        ).write(directory)

    @classmethod
    def load(cls, directory: Path, config: ModelConfig, images: ImageSettings) -> "FusionLearner":
        """The learner a model directory holds; image weights must give the sha256 recorded at training."""
        from multimodal.classifier.blend import FusionBlend

        embedder, setting = None, None
        if config.image_weights:
            from multimodal.classifier.images import ImageEmbedder

            recorded = config.image_weights
            setting = images.weights or recorded.get("setting") or _image_setting_from_identity(recorded["name"])
            precision = images.precision or recorded.get("precision", "fp32")
            embedder = ImageEmbedder.shared(setting, batch_size=images.batch_size, precision=precision)
            if embedder.identity.sha256 != recorded["sha256"]:
                raise PlatformError(
                    f"the model was trained with ResNet50 weights {recorded['name']} (sha256 "
                    f"{recorded['sha256'][:12]}...) but {setting!r} gives {embedder.identity.name} (sha256 "
                    f"{embedder.identity.sha256[:12]}...); load it with the same image weights.")
        members = [member_from_entry(entry, directory, embedder) for entry in config.modalities]
        network = _load_network(directory, config)
        blend = FusionBlend.load((directory / config.fusion["path"]).parent, network)
        # A model saved before issue 18 named the joint member after its modalities ("text+num+cat").
        renamed = {entry.name: member.name for entry, member in zip(config.modalities, members)}
        blend.names = [renamed.get(name, name) for name in blend.names]
        return cls(Schema.from_dict(config.schema), LabelMap(tuple(config.classes)), members, network, blend,
                   embedder, setting)


# With several places, the members that take longest start first (images, then the joint member, then text).
_FIT_ORDER = {"image": 0, "joint": 1, "text": 2, "cat": 3, "num": 4}


def _fit_members(planned, n_classes: int, work_dir: Path, budget: TimeBudget, options: FitOptions, store,
                 executor) -> list[tuple[np.ndarray | None, float | None, Exception | None]]:
    """Fit (or resume) every planned ``(member, frame, labels)`` at the executor's places; per member, in plan
    order: its training probabilities, its seconds and the ``MemberNotTrained`` that skipped it (else None).
    A member's share counts the members still to fit after it on the same place (``run_units``' count over the
    number of places), so with one place it is the share of one member among those left."""
    from multimodal.classifier.member_units import fit_or_resume
    from multimodal.classifier.tabular import MemberNotTrained

    places = len(executor.places)
    order = list(range(len(planned)))
    if places > 1:
        order.sort(key=lambda i: _FIT_ORDER.get(planned[i][0].kind, 5))

    def fit(place: str, position: int, not_started: int):
        member, frame, labels = planned[position]
        started = time.monotonic()
        try:
            proba = fit_or_resume(member, frame, labels, n_classes, work_dir, budget=budget,
                                  members_left=-(-not_started // places), options=options, store=store,
                                  fit_member=functools.partial(executor.fit_member, place))
        except MemberNotTrained as error:
            shown = member.columns[:8] + (["..."] if len(member.columns) > 8 else [])
            logger.warning("member '%s' (columns %s) skipped: %s; training goes on with the other members",
                           member.name, shown, error)
            return None, None, error
        return proba, round(time.monotonic() - started, 1), None

    results = run_units(executor, [(f"member {planned[i][0].name}", i) for i in order], fit)
    by_position = dict(zip(order, results))
    return [by_position[i] for i in range(len(planned))]


def _link_or_copy(source: str, destination: str) -> None:
    """A hard link where the file system allows one, else a copy: a predictor kept in a checkpoint unit and
    the model directory then share its bytes (no second copy on the training volume while the model is saved;
    nothing writes to a saved predictor's files)."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def _image_setting_from_identity(name: str) -> str:
    """The weights setting of a model saved before the setting was recorded, from the weights' name."""
    if name.startswith("random"):
        return "random"
    if name.startswith("torchvision:"):
        return "imagenet"
    return name


def _load_network(directory: Path, config: ModelConfig):
    """The fusion network's arrays; a directory saved before ``fusion.npz`` existed has only ``fusion.keras``."""
    from multimodal.classifier.fusion_network import FusionNetwork

    path = directory / config.fusion["path"]
    if path.suffix == ".keras":
        from multimodal.classifier import fusion

        return fusion.load_keras(path.parent)
    return FusionNetwork.load(path.parent)
