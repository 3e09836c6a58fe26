"""Error classes: who can fix the problem decides the class.

``UserError``: the caller's data, hyperparameters or request are wrong; the message says what to change.
``PlatformError``: the environment is wrong (missing files, weights, paths); the operator fixes it.
``AlgorithmError``: a bug or an unexpected failure inside this library.

Each takes an optional ``caused_by`` exception whose class name is appended to the message, so a
one-line failure reason still tells which underlying library failed.
"""
from __future__ import annotations


class MultimodalError(Exception):
    """Base class of every error this library raises on purpose."""

    def __init__(self, message: str, caused_by: BaseException | None = None):
        self.message = message
        self.caused_by = caused_by
        super().__init__(message)

    def __str__(self) -> str:
        if self.caused_by is None:
            return self.message
        return f"{self.message} (caused by {type(self.caused_by).__name__}: {self.caused_by})"


class UserError(MultimodalError):
    """The input (data, hyperparameters, request) is wrong and the user can fix it."""


class PlatformError(MultimodalError):
    """The environment (files, weights, devices) is not as required."""


class AlgorithmError(MultimodalError):
    """An unexpected failure inside the algorithm itself."""


class NotFittedError(UserError):
    """A predict-like method was called before ``fit`` or ``load``."""


class RowsWithoutData(UserError):
    """Rows in which every feature is missing (images that cannot be decoded count as missing): a prediction
    for them would answer for data the caller did not send. ``positions`` are 0-based row positions."""

    def __init__(self, positions):
        self.positions = [int(p) for p in positions]
        super().__init__(f"row {self.positions[0] + 1}: every feature is missing or undecodable "
                         f"({len(self.positions)} such row(s)).")
