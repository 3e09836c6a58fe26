import numpy as np
import pytest

from multimodal.errors import PlatformError
from multimodal.classifier.projection import FeatureProjection


def _low_rank(rows=300, width=64, rank=5, seed=0):
    random = np.random.default_rng(seed)
    basis = random.normal(size=(rank, width))
    return (random.normal(size=(rows, rank)) * [10, 5, 3, 2, 1]) @ basis + 7.0


def test_projection_matches_an_svd_and_keeps_the_variance_of_low_rank_data():
    features = _low_rank().astype(np.float32)
    projection = FeatureProjection.fit(features, 5)
    assert projection.n_components == 5 and projection.n_features_in == 64
    assert projection.explained_variance > 0.999
    projected = projection.transform(features)
    assert projected.dtype == np.float32 and projected.shape == (300, 5)
    # the same subspace as numpy's SVD of the centred data, and the variances in decreasing order
    centred = features - features.mean(axis=0)
    _, singular, axes = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
    np.testing.assert_allclose(np.abs(projection.components @ axes[:5].T), np.eye(5), atol=1e-4)
    variances = projected.var(axis=0)
    assert np.all(np.diff(variances) < 0)
    np.testing.assert_allclose(variances, singular[:5] ** 2 / 300, rtol=1e-3)
    # reconstruction from the 5 components is exact up to float32 rounding
    restored = projected @ projection.components + projection.mean
    np.testing.assert_allclose(restored, features, atol=1e-2)


def test_rows_mask_chunks_and_component_count():
    features = _low_rank(rows=9000, width=16).astype(np.float32)   # more rows than one chunk
    mask = np.arange(9000) % 3 != 0
    masked = FeatureProjection.fit(features, 4, rows=mask)
    copied = FeatureProjection.fit(features[mask], 4)
    np.testing.assert_allclose(masked.components, copied.components, atol=1e-5)
    np.testing.assert_allclose(masked.mean, copied.mean, rtol=1e-6)
    assert FeatureProjection.fit(features[:3], 256).n_components == 3, "no more components than rows"
    assert FeatureProjection.fit(features, 256).n_components == 16, "no more components than features"
    with pytest.raises(ValueError, match="cannot fit a projection on zero rows"):
        FeatureProjection.fit(features, 4, rows=np.zeros(9000, dtype=bool))
    with pytest.raises(ValueError, match="takes 16 features"):
        masked.transform(features[:, :8])


def test_fitting_twice_gives_identical_signs_and_values():
    features = _low_rank().astype(np.float32)
    first, second = FeatureProjection.fit(features, 3), FeatureProjection.fit(features.copy(), 3)
    np.testing.assert_array_equal(first.components, second.components)
    largest = np.abs(first.components).argmax(axis=1)
    assert (first.components[np.arange(3), largest] > 0).all()


def test_save_and_load_without_pickle(tmp_path):
    projection = FeatureProjection.fit(_low_rank().astype(np.float32), 4)
    path = projection.save(tmp_path / "projections" / "photo.npz")
    loaded = FeatureProjection.load(path)
    np.testing.assert_array_equal(loaded.components, projection.components)
    np.testing.assert_array_equal(loaded.mean, projection.mean)
    assert loaded.explained_variance == pytest.approx(projection.explained_variance)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(PlatformError, match="photo.npz"):
        FeatureProjection.load(path)
    with pytest.raises(PlatformError, match="absent.npz"):
        FeatureProjection.load(tmp_path / "absent.npz")
