import numpy as np

from multimodal import fusion


def test_layer_sizes_follow_the_original_formula():
    assert fusion.layer_sizes(14, 3) == (12, 7, 3)


def test_stratified_split_keeps_every_class_in_validation():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    train, validation = fusion.stratified_split(labels, 0.2, seed=0)
    assert len(validation) == 20 and len(np.intersect1d(train, validation)) == 0
    assert sorted(np.bincount(labels[validation]).tolist()) == [4, 6, 10]


def test_tiny_or_single_row_classes_fall_back_to_a_plain_split():
    labels = np.array([0, 0, 0, 0, 1])
    train, validation = fusion.stratified_split(labels, 0.4, seed=0)
    assert len(train) + len(validation) == 5


def test_network_learns_separable_inputs_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    def modality():     # a noisy probability vector per row, as one modality model would give
        raw = np.eye(3, dtype=np.float32)[labels] * 0.7 + rng.random((300, 3), dtype=np.float32) * 0.3
        return raw / raw.sum(axis=1, keepdims=True)

    inputs = np.concatenate([modality(), modality()], axis=1)
    model, validation_rows = fusion.train_network(inputs, labels, 3, epochs=60, batch_size=32, validation_fraction=0.2,
                                 patience=10, seed=0)
    proba = fusion.predict(model, inputs)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert (proba.argmax(axis=1) == labels).mean() > 0.95
    assert len(validation_rows) == 60
    fusion.save(model, tmp_path)
    assert np.array_equal(fusion.predict(fusion.load(tmp_path), inputs), proba)
