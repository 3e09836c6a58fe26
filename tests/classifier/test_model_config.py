import json

import pytest

from multimodal.errors import PlatformError
from multimodal.classifier.model_config import FILE_NAME, MemberEntry, ModelConfig


def config():
    return ModelConfig(schema={"columns": ["a_num", "label"], "text": [], "numeric": ["a_num"], "categorical": [],
                               "image": [], "has_id": False}, classes=["x", 2],
                       modalities=[MemberEntry("num", "num", ["a_num"], "num", [0, 1])],
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


def _edited(tmp_path, change):
    config().write(tmp_path)
    data = json.loads((tmp_path / FILE_NAME).read_text())
    change(data)
    (tmp_path / FILE_NAME).write_text(json.dumps(data))


@pytest.mark.parametrize("change, words", [
    (lambda d: d.pop("classes"), "lacks key(s) ['classes']"),
    (lambda d: d.update(extra=1), "has unknown key(s) ['extra']"),
    (lambda d: d["schema"].pop("numeric"), "'schema' lacks key(s) ['numeric']"),
    (lambda d: d["schema"].update(colour=[]), "'schema' has unknown key(s) ['colour']"),
    (lambda d: d["fusion"].pop("path"), "'fusion' lacks key(s) ['path']"),
    (lambda d: d["modalities"][0].pop("layout"), "'modalities[1]' lacks key(s) ['layout']"),
    (lambda d: d["modalities"][0].update(weight=2), "'modalities[1]' has unknown key(s) ['weight']"),
    (lambda d: d.update(modalities={}), "'modalities' is a JSON dict, expected a list"),
    (lambda d: d.update(modalities=[]), "at least 2 and 1"),
    (lambda d: d["modalities"].append("num"), "modalities[2] is not an object"),
    (lambda d: d.update(image_weights={"name": "random(seed=0)"}), "'image_weights' lacks key(s) ['sha256']"),
])
def test_missing_or_unknown_keys_are_one_line_reasons(tmp_path, change, words):
    _edited(tmp_path, change)
    with pytest.raises(PlatformError) as error:
        ModelConfig.read(tmp_path)
    assert words in str(error.value) and "\n" not in str(error.value)
    assert "train again" in str(error.value)
