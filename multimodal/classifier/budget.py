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

    def charge(self, seconds: float) -> None:
        """Count ``seconds`` spent outside this process against the budget (a unit of work reused from a
        checkpoint cost that much in the run that computed it): the deadline moves that much earlier."""
        self.started -= max(0.0, float(seconds))

    def share(self, parts_left: int, reserve: float = 0.0) -> float:
        """An equal part of what remains after ``reserve`` for each of ``parts_left`` parts."""
        return (self.remaining() - reserve) / max(1, parts_left)

    def member_share(self, members_left: int) -> float:
        """What the next member may spend: an equal part, for each of the ``members_left`` members still to
        fit, of what remains after the finish reserve (up to 60 s, at most 15 % of what remains); at least
        ``MIN_MEMBER_SECONDS``. A member that finishes early leaves its time to the members after it."""
        reserve = min(FINISH_RESERVE_SECONDS, 0.15 * max(self.remaining(), 0.0))
        return max(MIN_MEMBER_SECONDS, self.share(members_left, reserve))

    def fusion_seconds(self) -> float:
        """What the fusion network may spend: what remains after the reports' reserve, at least 30 s."""
        return max(30.0, self.remaining() - REPORT_RESERVE_SECONDS)

    def __repr__(self) -> str:
        return f"TimeBudget({self.seconds:.0f} s, {self.remaining():.0f} s left)"
