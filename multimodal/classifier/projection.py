"""Principal-component projection of image embeddings (2048 ResNet50 features to ``image_components``).

AutoGluon's model families each copy their training features several times (label split, feature
generation, bagging folds, float64 preprocessing); with 2048 float columns per image column that is
40-60 KB per row. ResNet50 pooled features are highly redundant, so a PCA fitted on the training
images keeps what the models use at a fraction of the memory and training time. Stored as plain
arrays in ``.npz`` (no pickle).
"""
from __future__ import annotations

from dataclasses import dataclass
import zipfile
from pathlib import Path

import numpy as np

from multimodal.errors import PlatformError

_CHUNK_ROWS = 4096  # rows per step: bounds each temporary (float64) copy to 64 MB


@dataclass(frozen=True)
class FeatureProjection:
    """``(x - mean) @ components.T``: ``mean`` has shape (d,), ``components`` (k, d), both float32."""

    mean: np.ndarray
    components: np.ndarray
    explained_variance: float

    @property
    def n_components(self) -> int:
        """How many features the projection outputs."""
        return int(self.components.shape[0])

    @property
    def n_features_in(self) -> int:
        """How many features the projection takes."""
        return int(self.components.shape[1])

    @classmethod
    def fit(cls, features: np.ndarray, n_components: int, rows: np.ndarray | None = None) -> "FeatureProjection":
        """The first ``n_components`` principal axes of ``features`` (rows are samples), fitted on the rows
        where the boolean mask ``rows`` is true (all rows when None), chunk by chunk without copying them all.

        At most as many components as fitted rows; each axis's sign is fixed (largest entry positive) so
        the same data gives the same projection on any LAPACK build.
        """
        width = features.shape[1]
        selected = np.ones(len(features), dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
        count = int(selected.sum())
        if count == 0:
            raise ValueError("cannot fit a projection on zero rows")
        k = max(1, min(int(n_components), width, count))
        total = np.zeros(width, dtype=np.float64)
        for block in _chunks(features, selected):
            total += block.sum(axis=0, dtype=np.float64)
        mean = total / count
        covariance = np.zeros((width, width), dtype=np.float64)
        for block in _chunks(features, selected):
            centered = block.astype(np.float64) - mean
            covariance += centered.T @ centered
        covariance /= max(count - 1, 1)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        order = np.argsort(eigenvalues)[::-1][:k]
        axes = eigenvectors[:, order].T
        signs = np.sign(axes[np.arange(k), np.abs(axes).argmax(axis=1)])
        axes *= np.where(signs == 0, 1.0, signs)[:, None]
        variance = float(np.clip(eigenvalues, 0, None).sum())
        kept = float(np.clip(eigenvalues[order], 0, None).sum())
        return cls(mean=mean.astype(np.float32), components=np.ascontiguousarray(axes, dtype=np.float32),
                   explained_variance=kept / variance if variance > 0 else 1.0)

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Project rows of ``features`` (float32 result, shape (n, k)), chunk by chunk."""
        if features.ndim != 2 or features.shape[1] != self.n_features_in:
            raise ValueError(f"projection takes {self.n_features_in} features, got shape {features.shape}")
        result = np.empty((len(features), self.n_components), dtype=np.float32)
        for start in range(0, len(features), _CHUNK_ROWS):
            stop = start + _CHUNK_ROWS
            result[start:stop] = (features[start:stop] - self.mean) @ self.components.T
        return result

    def save(self, path: Path) -> Path:
        """Write the arrays to ``path`` (an ``.npz`` file); returns it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            np.savez(handle, mean=self.mean, components=self.components,
                     explained_variance=np.float64(self.explained_variance))
        return path

    @classmethod
    def load(cls, path: Path) -> "FeatureProjection":
        """Read a projection written by ``save``; ``PlatformError`` when the file is absent or damaged."""
        try:
            with np.load(path, allow_pickle=False) as arrays:
                projection = cls(mean=arrays["mean"].astype(np.float32),
                                 components=arrays["components"].astype(np.float32),
                                 explained_variance=float(arrays["explained_variance"]))
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
            raise PlatformError(f"cannot read the image feature projection {path}",
                                caused_by=error) from error
        if projection.mean.shape != (projection.n_features_in,):
            raise PlatformError(f"{path}: mean and components disagree in width; the model directory is damaged.")
        return projection


def _chunks(features: np.ndarray, selected: np.ndarray):
    for start in range(0, len(features), _CHUNK_ROWS):
        mask = selected[start:start + _CHUNK_ROWS]
        block = features[start:start + _CHUNK_ROWS]
        yield block if mask.all() else block[mask]
