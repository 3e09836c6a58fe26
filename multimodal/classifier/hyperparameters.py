"""The algorithm's hyperparameters, declared once as data in ``hyperparameter_specification.json``.

That file is a ``SupportedHyperParameters`` list for SageMaker ``CreateAlgorithm`` (the training job adds its
own few, on reading its channels, from ``multimodal/sagemaker/job_hyperparameters.json``, in the same form);
this module reads such lists and is the only place where raw values (strings from ``hyperparameters.json``,
JSON-encoded strings from SDK framework estimators, or Python values) become typed, range-checked values.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from multimodal.errors import UserError

SPEC_FILE_NAME = "hyperparameter_specification.json"
# Package data, found wherever the package is installed (the repository root links to it).
SPEC_PATH = Path(str(resources.files("multimodal.classifier").joinpath(SPEC_FILE_NAME)))
MAX_TEXT_CHARS = 2500   # SageMaker's limit on a hyperparameter value


@dataclass(frozen=True)
class Hyperparameter:
    """One declared hyperparameter: its type, range and default, as the specification states them."""

    name: str
    type: str
    description: str
    default: str | None
    minimum: float | None = None
    maximum: float | None = None
    values: tuple[str, ...] = ()
    tunable: bool = False
    required: bool = False

    def allowed(self) -> str:
        """Words for the allowed values, used in error messages."""
        if self.type == "FreeText":
            return f"text of at most {MAX_TEXT_CHARS} characters"
        if self.type == "Categorical":
            return "one of " + ", ".join(repr(v) for v in self.values)
        kind = "an integer" if self.type == "Integer" else "a number"
        return f"{kind} from {_number_text(self.minimum)} to {_number_text(self.maximum)}"

    def parse(self, raw: Any) -> Any:
        """Turn a raw value into this hyperparameter's Python type, or raise ``UserError``."""
        value = _unwrap(raw)
        if self.type == "FreeText":
            text = "" if value is None else value if isinstance(value, str) else json.dumps(value)
            if len(text) > MAX_TEXT_CHARS:
                raise self._error(raw)
            return text.strip()
        if self.type == "Categorical":
            text = str(value).strip() if not isinstance(value, bool) else str(value).lower()
            if text not in self.values:
                raise self._error(raw)
            return text
        if isinstance(value, bool):
            raise self._error(raw)
        try:
            number = float(str(value).strip()) if isinstance(value, str) else float(value)
        except (TypeError, ValueError):
            raise self._error(raw) from None
        if not math.isfinite(number):
            raise self._error(raw)
        if self.type == "Integer":
            if not number.is_integer():
                raise self._error(raw)
            number = int(number)
        if (self.minimum is not None and number < self.minimum) or (self.maximum is not None and number > self.maximum):
            raise self._error(raw)
        return number

    def _error(self, raw: Any) -> UserError:
        return UserError(f"hyperparameter '{self.name}' must be {self.allowed()}; got {raw!r}.")


def _number_text(value: float | None) -> str:
    if value is None:
        return "any"
    return str(int(value)) if float(value).is_integer() else str(value)


def _unwrap(raw: Any) -> Any:
    """Undo the JSON encoding SageMaker SDK framework estimators apply to every value ("\\"toy\\"")."""
    if isinstance(raw, str):
        try:
            decoded = json.loads(raw)
        except ValueError:
            return raw
        if isinstance(decoded, (str, int, float, bool)):
            return decoded
    return raw


def _declaration(entry: dict) -> Hyperparameter:
    kind = entry["Type"]
    spec_range = entry.get("Range", {})
    minimum = maximum = None
    values: tuple[str, ...] = ()
    if kind in ("Integer", "Continuous"):
        bounds = spec_range[f"{kind}ParameterRangeSpecification"]
        minimum, maximum = float(bounds["MinValue"]), float(bounds["MaxValue"])
    elif kind == "Categorical":
        values = tuple(spec_range["CategoricalParameterRangeSpecification"]["Values"])
    return Hyperparameter(
        name=entry["Name"], type=kind, description=entry.get("Description", ""),
        default=entry.get("DefaultValue"), minimum=minimum, maximum=maximum, values=values,
        tunable=bool(entry.get("IsTunable", False)), required=bool(entry.get("IsRequired", False)),
    )


@lru_cache(maxsize=None)
def load_specification(path: Path = SPEC_PATH) -> tuple[Hyperparameter, ...]:
    """The declared hyperparameters, in specification order."""
    with open(path, encoding="utf-8") as handle:
        return tuple(_declaration(entry) for entry in json.load(handle))


def declarations() -> dict[str, Hyperparameter]:
    """The declared hyperparameters by name."""
    return {h.name: h for h in load_specification()}


def defaults() -> dict[str, Any]:
    """Every hyperparameter's typed default value."""
    return {h.name: h.parse(h.default) for h in load_specification() if h.default is not None}


def validate(raw: Mapping[str, Any], ignore: tuple[str, ...] = (), also_valid: tuple[str, ...] = ()) -> dict[str, Any]:
    """Typed, range-checked values for every hyperparameter: the given ones over the defaults.

    Unknown names raise ``UserError`` listing the valid names (``also_valid``: names valid elsewhere, as the
    training job's own, listed too); names in ``ignore`` (for example SageMaker's ``_tuning_objective_metric``)
    are dropped silently.
    """
    declared = declarations()
    unknown = sorted(k for k in raw if k not in declared and k not in ignore)
    if unknown:
        raise UserError(f"unknown hyperparameter(s) {unknown}; valid names: {sorted([*declared, *also_valid])}.")
    values = defaults()
    for name, value in raw.items():
        if name in declared:
            values[name] = declared[name].parse(value)
    missing = sorted(h.name for h in declared.values() if h.required and h.name not in values)
    if missing:
        raise UserError(f"required hyperparameter(s) {missing} not given.")
    if time_budget_seconds(values) <= 0:
        raise UserError("the time budget n_hours*3600 + n_mins*60 + n_secs must be more than 0 seconds.")
    return values


def time_budget_seconds(values: Mapping[str, Any]) -> float:
    """The whole job's time budget in seconds from n_hours, n_mins and n_secs."""
    return 3600.0 * values["n_hours"] + 60.0 * values["n_mins"] + float(values["n_secs"])
