import numpy as np

from multimodal.classifier.importance import block_shuffler, describe_importance, modality_importance


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_the_block_the_prediction_uses_matters_and_the_other_does_not():
    random = np.random.default_rng(0)
    codes = random.integers(0, 3, 400)
    informative = np.eye(3)[codes] * 0.8 + 0.1          # a modality that knows the class
    noise = _softmax(random.normal(size=(400, 3)))       # a modality that knows nothing
    inputs = np.hstack([informative, noise])

    def predict_proba(x):                                # a fusion that follows the first block only
        return _softmax(5 * x[:, :3])

    blocks = [("img", block_shuffler(inputs, slice(0, 3))), ("text", block_shuffler(inputs, slice(3, 6)))]
    importance = modality_importance(predict_proba, inputs, codes, blocks)
    assert importance["img"]["accuracy_drop"] > 0.5 and importance["img"]["log_loss_increase"] > 1.0
    assert importance["text"]["accuracy_drop"] == 0 and importance["text"]["log_loss_increase"] == 0
    assert importance["img"]["rows"] == 400 and importance["img"]["repeats"] == 5
    assert describe_importance(importance).startswith("img +")
    again = modality_importance(predict_proba, inputs, codes, blocks)
    assert again == importance, "seeded: the same report twice"
    assert modality_importance(predict_proba, inputs[:1], codes[:1], blocks[:1]) == {}
