"""Shared fixtures. torch and torchvision are imported first: TensorFlow before triton segfaults."""
import os

import torch  # noqa: F401
import torchvision  # noqa: F401
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Fast settings for real fits on small data.
# image_components=16: the session model also covers the optional principal-component projection.
FAST = dict(quality="toy", n_mins=2, num_folds=2, n_epochs=60, learning_rate=0.01, image_weights="random",
            image_components=16)


@pytest.fixture(scope="session")
def train_frame():
    from synthetic import make_frame

    return make_frame(60, seed=0)


@pytest.fixture(scope="session")
def test_frame():
    from synthetic import make_frame

    return make_frame(24, seed=1)


@pytest.fixture(scope="session")
def fitted(train_frame):
    """One four-modality model fitted once for the whole session."""
    from multimodal import MultimodalClassifier

    return MultimodalClassifier(**FAST).fit(train_frame)


@pytest.fixture(scope="session")
def saved_model_dir(fitted, tmp_path_factory):
    return fitted.save(tmp_path_factory.mktemp("model") / "model")


@pytest.fixture(scope="session")
def app_client(fitted):
    """Flask's test client over the app serving the session's model (MaxPayloadInMB 1)."""
    from multimodal.sagemaker.serving.app import ModelHolder, create_app
    from multimodal.sagemaker.serving.settings import ServerSettings

    holder = ModelHolder(lambda: fitted)
    app = create_app(holder, ServerSettings(max_payload_mb=1))
    holder.ready.wait(30)
    return app.test_client()
