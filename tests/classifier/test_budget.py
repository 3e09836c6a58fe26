"""The time budget's shares: an equal part of what is left for each member still to fit, handed on when
unused, the finish reserve kept; AutoGluon's limit inside a share, less the overrun the job's fits measured."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multimodal.classifier.budget import (
    FINISH_RESERVE_SECONDS, FIRST_OVERRUN, MAX_OVERRUN, MIN_FUSION_SECONDS, MIN_MEMBER_SECONDS,
    REPORT_RESERVE_SECONDS, TimeBudget,
)


def spend(budget: TimeBudget, seconds: float) -> None:
    """Move the budget's clock on by ``seconds`` (as a member that ran that long)."""
    budget.started -= seconds


def test_a_share_is_an_equal_part_of_what_remains_after_the_reserve():
    budget = TimeBudget(1000.0)
    available = budget.remaining() - FINISH_RESERVE_SECONDS
    assert budget.member_share(4) == pytest.approx(available / 4, abs=0.5)
    assert budget.member_share(1) == pytest.approx(available, abs=0.5)
    middle = TimeBudget(300.0)
    assert middle.member_share(1) == pytest.approx(0.85 * middle.remaining(), abs=0.5), "reserve: 15 % below 400 s"
    small = TimeBudget(100.0)
    floor = MIN_FUSION_SECONDS + REPORT_RESERVE_SECONDS
    assert small.member_share(1) == pytest.approx(small.remaining() - floor, abs=0.5), \
        "never less than the fusion network's minimum and the reports' reserve"
    assert TimeBudget(40.0).finish_reserve() == pytest.approx(20.0, abs=0.5), "at most half of what remains"
    assert TimeBudget(5.0).member_share(3) == MIN_MEMBER_SECONDS


@settings(max_examples=200, deadline=None)
@given(members=st.integers(1, 8), seconds=st.floats(60.0, 36000.0),
       used=st.lists(st.floats(0.0, 1.0), min_size=8, max_size=8))
def test_members_that_keep_to_their_shares_never_overdraw(members, seconds, used):
    budget = TimeBudget(seconds)
    shares = []
    for position in range(members):
        shares.append(budget.member_share(members - position))
        assert shares[-1] >= MIN_MEMBER_SECONDS
        spend(budget, shares[-1] * used[position])
    if all(share > MIN_MEMBER_SECONDS for share in shares):
        assert budget.remaining() > 0, "the finish reserve is left for the fusion network and saving"


@settings(max_examples=100, deadline=None)
@given(members=st.integers(2, 8), seconds=st.floats(200.0, 36000.0), used=st.floats(0.0, 0.8))
def test_time_a_member_leaves_unused_goes_to_the_members_after_it(members, seconds, used):
    thrifty, greedy = TimeBudget(seconds), TimeBudget(seconds)
    share = thrifty.member_share(members)
    spend(thrifty, share * used)
    spend(greedy, share)
    after_thrifty, after_greedy = thrifty.member_share(members - 1), greedy.member_share(members - 1)
    assert after_thrifty >= after_greedy
    if after_greedy > MIN_MEMBER_SECONDS:
        assert after_thrifty > after_greedy


def test_charged_seconds_come_off_what_remains():
    budget = TimeBudget(300.0)
    before = budget.remaining()
    budget.charge(100.0)
    assert budget.remaining() == pytest.approx(before - 100.0, abs=0.5)
    budget.charge(-50.0)   # nothing is ever given back
    assert budget.remaining() == pytest.approx(before - 100.0, abs=0.5)
    assert budget.seconds == 300.0


@settings(max_examples=200, deadline=None)
@given(seconds=st.floats(30.0, 36000.0))
def test_the_finish_reserve_covers_the_fusion_minimum_unless_time_is_short(seconds):
    budget = TimeBudget(seconds)
    reserve = budget.finish_reserve()
    assert reserve <= max(FINISH_RESERVE_SECONDS, MIN_FUSION_SECONDS + REPORT_RESERVE_SECONDS) + 1e-9
    assert reserve <= 0.5 * seconds + 1e-9
    if seconds >= 2 * (MIN_FUSION_SECONDS + REPORT_RESERVE_SECONDS) + 1:
        assert reserve >= MIN_FUSION_SECONDS + REPORT_RESERVE_SECONDS - 1e-9


def test_autogluon_gets_the_share_less_the_expected_overrun():
    budget = TimeBudget(600.0)
    assert budget.fit_limit(112.0) == pytest.approx(112.0 / (1 + FIRST_OVERRUN))
    budget.record_fit(50.0, 40.0)   # finished early: says nothing about the overrun
    assert budget.overrun() == FIRST_OVERRUN
    budget.record_fit(50.0, 55.0)
    budget.record_fit(100.0, 120.0)
    assert budget.overrun() == pytest.approx(0.15)
    assert budget.fit_limit(115.0) == pytest.approx(100.0)
    budget.record_fit(10.0, 100.0)   # a fit that ran far past its limit counts at the cap
    assert budget.overrun() == pytest.approx((0.1 + 0.2 + MAX_OVERRUN) / 3)


@settings(max_examples=200, deadline=None)
@given(members=st.integers(2, 8), seconds=st.floats(120.0, 36000.0), overrun=st.floats(0.0, MAX_OVERRUN))
def test_once_measured_a_fits_overrun_stays_inside_its_share(members, seconds, overrun):
    """Members whose fits all run the same fraction past AutoGluon's limit: after the first, each takes its
    share and no more, and the job ends inside its budget with the finish reserve left."""
    budget = TimeBudget(seconds)
    for position in range(members):
        share = budget.member_share(members - position)
        limit = budget.fit_limit(share)
        taken = limit * (1 + overrun)
        if position > 0:
            assert taken <= share * (1 + 1e-6)
            if overrun > 1e-6:
                assert taken == pytest.approx(share, rel=1e-6)
        budget.record_fit(limit, taken)
        spend(budget, taken)
    if share > MIN_MEMBER_SECONDS and overrun <= FIRST_OVERRUN:
        assert budget.remaining() > 0
