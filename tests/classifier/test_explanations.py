"""Exact Shapley values over the modalities: the arithmetic against brute force, and the coalitions against the
real prediction path with the absent modalities' columns missing."""
import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from conftest import FAST
from multimodal.classifier.explanations import ModalityExplainer, shapley_values


def brute_force(values: np.ndarray) -> np.ndarray:
    """The Shapley value by its definition: the mean marginal contribution over every order of the players."""
    m = int(math.log2(len(values)))
    result = np.zeros((m,) + values.shape[1:])
    for order in itertools.permutations(range(m)):
        coalition = 0
        for player in order:
            result[player] += values[coalition | 1 << player] - values[coalition]
            coalition |= 1 << player
    return result / math.factorial(m)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_exact_against_brute_force_with_efficiency_symmetry_and_dummy(m, seed):
    random = np.random.default_rng(seed)
    values = random.random((2 ** m, 3))
    phi = shapley_values(values)
    np.testing.assert_allclose(phi, brute_force(values), atol=1e-12)
    np.testing.assert_allclose(phi.sum(axis=0), values[-1] - values[0], atol=1e-12)
    # a player that never changes the value (a dummy) gets 0; two interchangeable players get the same
    dummy = values[[s & ~1 for s in range(2 ** m)]]
    assert np.allclose(shapley_values(dummy)[0], 0.0, atol=1e-12)
    if m >= 2:
        table = random.random((3, 2 ** (m - 2), 3))
        symmetric = np.array([table[bin(s & 3).count("1"), s >> 2] for s in range(2 ** m)])
        phi = shapley_values(symmetric)
        np.testing.assert_allclose(phi[0], phi[1], atol=1e-12)


def _blanked(frame: pd.DataFrame, columns) -> pd.DataFrame:
    blanked = frame.copy()
    for column in columns:
        blanked[column] = None
    return blanked


def test_every_coalition_is_the_prediction_with_the_other_modalities_missing(fitted, test_frame):
    """The product's own path is the judge: for each of the 16 coalitions of the session model's four
    modalities, predict_proba of the rows with the absent modalities' columns missing."""
    rows = test_frame.drop(columns=["label"]).head(8)
    explainer = ModalityExplainer(fitted.learner_)
    assert [p.name for p in explainer.players] == ["text", "num", "cat", "img/photo_image"]
    values = explainer.coalition_values(rows)
    enumerated = []
    for coalition in range(2 ** len(explainer.players)):
        absent = [c for i, p in enumerate(explainer.players) if not coalition >> i & 1 for c in p.columns]
        enumerated.append(fitted.predict_proba(_blanked(rows, absent)).to_numpy())
        np.testing.assert_allclose(values[coalition], enumerated[-1], atol=1e-5, err_msg=f"coalition {coalition:04b}")
    # explain() against the Shapley values by their definition over those enumerated predictions
    by_definition = brute_force(np.array(enumerated))
    explained = fitted.explain(rows)
    predicted = [fitted.classes_.index(label) for label in explained["predicted"]]
    for i, player in enumerate(explainer.players):
        np.testing.assert_allclose(explained[player.name], by_definition[i][np.arange(len(rows)), predicted],
                                   atol=1e-5)


def test_explain_sums_exactly_to_the_probability_of_the_predicted_label(fitted, test_frame):
    rows = test_frame.drop(columns=["label"]).set_index(pd.Index([f"k{i}" for i in range(len(test_frame))]))
    explained = fitted.explain(rows)
    modalities = ["text", "num", "cat", "img/photo_image"]
    assert list(explained.columns) == ["predicted", "probability", "baseline", *modalities]
    assert explained.index.equals(rows.index)
    assert explained["predicted"].tolist() == fitted.predict(rows).tolist()
    proba = fitted.predict_proba(rows)
    np.testing.assert_allclose(explained["probability"], proba.max(axis=1), atol=1e-6)
    np.testing.assert_allclose(explained["baseline"] + explained[modalities].sum(axis=1), explained["probability"],
                               atol=1e-6)
    assert explained["baseline"].nunique() == 1 or explained["predicted"].nunique() > 1, "one baseline per class"

    every = fitted.explain(rows.head(3), all_classes=True)
    assert every.index.names == [None, "class"] and len(every) == 3 * len(fitted.classes_)
    np.testing.assert_allclose(every["probability"].to_numpy(),
                               fitted.predict_proba(rows.head(3)).to_numpy().reshape(-1), atol=1e-6)
    np.testing.assert_allclose(every["baseline"] + every[modalities].sum(axis=1), every["probability"], atol=1e-6)
    np.testing.assert_allclose(every.groupby(level=0)[modalities].sum().to_numpy(), 0.0, atol=1e-6)


@pytest.fixture(scope="module")
def numbers_carry_the_signal():
    """A model in which only the numbers carry the label, the text is noise and the category constant (its
    member is skipped and there is no joint member: nothing reads it)."""
    from multimodal import MultimodalClassifier
    from synthetic import make_frame

    frame = make_frame(90, seed=5, missing=0.0).drop(columns=["photo_image", "title_text"])
    frame["body_text"] = [" ".join(np.random.default_rng(i).choice(["a", "b", "c", "d"], 4)) for i in range(90)]
    frame["color_cat"] = "grey"
    params = {**FAST, "joint_model": "none"}
    return MultimodalClassifier(**params).fit(frame.iloc[:60]), frame.iloc[60:]


def test_an_ignored_modality_gets_zero_and_the_signal_agrees_with_permutation_importance(numbers_carry_the_signal):
    model, held_out = numbers_carry_the_signal
    assert "cat" not in [name for name, _ in model.member_columns()]
    explained = model.explain(held_out.drop(columns=["label"]))
    assert (explained["cat"] == 0.0).all()
    assert explained["num"].abs().mean() > 3 * explained["text"].abs().mean()
    importance = model.evaluate(held_out)["modality_importance"]
    assert importance["num"]["log_loss_increase"] > 0 and explained["num"].mean() > 0
