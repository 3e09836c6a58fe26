"""The time budget: one deadline for the whole job (reading the channels, embedding, fits, fusion, reports,
saving), counted from the moment the job starts, that each phase draws on."""
from __future__ import annotations

import time


class TimeBudget:
    """``seconds`` from ``started`` (a ``time.monotonic()`` value; default now)."""

    def __init__(self, seconds: float, started: float | None = None):
        self.seconds = float(seconds)
        self.started = time.monotonic() if started is None else float(started)

    @property
    def deadline(self) -> float:
        """The ``time.monotonic()`` value at which the budget is spent."""
        return self.started + self.seconds

    def remaining(self) -> float:
        """Seconds left (negative once overdrawn)."""
        return self.deadline - time.monotonic()

    def share(self, parts_left: int, reserve: float = 0.0) -> float:
        """An equal part of what remains after ``reserve`` for each of ``parts_left`` parts."""
        return (self.remaining() - reserve) / max(1, parts_left)

    def __repr__(self) -> str:
        return f"TimeBudget({self.seconds:.0f} s, {self.remaining():.0f} s left)"
