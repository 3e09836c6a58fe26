"""The time budget: one deadline for the whole job (reading the channels, embedding, fits, fusion, reports,
saving), counted from the moment the job starts, that each phase draws on."""
from __future__ import annotations

import time

MIN_MEMBER_SECONDS = 10.0
# Kept from the members' shares: the fusion network, the blend, the reports and saving the model.
FINISH_RESERVE_SECONDS = 60.0
REPORT_RESERVE_SECONDS = 10.0


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

    def member_share(self, weight: float = 1.0, weights_left: float = 1.0) -> float:
        """What the next member may spend: its ``weight``'s part of ``weights_left`` (the weights of the members
        still to fit, its own included) of what remains after the finish reserve (up to 60 s, at most 15 % of
        what remains); at least ``MIN_MEMBER_SECONDS``. A member that finishes early (or is skipped) leaves its
        time to the members after it."""
        reserve = min(FINISH_RESERVE_SECONDS, 0.15 * max(self.remaining(), 0.0))
        available = self.remaining() - reserve
        return max(MIN_MEMBER_SECONDS, available * weight / max(weight, weights_left))

    def fusion_seconds(self) -> float:
        """What the fusion network may spend: what remains after the reports' reserve, at least 30 s."""
        return max(30.0, self.remaining() - REPORT_RESERVE_SECONDS)

    def __repr__(self) -> str:
        return f"TimeBudget({self.seconds:.0f} s, {self.remaining():.0f} s left)"
