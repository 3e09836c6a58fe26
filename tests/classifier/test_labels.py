import numpy as np
import pandas as pd
import pytest

from multimodal.errors import UserError
from multimodal.classifier.labels import LabelMap, drop_missing_labels, sentinel_labels


def test_string_labels_map_to_sorted_integers_and_back():
    labels = pd.Series(["dog", "cat", "fish", "cat"], name="label")
    label_map = LabelMap.fit(labels)
    assert label_map.classes == ("cat", "dog", "fish")
    codes = label_map.encode(labels)
    assert codes.tolist() == [1, 0, 2, 0]
    assert label_map.decode(codes).tolist() == ["dog", "cat", "fish", "cat"]


def test_integer_labels_keep_their_type():
    label_map = LabelMap.fit(pd.Series(np.array([10, 3, 10, 7]), name="label"))
    assert label_map.classes == (3, 7, 10)
    assert all(type(c) is int for c in label_map.classes)
    decoded = label_map.decode(np.array([2, 0]))
    assert decoded.tolist() == [10, 3] and decoded.dtype.kind == "i"


def test_fewer_than_two_classes_is_an_error():
    with pytest.raises(UserError, match="at least 2 classes"):
        LabelMap.fit(pd.Series(["a", "a"], name="label"))


def test_unknown_label_is_an_error():
    with pytest.raises(UserError, match="unknown label value 'z'"):
        LabelMap.fit(pd.Series(["a", "b"], name="label")).encode(pd.Series(["z"]))


def test_missing_labels_are_dropped_with_a_count(caplog):
    frame = pd.DataFrame({"label": ["a", None, "", "b", np.nan]})
    kept = drop_missing_labels(frame, "label")
    assert kept["label"].tolist() == ["a", "b"]
    assert "dropping 3 of 5" in caplog.text


@pytest.mark.parametrize("threshold, expected", [
    (1.0, [0, 1, 3, 2]),      # only the all-missing row gets the sentinel 3
    (0.5, [0, 3, 3, 2]),
    (0.01, [3, 3, 3, 2]),
])
def test_sentinel_rule_uses_the_missing_fraction_threshold(threshold, expected):
    codes = np.array([0, 1, 2, 2])
    missing_fraction = np.array([0.25, 0.5, 1.0, 0.0])
    assert sentinel_labels(codes, missing_fraction, threshold, n_classes=3).tolist() == expected
    assert codes.tolist() == [0, 1, 2, 2], "the mapped labels are not modified"


@pytest.mark.parametrize("cells, classes", [
    (["007", "7", "7"], ("007", "7")),        # leading zeros: text, two classes, spelled as in training
    (["1", "1.0", "2"], ("1", "1.0", "2")),  # not every label an integer: all text, 1 and 1.0 apart
    (["True", "1", "0"], ("0", "1", "True")),
    (["+7", "7"], ("+7", "7")),
    (["-3", "10", " 4 "], (-3, 4, 10)),        # canonical integers (spaces stripped): integers
])
def test_csv_labels_are_typed_by_one_rule_and_never_collide(cells, classes):
    from multimodal.classifier.labels import label_values

    label_map = LabelMap.fit(label_values(pd.Series(cells, name="label")))
    assert label_map.classes == classes
    assert label_map.decode(label_map.encode(label_values(pd.Series(cells)))).tolist() == \
        [c.strip() if isinstance(classes[0], str) else int(c) for c in cells]


def test_python_labels_of_different_types_stay_apart():
    label_map = LabelMap.fit(pd.Series([True, 1, 1.0, "1"], dtype=object, name="label"))
    assert [(type(c), c) for c in label_map.classes] == [(bool, True), (float, 1.0), (int, 1), (str, "1")]
    assert label_map.encode(pd.Series([True, 1, 1.0, "1"], dtype=object)).tolist() == [0, 2, 1, 3]
    assert [type(v) for v in label_map.decode(np.array([0, 2, 1, 3]))] == [bool, int, float, str]


def test_one_rule_over_both_channels():
    from multimodal.classifier.labels import integer_labels, unseen_labels

    train, validation = pd.Series(["1", "2", "x"]), pd.Series(["1", "2"])
    assert integer_labels([validation]) and not integer_labels([train, validation])
    assert unseen_labels(["1", "2", "x"], ["1", "3", None, "3"]) == ["3"]
    assert unseen_labels([1, 2], [True]) == [True]
