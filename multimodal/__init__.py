"""Multimodal classification (text, numeric, categorical and image columns) for SageMaker and Python.

``from multimodal import MultimodalClassifier`` loads the heavy frameworks only when the class is used.
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["MultimodalClassifier", "__version__"]


def __getattr__(name: str):
    if name == "MultimodalClassifier":
        from multimodal.classifier.estimator import MultimodalClassifier

        return MultimodalClassifier
    raise AttributeError(f"module 'multimodal' has no attribute {name!r}")
