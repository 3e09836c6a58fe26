"""The time budget: one deadline for the whole job (reading the channels, embedding, fits, fusion, reports,
saving), counted from the moment the job starts, that each phase draws on."""
from __future__ import annotations

import threading
import time

MIN_MEMBER_SECONDS = 10.0
# Kept from the members' shares for the fusion network, the blend, the reports and saving the model: up to 60 s
# (15 % of what remains), never less than the fusion network's minimum and the reports' reserve together (unless
# that is more than half of what remains).
FINISH_RESERVE_SECONDS = 60.0
MIN_FUSION_SECONDS = 20.0
REPORT_RESERVE_SECONDS = 10.0
# A member's fit runs past the limit AutoGluon is given (the model that was running when the limit came, the
# out-of-fold predictions, the leaderboard, saving): AutoGluon gets the share less this overrun, as a fraction
# of its limit. Until a member of this job has run past its limit, the first figure is assumed (the study's
# members ran 2-12 % past theirs); then the mean of what the job's members measured, at most the cap.
FIRST_OVERRUN = 0.12
MAX_OVERRUN = 0.5


class TimeBudget:
    """``seconds`` from ``started`` (a ``time.monotonic()`` value; default now)."""

    def __init__(self, seconds: float, started: float | None = None):
        self.seconds = float(seconds)
        self.started = time.monotonic() if started is None else float(started)
        self._overruns: list[float] = []
        self._lock = threading.Lock()   # members fitted at several places record their overruns concurrently

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

    def finish_reserve(self) -> float:
        """What the members leave for the fusion network, the blend, the reports and saving (see
        ``FINISH_RESERVE_SECONDS``)."""
        remaining = max(self.remaining(), 0.0)
        wanted = max(MIN_FUSION_SECONDS + REPORT_RESERVE_SECONDS, min(FINISH_RESERVE_SECONDS, 0.15 * remaining))
        return min(wanted, 0.5 * remaining)

    def member_share(self, members_left: int) -> float:
        """What the next member may spend: an equal part, for each of the ``members_left`` members still to
        fit, of what remains after the finish reserve; at least ``MIN_MEMBER_SECONDS``. A member that finishes
        early leaves its time to the members after it."""
        return max(MIN_MEMBER_SECONDS, self.share(members_left, self.finish_reserve()))

    def overrun(self) -> float:
        """How far past its limit a member's fit is expected to run, as a fraction of the limit."""
        with self._lock:
            measured = list(self._overruns)
        return sum(measured) / len(measured) if measured else FIRST_OVERRUN

    def fit_limit(self, share: float) -> float:
        """The time limit to give AutoGluon for a member whose whole fit may take ``share`` seconds."""
        return share / (1.0 + self.overrun())

    def record_fit(self, limit: float, seconds: float) -> None:
        """Learn from a member that was given ``limit`` and took ``seconds`` in all. One that finished early
        says nothing about how far a fit runs past its limit and is not counted."""
        if limit > 0 and seconds > limit:
            with self._lock:
                self._overruns.append(min(MAX_OVERRUN, (seconds - limit) / limit))

    def fusion_seconds(self) -> float:
        """What the fusion network may spend, counted from when it is asked: what remains after the reports'
        reserve, at least ``MIN_FUSION_SECONDS``."""
        return max(MIN_FUSION_SECONDS, self.remaining() - REPORT_RESERVE_SECONDS)

    def __repr__(self) -> str:
        return f"TimeBudget({self.seconds:.0f} s, {self.remaining():.0f} s left)"
