"""Training the fusion network: a small Keras MLP from the concatenated modality probabilities to the classes.

Only this module imports TensorFlow, and only training needs it: the fitted network is handed over as a
``FusionNetwork`` (plain arrays). It imports torch first: TensorFlow loaded before triton (which
torchvision pulls in) segfaults the process.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from multimodal.classifier.fusion_network import FusionNetwork

logger = logging.getLogger(__name__)

KERAS_FILE = "fusion.keras"


def _keras():
    import torch  # noqa: F401  - must be loaded before tensorflow
    import torchvision  # noqa: F401
    import keras

    return keras


def layer_sizes(n_inputs: int, n_classes: int) -> tuple[int, int, int]:
    """Units of the two hidden layers and the output: about 2d/3+k, d/3+k, k."""
    return (2 * n_inputs) // 3 + n_classes, n_inputs // 3 + n_classes, n_classes


def build_network(n_inputs: int, n_classes: int, learning_rate: float = 0.001):
    """The fusion network, compiled: dense ReLU, dense ReLU, softmax; Adam and cross-entropy."""
    keras = _keras()
    first, second, out = layer_sizes(n_inputs, n_classes)
    model = keras.Sequential([
        keras.Input(shape=(n_inputs,), name="modality_probabilities"),
        keras.layers.Dense(first, activation="relu", name="hidden_1"),
        keras.layers.Dense(second, activation="relu", name="hidden_2"),
        keras.layers.Dense(out, activation="softmax", name="classes"),
    ], name="fusion")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, validation), stratified by label when every class has at least 2 rows."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(labels))
    n_validation = int(round(len(labels) * fraction))
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    if n_validation < 1 or len(labels) - n_validation < 1:
        return rows, rows[:0]
    stratify = labels if counts.min() >= 2 and n_validation >= len(counts) else None
    train, validation = train_test_split(rows, test_size=n_validation, random_state=seed, shuffle=True,
                                         stratify=stratify)
    return np.sort(train), np.sort(validation)


def train_network(inputs: np.ndarray, labels: np.ndarray, n_classes: int, *, epochs: int, batch_size: int,
                  validation_fraction: float, patience: int, seed: int, learning_rate: float = 0.001,
                  time_limit: float | None = None):
    """Fit the fusion network with early stopping on a stratified validation split.

    ``time_limit`` counts from the call (loading TensorFlow and building the network included).
    Returns ``(network, validation_rows)``: the fitted ``FusionNetwork`` and the rows held out for early
    stopping, for honest metrics.
    """
    called = time.monotonic()
    keras = _keras()
    keras.utils.set_random_seed(seed)
    model = build_network(inputs.shape[1], n_classes, learning_rate)
    train_rows, validation_rows = stratified_split(labels, validation_fraction, seed)
    callbacks = []
    validation = None
    if len(validation_rows):
        validation = (inputs[validation_rows], labels[validation_rows])
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                                       restore_best_weights=True))
    callbacks.append(_Progress(keras, epochs))
    if time_limit is not None:
        callbacks.append(_TimeLimit(keras, called + time_limit))
    started = time.monotonic()
    history = model.fit(inputs[train_rows], labels[train_rows], validation_data=validation, epochs=epochs,
                        batch_size=batch_size, shuffle=True, verbose=0, callbacks=callbacks)
    ran = len(history.history["loss"])
    summary = f"train loss {history.history['loss'][-1]:.4f}"
    if validation is not None:
        best = int(np.argmin(history.history["val_loss"]))
        summary = (f"best epoch {best + 1}: validation loss {history.history['val_loss'][best]:.4f}, "
                   f"accuracy {history.history['val_accuracy'][best]:.4f}")
    logger.info("fusion network %s: %d epochs in %.1f s on %d rows (%d validation); %s",
                "x".join(str(s) for s in (inputs.shape[1],) + layer_sizes(inputs.shape[1], n_classes)),
                ran, time.monotonic() - started, len(train_rows), len(validation_rows), summary)
    return from_keras(model), validation_rows


def _Progress(keras, epochs: int, every_seconds: float = 15.0):
    class Progress(keras.callbacks.Callback):
        """Logs the epoch and losses at most every ``every_seconds`` (readable in CloudWatch, no bars)."""

        def on_train_begin(self, logs=None):
            self.last = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            now = time.monotonic()
            if now - self.last >= every_seconds:
                self.last = now
                logs = logs or {}
                logger.info("fusion network: epoch %d/%d, loss %.4f, validation loss %s", epoch + 1, epochs,
                            logs.get("loss", float("nan")),
                            f"{logs['val_loss']:.4f}" if "val_loss" in logs else "n/a")

    return Progress()


def _TimeLimit(keras, deadline: float):
    class TimeLimit(keras.callbacks.Callback):
        """Stops training at ``deadline`` (a ``time.monotonic()`` value), when the job's time budget for the
        fusion network is spent."""

        def on_epoch_end(self, epoch, logs=None):
            if time.monotonic() > deadline:
                logger.warning("fusion network stopped after %d epochs: time budget spent", epoch + 1)
                self.model.stop_training = True

    return TimeLimit()


def from_keras(model) -> FusionNetwork:
    """The arrays of a trained Keras network (dense layers only)."""
    kernels, biases, activations = [], [], []
    for layer in model.layers:
        kernel, bias = (np.asarray(w, dtype=np.float32) for w in layer.get_weights())
        kernels.append(kernel)
        biases.append(bias)
        activations.append(layer.get_config()["activation"])
    network = FusionNetwork(kernels, biases, activations)
    network.check()
    return network


def to_keras(network: FusionNetwork):
    """The same network as a Keras model (for users who want one; the product predicts with NumPy)."""
    keras = _keras()
    layers = [keras.Input(shape=(network.n_inputs,), name="modality_probabilities")]
    for i, (units, activation) in enumerate(zip(network.layer_sizes, network.activations)):
        last = i == len(network.layer_sizes) - 1
        layers.append(keras.layers.Dense(units, activation=activation, name="classes" if last else f"hidden_{i + 1}"))
    model = keras.Sequential(layers, name="fusion")
    for layer, kernel, bias in zip(model.layers, network.kernels, network.biases):
        layer.set_weights([kernel, bias])
    return model


def save_keras(network: FusionNetwork, directory: Path) -> Path:
    """Write the network in Keras' native format (no pickle) as ``fusion.keras``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / KERAS_FILE
    to_keras(network).save(path)
    return path


def load_keras(directory: Path) -> FusionNetwork:
    """Read a ``fusion.keras`` file (safe mode: no code in the file is run)."""
    keras = _keras()
    return from_keras(keras.models.load_model(directory / KERAS_FILE, compile=False, safe_mode=True))
