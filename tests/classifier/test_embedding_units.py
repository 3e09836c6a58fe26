"""Image embeddings kept as checkpoint units chunk by chunk: a resumed column equals one embedded in one go."""
from __future__ import annotations

import numpy as np
import pytest

from multimodal.classifier import embedding_units, images
from multimodal.classifier.budget import TimeBudget
from multimodal.classifier.checkpoints import UnitStore
from multimodal.classifier.embedding_units import embed_resumable, unit_name
from synthetic import jpeg_base64


@pytest.fixture(scope="module")
def embedder():
    return images.ImageEmbedder("random", batch_size=4)


@pytest.fixture(scope="module")
def cells():
    colors = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    column = [jpeg_base64(colors[i % 3], shape="ellipse" if i % 2 else "rect") for i in range(21)]
    column[3], column[10] = "", "not an image"
    return column


def test_a_column_embedded_in_chunks_and_resumed_equals_one_embedded_in_one_go(embedder, cells, tmp_path,
                                                                            monkeypatch, caplog):
    monkeypatch.setattr(embedding_units, "CHUNK_ROWS", 8)
    whole = embedder.embed(cells, "photo_image")
    store = UnitStore(tmp_path)
    chunked = embed_resumable(embedder, cells, "photo_image", None, store, None)
    assert store.computed == [unit_name("photo_image", i) for i in range(3)]
    for got, expected in zip(chunked[:2], whole[:2]):
        np.testing.assert_array_equal(got, expected)
    assert chunked[2] == whole[2] == 1

    budget = TimeBudget(600)
    started = budget.started
    caplog.set_level("INFO", logger="multimodal")
    again = UnitStore(tmp_path)
    resumed = embed_resumable(embedder, cells, "photo_image", None, again, budget)
    assert again.resumed == store.computed and not again.computed
    np.testing.assert_array_equal(resumed[0], whole[0])
    assert resumed[2] == 1
    assert started - budget.started > 0, "the reused chunks' time is charged to the budget"
    assert any("3 of 3 embedding chunks resumed" in r.getMessage() for r in caplog.records)


def test_a_changed_cell_recomputes_only_its_chunk(embedder, cells, tmp_path, monkeypatch):
    monkeypatch.setattr(embedding_units, "CHUNK_ROWS", 8)
    embed_resumable(embedder, cells, "photo_image", None, UnitStore(tmp_path), None)
    changed = list(cells)
    changed[12] = cells[1]
    assert changed[12] != cells[12]
    store = UnitStore(tmp_path)
    features, missing, _ = embed_resumable(embedder, changed, "photo_image", None, store, None)
    assert store.computed == [unit_name("photo_image", 1)]
    assert store.resumed == [unit_name("photo_image", 0), unit_name("photo_image", 2)]
    np.testing.assert_array_equal(features[12], features[1])


def test_unit_names_are_plain_and_distinct_for_every_column_name(tmp_path):
    names = {unit_name(column, 0) for column in ["photo_image", "photo image", "photo/image", ".x_image", "фото_image"]}
    assert len(names) == 5
    store = UnitStore(tmp_path)
    for name in names:
        assert store.unit_dir(name).parent == tmp_path   # a plain name: the store accepts it


def test_without_a_store_the_column_is_embedded_as_before(embedder, cells, tmp_path):
    features, missing, undecodable = embed_resumable(embedder, cells, "photo_image", None, None, None)
    np.testing.assert_array_equal(features, embedder.embed(cells, "photo_image")[0])
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_a_refit_with_images_resumes_the_embeddings_and_the_members_and_predicts_the_same(train_frame, test_frame,
                                                                                         tmp_path, caplog):
    from conftest import FAST

    from multimodal import MultimodalClassifier
    from multimodal.classifier.fusion_units import BLEND_UNIT, NETWORK_UNIT
    from multimodal.classifier.member_units import unit_name as member_unit

    first = MultimodalClassifier(**FAST).fit(train_frame, checkpoint_dir=tmp_path)
    units = sorted(p.name for p in tmp_path.iterdir())
    assert units == sorted([unit_name("photo_image", 0), NETWORK_UNIT, BLEND_UNIT]
                           + [member_unit(m) for m in first.members_])
    caplog.set_level("INFO", logger="multimodal")
    again = MultimodalClassifier(**FAST).fit(train_frame, checkpoint_dir=tmp_path)
    summary = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("checkpoints in"))
    assert f"resumed {len(units)} (" in summary and "computed 0" in summary
    np.testing.assert_allclose(again.predict_proba(test_frame).to_numpy(),
                               first.predict_proba(test_frame).to_numpy(), atol=1e-5)
