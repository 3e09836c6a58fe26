"""The time budget's shares: each member's weight's part of what is left, handed on when unused."""
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multimodal.classifier.budget import FINISH_RESERVE_SECONDS, MIN_MEMBER_SECONDS, TimeBudget
from multimodal.classifier.features import split_modalities
from multimodal.classifier.members import JointMember, plan_members
from multimodal.classifier.schema import infer_schema


def spend(budget: TimeBudget, seconds: float) -> None:
    """Move the budget's clock on by ``seconds`` (as a member that ran that long)."""
    budget.started -= seconds


def test_a_share_is_the_weight_part_of_what_remains_after_the_reserve():
    budget = TimeBudget(1000.0)
    available = budget.remaining() - FINISH_RESERVE_SECONDS
    assert budget.member_share(3.0, 6.0) == pytest.approx(available / 2, abs=0.5)
    assert budget.member_share(1.0, 6.0) == pytest.approx(available / 6, abs=0.5)
    assert budget.member_share(1.0, 1.0) == pytest.approx(available, abs=0.5)


@settings(max_examples=200, deadline=None)
@given(weights=st.lists(st.floats(0.25, 8.0), min_size=1, max_size=6), seconds=st.floats(60.0, 36000.0),
       used=st.lists(st.floats(0.0, 1.0), min_size=6, max_size=6))
def test_members_that_keep_to_their_shares_never_overdraw_and_unused_time_goes_on(weights, seconds, used):
    budget = TimeBudget(seconds)
    shares = []
    for position, weight in enumerate(weights):
        share = budget.member_share(weight, sum(weights[position:]))
        assert share >= MIN_MEMBER_SECONDS
        shares.append(share)
        spend(budget, share * used[position])
    if not any(s == MIN_MEMBER_SECONDS for s in shares):
        assert budget.remaining() > 0, "the finish reserve is left for the fusion network and saving"


@settings(max_examples=100, deadline=None)
@given(weights=st.lists(st.floats(0.25, 8.0), min_size=2, max_size=6), seconds=st.floats(200.0, 36000.0),
       used=st.floats(0.0, 0.9))
def test_time_a_member_leaves_unused_goes_to_the_members_after_it(weights, seconds, used):
    thrifty, greedy = TimeBudget(seconds), TimeBudget(seconds)
    share = thrifty.member_share(weights[0], sum(weights))
    spend(thrifty, share * used)
    spend(greedy, share)
    after_thrifty = thrifty.member_share(weights[1], sum(weights[1:]))
    after_greedy = greedy.member_share(weights[1], sum(weights[1:]))
    assert after_thrifty >= after_greedy
    if after_greedy > MIN_MEMBER_SECONDS and used < 0.8:
        assert after_thrifty > after_greedy


def test_with_a_fixed_reserve_shares_are_in_proportion_to_the_weights():
    weights = [1.0, 1.0, 1.0, 3.0]
    budget = TimeBudget(3600.0)
    shares = []
    for position, weight in enumerate(weights):
        shares.append(budget.member_share(weight, sum(weights[position:])))
        spend(budget, shares[-1])
    assert shares[3] == pytest.approx(3 * shares[0], rel=0.01)
    assert shares[1] == pytest.approx(shares[0], rel=0.01)


def test_the_joint_member_weighs_as_much_as_the_members_whose_columns_it_reads():
    data = pd.DataFrame({"a_text": ["x y", "z"], "b_num": [1.0, 2.0], "c_cat": ["u", "v"],
                         "d_image": ["", ""], "label": ["p", "q"]})
    members = plan_members(split_modalities(data, infer_schema(data.columns)), joint=True)
    weights = {m.name: m.budget_weight for m in members}
    joint = next(m for m in members if isinstance(m, JointMember))
    assert weights[joint.name] == 3.0
    assert all(w == 1.0 for name, w in weights.items() if name != joint.name)
