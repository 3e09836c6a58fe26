import numpy as np
import pytest

from multimodal.classifier import fusion
from multimodal.errors import PlatformError
from multimodal.classifier.fusion_network import FusionNetwork


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
    assert len(validation) == 2 and len(train) == 3, "round(5 x 0.4) rows held out, without stratifying"
    assert sorted([*train, *validation]) == list(range(5))


def test_network_learns_separable_inputs_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    def modality():     # a noisy probability vector per row, as one modality model would give
        raw = np.eye(3, dtype=np.float32)[labels] * 0.7 + rng.random((300, 3), dtype=np.float32) * 0.3
        return raw / raw.sum(axis=1, keepdims=True)

    inputs = np.concatenate([modality(), modality()], axis=1)
    network, validation_rows = fusion.train_network(inputs, labels, 3, epochs=60, batch_size=32,
                                                    validation_fraction=0.2, patience=10, seed=0)
    proba = network.predict_proba(inputs)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert (proba.argmax(axis=1) == labels).mean() > 0.95
    assert len(validation_rows) == 60
    assert network.layer_sizes == list(fusion.layer_sizes(6, 3))

    # NumPy prediction equals Keras' own on the same weights; both files round-trip.
    keras_model = fusion.to_keras(network)
    keras_proba = np.asarray(keras_model(inputs, training=False), dtype=np.float64)
    np.testing.assert_allclose(proba, keras_proba, atol=1e-6)
    network.save(tmp_path)
    fusion.save_keras(network, tmp_path)
    assert np.array_equal(FusionNetwork.load(tmp_path).predict_proba(inputs), proba)
    np.testing.assert_allclose(fusion.load_keras(tmp_path).predict_proba(inputs), proba, atol=1e-7)


def test_a_damaged_network_file_fails_clearly(tmp_path):
    with pytest.raises(PlatformError, match="not a fusion network file"):
        FusionNetwork.load(tmp_path)
    (tmp_path / "fusion.npz").write_bytes(b"not numpy")
    with pytest.raises(PlatformError, match="not a fusion network file"):
        FusionNetwork.load(tmp_path)
    kernels = [np.zeros((4, 3), np.float32), np.zeros((2, 2), np.float32)]
    biases = [np.zeros(3, np.float32), np.zeros(2, np.float32)]
    FusionNetwork(kernels, biases, ["relu", "softmax"]).save(tmp_path)
    with pytest.raises(PlatformError, match="layer 2"):
        FusionNetwork.load(tmp_path)
    truncated = (tmp_path / "fusion.npz").read_bytes()[:60]
    (tmp_path / "fusion.npz").write_bytes(truncated)   # a zip cut short: BadZipFile inside numpy
    with pytest.raises(PlatformError, match="not a fusion network file"):
        FusionNetwork.load(tmp_path)
