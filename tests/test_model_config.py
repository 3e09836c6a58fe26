import json

import pytest

from multimodal.errors import PlatformError
from multimodal.model_config import FILE_NAME, ModalityEntry, ModelConfig


def config():
    return ModelConfig(schema={"columns": ["a_num", "label"]}, classes=["x", 2],
                       modalities=[ModalityEntry("num", "num", ["a_num"], "num", [0, 1])],
                       fusion={"path": "wholistic/fusion.keras"}, hyperparameters={"quality": "toy"},
                       image_weights=None)


def test_round_trip(tmp_path):
    original = config()
    original.write(tmp_path)
    assert ModelConfig.read(tmp_path) == original
    data = json.loads((tmp_path / FILE_NAME).read_text())
    assert data["versions"]["python"] and "torch" in data["versions"] and data["classes"] == ["x", 2]


def test_missing_or_foreign_config_fails(tmp_path):
    with pytest.raises(PlatformError, match="model_config.json is missing"):
        ModelConfig.read(tmp_path)
    (tmp_path / FILE_NAME).write_text(json.dumps({"format": "other", "format_version": 1}))
    with pytest.raises(PlatformError, match="reads 'multimodal-classifier' version 1"):
        ModelConfig.read(tmp_path)
    (tmp_path / FILE_NAME).write_text("{broken")
    with pytest.raises(PlatformError, match="not valid JSON"):
        ModelConfig.read(tmp_path)
