"""The members of the fusion: AutoGluon predictors whose probabilities the fusion network and the blend
combine. Each member builds its own features from a table's modality frames, fits, predicts and describes
itself (``entry()``, the record in ``model_config.json``):

- ``ModalityMember``: one non-image modality (``text``, ``num`` or ``cat``), named after it;
- ``JointMember``: all non-image columns together (``joint``), for interactions across modalities;
- ``ImageMember``: one image column (``img/<column>``), owning its feature projection and sharing the
  learner's image embedder.

Every member predicts the classes or a sentinel label for rows with too little information
(``multimodal.classifier.labels.sentinel_labels``).
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np
import pandas as pd

from multimodal.classifier.budget import MIN_MEMBER_SECONDS, TimeBudget
from multimodal.classifier.features import ModalityFrames
from multimodal.classifier.model_config import MemberEntry
from multimodal.errors import PlatformError

logger = logging.getLogger(__name__)

JOINT = "joint"
IMAGE = "image"
MODALITY_KINDS = ("text", "num", "cat")


@dataclass(frozen=True)
class FitOptions:
    """How every member is fitted (from the hyperparameters)."""

    quality: str
    eval_metric: str
    stacking: str
    num_folds: int
    seed: int
    image_components: int = 0
    refit_full: bool = False


class Member:
    """One AutoGluon member: ``name`` (unique, used in reports), the ``columns`` it reads, the sub-directory
    ``path`` of its predictor in the model directory, and the fitted ``predictor`` (None before ``fit``)."""

    kind: ClassVar[str]
    reads_images: ClassVar[bool] = False   # needs the table's base64 cells (so its features come first)
    is_modality: ClassVar[bool] = True     # stands for one modality (the joint member reads several)

    def __init__(self, name: str, columns: list[str], path: str):
        self.name = name
        self.columns = list(columns)
        self.path = path
        self.predictor = None
        self.share = 0.0   # the seconds of the time budget the last fit was given

    # -- features -------------------------------------------------------------------------------
    def features(self, frames: ModalityFrames, describe_row: Callable[[int], str] | None = None) -> pd.DataFrame:
        """The member's input for the rows of ``frames``."""
        raise NotImplementedError

    def missing_fraction(self, frames: ModalityFrames) -> np.ndarray:
        """Each row's fraction of missing values over the member's columns (1.0: nothing to go on)."""
        raise NotImplementedError

    def features_and_missing(self, frames: ModalityFrames, describe_row=None) -> tuple[pd.DataFrame, np.ndarray]:
        """``features`` and ``missing_fraction`` together."""
        return self.features(frames, describe_row), self.missing_fraction(frames)

    def training_features(self, frames: ModalityFrames, options: FitOptions,
                          describe_row=None) -> tuple[pd.DataFrame, np.ndarray]:
        """``features_and_missing`` of the training rows, fitting whatever the features need first."""
        return self.features_and_missing(frames, describe_row)

    # -- fitting and predicting -----------------------------------------------------------------
    def fit(self, features: pd.DataFrame, labels: np.ndarray, n_classes: int, directory: Path, *,
            budget: TimeBudget, members_left: int, options: FitOptions, fit_member=None) -> np.ndarray:
        """Fit the predictor on ``labels`` (class codes and the sentinel) in ``directory / path``, drawing its
        share (``share``) from ``budget`` as if ``members_left`` members were still to fit one after the other
        (AutoGluon's time limit is the share less the overrun the budget expects, and what the fit took is
        recorded there for the next members); return the training rows' probabilities (out of fold unless ``options.stacking`` says in-sample).
        ``fit_member``: what fits (default ``multimodal.classifier.tabular.fit_member``, in this process; an
        executor's place may fit elsewhere). Raises ``MemberNotTrained`` when the member cannot be trained."""
        if fit_member is None:
            from multimodal.classifier.tabular import fit_member

        self.share = budget.member_share(members_left)
        if self.share <= MIN_MEMBER_SECONDS:
            logger.warning("time budget nearly spent: giving member '%s' %.0f s; raise n_mins/n_hours for better "
                           "models", self.name, self.share)
        limit = budget.fit_limit(self.share)   # AutoGluon's part of the share: the fit runs past its limit
        started = time.monotonic()
        self.predictor, proba = fit_member(
            self.name, features, labels, n_classes, directory / self.path, quality=options.quality,
            eval_metric=options.eval_metric, time_limit=limit, stacking=options.stacking,
            num_folds=options.num_folds, seed=options.seed, refit_full=options.refit_full)
        budget.record_fit(limit, time.monotonic() - started)
        return proba

    @property
    def layout(self) -> list[int]:
        """The label codes of the member's probability columns: the classes, then the sentinel if it has one."""
        return self.predictor.layout

    @property
    def leaderboard(self) -> pd.DataFrame | None:
        """AutoGluon's leaderboard of the fit (None for a loaded member)."""
        return self.predictor.leaderboard

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Probabilities in ``layout`` order, one row per feature row."""
        return self.predictor.predict_proba(features)

    def predict_rows(self, features: pd.DataFrame, missing: np.ndarray) -> np.ndarray:
        """``predict_proba`` of rows whose missing fractions (``features_and_missing``) are ``missing``."""
        return self.predict_proba(features)

    # -- persistence ------------------------------------------------------------------------------
    def entry(self) -> MemberEntry:
        """The member's record in ``model_config.json``."""
        return MemberEntry(name=self.name, kind=self.kind, columns=list(self.columns), path=self.path,
                             layout=list(self.layout))

    def save_extras(self, directory: Path) -> None:
        """Write what the member needs besides its predictor (nothing, except for image members)."""

    def load_predictor(self, directory: Path, layout: list[int]) -> None:
        """Load the saved predictor from ``directory / path``."""
        from multimodal.classifier.tabular import MemberPredictor

        self.predictor = MemberPredictor.load(self.name, directory / self.path, layout)

    @classmethod
    def from_entry(cls, entry: MemberEntry, directory: Path, embedder=None) -> "Member":
        """The member a ``model_config.json`` record describes (predictor not loaded yet)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self.columns)} column(s))"


class ModalityMember(Member):
    """The member of one non-image modality: ``text``, ``num`` or ``cat``."""

    def __init__(self, kind: str, columns: list[str], path: str | None = None):
        if kind not in MODALITY_KINDS:
            raise ValueError(f"not a modality kind: {kind!r}")
        self.kind = kind
        super().__init__(kind, columns, path or kind)

    def features(self, frames: ModalityFrames, describe_row=None) -> pd.DataFrame:
        return frames.modality(self.kind)

    def missing_fraction(self, frames: ModalityFrames) -> np.ndarray:
        return frames.missing_fraction[self.kind]

    @classmethod
    def from_entry(cls, entry: MemberEntry, directory: Path, embedder=None) -> "ModalityMember":
        return cls(entry.kind, entry.columns, entry.path)


class JointMember(Member):
    """All non-image columns side by side (two or more non-image modalities)."""

    kind = JOINT
    is_modality = False

    def __init__(self, columns: list[str], path: str = JOINT):
        super().__init__(JOINT, columns, path)

    def features(self, frames: ModalityFrames, describe_row=None) -> pd.DataFrame:
        return frames.joint_tabular()[0][self.columns]

    def missing_fraction(self, frames: ModalityFrames) -> np.ndarray:
        return frames.joint_tabular()[1]

    def features_and_missing(self, frames: ModalityFrames, describe_row=None) -> tuple[pd.DataFrame, np.ndarray]:
        frame, missing = frames.joint_tabular()   # the side-by-side table is built once
        return frame[self.columns], missing

    @classmethod
    def from_entry(cls, entry: MemberEntry, directory: Path, embedder=None) -> "JointMember":
        return cls(entry.columns, entry.path)


class ImageMember(Member):
    """One image column's ResNet50 embeddings, projected to principal components (``projection``; None keeps
    all 2048 features). ``embedder`` is the learner's, shared by its image members."""

    kind = IMAGE
    reads_images = True

    def __init__(self, column: str, path: str, embedder=None, projection=None):
        super().__init__(f"img/{column}", [column], path)
        self.embedder = embedder
        self.projection = projection
        self._missing_output = None   # (the predictor, its prediction for a row without a usable image)

    @property
    def column(self) -> str:
        return self.columns[0]

    @property
    def projection_file(self) -> str:
        """Where the projection is saved: beside the AutoGluon folders, named after the member's folder."""
        return f"projections/{self.path.split('/', 1)[-1]}.npz"

    def embed(self, frames: ModalityFrames, describe_row=None) -> tuple[np.ndarray, np.ndarray, int]:
        """(embeddings, missing mask, undecodable count) of the column's cells."""
        return self.embedder.embed(frames.images[self.column].tolist(), self.column, describe_row,
                                   frames.image_folder)

    def training_features(self, frames: ModalityFrames, options: FitOptions, describe_row=None, store=None,
                          budget: TimeBudget | None = None, executor=None) -> tuple[pd.DataFrame, np.ndarray]:
        """Embed the training rows, fit the projection (``options.image_components``; 0 keeps all features)
        on the rows with an image, and return the projected features and each row's missing fraction (0 or 1).
        With ``store`` (a ``checkpoints.UnitStore``) the embeddings are kept and reused chunk by chunk, their
        reused time charged to ``budget``; ``executor`` (``multimodal.classifier.executors``) says where the
        chunks are embedded."""
        from multimodal.classifier.embedding_units import embed_resumable
        from multimodal.classifier.images import check_not_all_undecodable
        from multimodal.classifier.projection import FeatureProjection

        cells = frames.images[self.column].tolist()
        embeddings, missing, undecodable = embed_resumable(self.embedder, cells, self.column, describe_row, store,
                                                           budget, executor, frames.image_folder)
        check_not_all_undecodable(self.column, cells, undecodable)
        if options.image_components and (~missing).any():
            started = time.monotonic()
            self.projection = FeatureProjection.fit(embeddings, options.image_components, rows=~missing)
            embeddings = self.projection.transform(embeddings)
            logger.info("column '%s': %d features projected to %d principal components (fitted on %d images, "
                        "%.1f%% of the variance kept) in %.1f s", self.column, self.projection.n_features_in,
                        self.projection.n_components, int((~missing).sum()), 100 * self.projection.explained_variance,
                        time.monotonic() - started)
        return embedding_frame(embeddings), missing.astype(np.float64)

    def features(self, frames: ModalityFrames, describe_row=None) -> pd.DataFrame:
        return self.features_and_missing(frames, describe_row)[0]

    def features_and_missing(self, frames: ModalityFrames, describe_row=None) -> tuple[pd.DataFrame, np.ndarray]:
        """The projected features and each row's missing fraction: 1.0 without a usable image (missing or
        undecodable), else 0.0."""
        embeddings, missing, _ = self.embed(frames, describe_row)
        if self.projection is not None:
            embeddings = self.projection.transform(embeddings)
        return embedding_frame(embeddings), missing.astype(np.float64)

    def missing_fraction(self, frames: ModalityFrames) -> np.ndarray:
        return self.features_and_missing(frames)[1]

    def predict_rows(self, features: pd.DataFrame, missing: np.ndarray) -> np.ndarray:
        """Rows without a usable image all have the black square's features, so they share one output: it is
        computed once for the model, and only rows with an image go through AutoGluon."""
        without = missing >= 1.0
        if not without.any():
            return self.predict_proba(features)
        cached = self._missing_output
        if cached is None or cached[0] is not self.predictor:
            first = int(np.flatnonzero(without)[0])
            cached = self._missing_output = (self.predictor, self.predict_proba(features.iloc[[first]])[0])
        output = cached[1]
        proba = np.empty((len(features), len(output)), dtype=np.float32)
        proba[without] = output
        if not without.all():
            proba[~without] = self.predict_proba(features[~without])
        return proba

    def entry(self) -> MemberEntry:
        entry = super().entry()
        entry.projection = self.projection_file if self.projection is not None else None
        return entry

    def save_extras(self, directory: Path) -> None:
        if self.projection is not None:
            self.projection.save(directory / self.projection_file)

    @classmethod
    def from_entry(cls, entry: MemberEntry, directory: Path, embedder=None) -> "ImageMember":
        from multimodal.classifier.projection import FeatureProjection

        if embedder is None:
            raise PlatformError(f"member '{entry.name}' reads images, but model_config.json records no image "
                                "weights; the model directory is damaged: train it again.")
        projection = FeatureProjection.load(directory / entry.projection) if entry.projection else None
        return cls(entry.columns[0], entry.path, embedder, projection)


# The member class of each kind recorded in model_config.json.
MEMBER_CLASSES: dict[str, type[Member]] = {**{kind: ModalityMember for kind in MODALITY_KINDS},
                                           JOINT: JointMember, IMAGE: ImageMember}


def member_from_entry(entry: MemberEntry, directory: Path, embedder=None) -> Member:
    """The member a ``model_config.json`` record describes, with its predictor (and projection) loaded."""
    if entry.kind not in MEMBER_CLASSES:
        raise PlatformError(f"model_config.json: member '{entry.name}' has an unknown kind {entry.kind!r}.")
    member = MEMBER_CLASSES[entry.kind].from_entry(entry, directory, embedder)
    member.load_predictor(directory, entry.layout)
    return member


def plan_members(frames: ModalityFrames, joint: bool, embedder=None) -> list[Member]:
    """The members for a table's modalities, in training order: text, num, cat, the joint member (``joint``
    and two or more non-image modalities), then one per image column (sharing ``embedder``)."""
    members: list[Member] = [ModalityMember(kind, list(frame.columns)) for kind, frame in frames.tabular()]
    joint_frames = frames.joint_tabular() if joint else None
    if joint_frames is not None:
        members.append(JointMember(list(joint_frames[0].columns)))
    taken: set[str] = set()
    for column in frames.images:
        members.append(ImageMember(column, _image_dir(column, taken), embedder))
    return members


def _image_dir(column: str, taken: set[str]) -> str:
    base = "img/" + (re.sub(r"[^A-Za-z0-9._-]", "_", column) or "column")
    name, suffix = base, 1
    while name in taken:
        suffix += 1
        name = f"{base}_{suffix}"
    taken.add(name)
    return name


def embedding_frame(embeddings: np.ndarray) -> pd.DataFrame:
    """Embeddings as the DataFrame an image member's predictor reads (columns f0000, f0001, ...)."""
    return pd.DataFrame(embeddings, columns=[f"f{j:04d}" for j in range(embeddings.shape[1])])


def member_slices(members) -> list[tuple[int, int]]:
    """The (start, stop) columns of each member's probabilities in the fusion input."""
    slices, start = [], 0
    for member in members:
        width = len(member.layout)
        slices.append((start, start + width))
        start += width
    return slices
