"""The fitted fusion network as plain arrays: prediction with NumPy, saved as ``.npz`` (no pickle).

Training happens in Keras (``multimodal.classifier.fusion``); serving needs only these few dense layers, so a
model loads and predicts without importing TensorFlow.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from multimodal.errors import PlatformError

FILE_NAME = "fusion.npz"
ACTIVATIONS = ("relu", "softmax")


@dataclass
class FusionNetwork:
    """Dense layers ``x -> activation(x @ kernel + bias)``, the last one a softmax over the classes."""

    kernels: list[np.ndarray]
    biases: list[np.ndarray]
    activations: list[str]

    @property
    def n_inputs(self) -> int:
        """Width of the input: the concatenated modality probabilities."""
        return int(self.kernels[0].shape[0])

    @property
    def n_classes(self) -> int:
        """Width of the output."""
        return int(self.kernels[-1].shape[1])

    @property
    def layer_sizes(self) -> list[int]:
        """Units of each layer, output last."""
        return [int(kernel.shape[1]) for kernel in self.kernels]

    def predict_proba(self, inputs: np.ndarray) -> np.ndarray:
        """Class probabilities (float64, rows sum to 1) for fusion inputs."""
        x = np.asarray(inputs, dtype=np.float32).reshape(-1, self.n_inputs)
        for kernel, bias, activation in zip(self.kernels, self.biases, self.activations):
            x = x @ kernel + bias
            if activation == "relu":
                np.maximum(x, 0.0, out=x)
            else:
                x = np.exp(x - x.max(axis=1, keepdims=True))
        x = x.astype(np.float64)
        return x / x.sum(axis=1, keepdims=True)

    def save(self, directory: Path) -> Path:
        """Write ``fusion.npz`` under ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {f"kernel_{i}": k for i, k in enumerate(self.kernels)}
        arrays.update({f"bias_{i}": b for i, b in enumerate(self.biases)})
        path = directory / FILE_NAME
        np.savez(path, activations=np.array(self.activations), **arrays)
        return path

    @classmethod
    def load(cls, directory: Path) -> "FusionNetwork":
        """Read ``fusion.npz`` (arrays only: ``allow_pickle=False``)."""
        path = directory / FILE_NAME
        try:
            with np.load(path, allow_pickle=False) as data:
                activations = [str(a) for a in data["activations"]]
                kernels = [data[f"kernel_{i}"].astype(np.float32) for i in range(len(activations))]
                biases = [data[f"bias_{i}"].astype(np.float32) for i in range(len(activations))]
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
            raise PlatformError(f"{path} is missing or not a fusion network file.", caused_by=error) from error
        network = cls(kernels, biases, activations)
        network.check()
        return network

    def check(self) -> None:
        """Raise ``PlatformError`` when the layers do not chain or an activation is unknown."""
        if not self.kernels or len(self.kernels) != len(self.biases) or len(self.kernels) != len(self.activations):
            raise PlatformError("fusion network: kernels, biases and activations differ in number.")
        for i, (kernel, bias, activation) in enumerate(zip(self.kernels, self.biases, self.activations)):
            if activation not in ACTIVATIONS or kernel.ndim != 2 or bias.shape != (kernel.shape[1],) or (
                    i and kernel.shape[0] != self.kernels[i - 1].shape[1]):
                raise PlatformError(f"fusion network: layer {i + 1} ({activation}, {kernel.shape}) does not fit.")
        if self.activations[-1] != "softmax":
            raise PlatformError("fusion network: the last layer must be a softmax.")
