"""Checks of SageMaker API documents (CreateAlgorithm parts) against botocore's service model.

botocore's own ``ParamValidator`` checks required members, types, unknown keys and minimums; the
strict walk here adds what it skips: maximum lengths and counts, enums and patterns (Java-style
``\\p{...}`` classes, hence the ``regex`` package).
"""
from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=None)
def _service_model():
    import botocore.session

    return botocore.session.get_session().get_service_model("sagemaker")


def shape(name: str):
    """A shape of the SageMaker service model, e.g. ``HyperParameterSpecification``."""
    return _service_model().shape_for(name)


def input_shape(operation: str):
    """The request shape of a SageMaker operation, e.g. ``CreateAlgorithm``."""
    return _service_model().operation_model(operation).input_shape


def _strict(value, model_shape, path: str) -> list[str]:
    import regex

    errors: list[str] = []
    kind, metadata = model_shape.type_name, model_shape.metadata
    if kind == "structure" and isinstance(value, dict):
        for key, item in value.items():
            if key in model_shape.members:
                errors += _strict(item, model_shape.members[key], f"{path}.{key}")
    elif kind == "list" and isinstance(value, list):
        if "max" in metadata and len(value) > metadata["max"]:
            errors.append(f"{path}: more than {metadata['max']} items")
        for i, item in enumerate(value):
            errors += _strict(item, model_shape.member, f"{path}[{i}]")
    elif kind == "map" and isinstance(value, dict):
        if "max" in metadata and len(value) > metadata["max"]:
            errors.append(f"{path}: more than {metadata['max']} entries")
        for key, item in value.items():
            errors += _strict(key, model_shape.key, f"{path}<key {key!r}>")
            errors += _strict(item, model_shape.value, f"{path}[{key!r}]")
    elif kind == "string" and isinstance(value, str):
        if "max" in metadata and len(value) > metadata["max"]:
            errors.append(f"{path}: longer than {metadata['max']} characters")
        if model_shape.enum and value not in model_shape.enum:
            errors.append(f"{path}: {value!r} is not one of {model_shape.enum}")
        pattern = metadata.get("pattern")
        if pattern and not regex.fullmatch(pattern, value):
            errors.append(f"{path}: {value!r} does not match {pattern}")
    return errors


def problems(value, model_shape, path: str = "$") -> list[str]:
    """Everything wrong with ``value`` for ``model_shape``: botocore's checks, then the strict walk."""
    from botocore.validate import ParamValidator

    report = ParamValidator().validate(value, model_shape)
    found = [line for line in report.generate_report().splitlines() if line.strip()] if report.has_errors() else []
    return found + _strict(value, model_shape, path)
