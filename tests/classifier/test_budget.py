"""The time budget's shares: an equal part of what is left for each member still to fit, handed on when
unused, the finish reserve kept."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multimodal.classifier.budget import FINISH_RESERVE_SECONDS, MIN_MEMBER_SECONDS, TimeBudget


def spend(budget: TimeBudget, seconds: float) -> None:
    """Move the budget's clock on by ``seconds`` (as a member that ran that long)."""
    budget.started -= seconds


def test_a_share_is_an_equal_part_of_what_remains_after_the_reserve():
    budget = TimeBudget(1000.0)
    available = budget.remaining() - FINISH_RESERVE_SECONDS
    assert budget.member_share(4) == pytest.approx(available / 4, abs=0.5)
    assert budget.member_share(1) == pytest.approx(available, abs=0.5)
    small = TimeBudget(100.0)
    assert small.member_share(1) == pytest.approx(0.85 * small.remaining(), abs=0.5), "reserve: 15 % below 400 s"
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
