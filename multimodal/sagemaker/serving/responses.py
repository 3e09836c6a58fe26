"""What an ``/invocations`` answer holds and how it is written: pure functions, no web framework.

Two forms. The default form is this algorithm's own: ``ID,label[,p(class)...]`` (CSV) or
``{"ID", "label"[, "probabilities": {class: p}]}`` (JSON Lines; a list of those for JSON). The selected form
is the one SageMaker's built-in algorithms give (the XGBoost container, Autopilot's inference containers):
``SAGEMAKER_INFERENCE_OUTPUT`` (or, per request, the custom attribute ``inference_output``) names the keys,
a comma list of ``predicted_label``, ``labels``, ``probability``, ``probabilities`` (and this algorithm's
``ID``), and each record gets exactly those keys in that order; JSON wraps the records in
``{"predictions": [...]}``; a list-valued key is a JSON list (in a CSV cell, a JSON list in one quoted field).
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

import numpy as np

from multimodal.classifier.schema import ID_COLUMN, LABEL_COLUMN
from multimodal.errors import UserError
from multimodal.sagemaker.serving.payloads import CONTENT_TYPES, CSV, JSON, JSON_LINES, MediaType, PayloadError

ACCEPT_TYPES = (CSV, JSON_LINES, JSON)
PREDICTED_LABEL, LABELS, PROBABILITY, PROBABILITIES = "predicted_label", "labels", "probability", "probabilities"
# SageMaker's selectable keys for classification, and ID, which only this algorithm's records carry.
OUTPUT_KEYS = (PREDICTED_LABEL, LABELS, PROBABILITY, PROBABILITIES, ID_COLUMN)
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
INFERENCE_OUTPUT_ATTRIBUTE = "inference_output"
TRUE = ("true", "1", "yes", "on")       # how a request option or an environment variable says yes
FALSE = ("false", "0", "no", "off")
EXPLAIN = "explain"
EXPLANATION = "explanation"


class NotAcceptable(PayloadError):
    """An Accept type the server cannot answer in."""


class BadOutputSelection(UserError):
    """A list of output keys that names a key this server does not give."""


def output_keys(text: str, where: str) -> tuple[str, ...]:
    """The keys of a comma list such as ``predicted_label, probabilities`` (case and spaces do not matter;
    a key named twice counts once); ``BadOutputSelection`` names ``where`` and the unknown key."""
    keys: list[str] = []
    by_lower = {key.lower(): key for key in OUTPUT_KEYS}
    for raw in text.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        if name not in by_lower:
            raise BadOutputSelection(f"{where}: unknown output key {raw.strip()!r}; choose from "
                                     f"{', '.join(OUTPUT_KEYS)} (a comma list).")
        if by_lower[name] not in keys:
            keys.append(by_lower[name])
    if not keys:
        raise BadOutputSelection(f"{where}: no output key; choose from {', '.join(OUTPUT_KEYS)} (a comma list).")
    return tuple(keys)


def custom_attributes(header: str | None) -> dict[str, str]:
    """``name=value`` pairs of ``X-Amzn-SageMaker-Custom-Attributes``, separated by ``;`` (names lowercased).

    The header is the caller's own: parts that are not ``name=value`` and names this server does not read are
    left alone (other tools in the request's path may use them)."""
    attributes = {}
    for part in (header or "").split(";"):
        name, equals, value = part.partition("=")
        if equals and name.strip():
            attributes[name.strip().lower()] = value.strip()
    return attributes


@dataclass(frozen=True)
class ResponseSpec:
    """The answer's format (CSV, JSON Lines or JSON) and content: ``keys`` for the selected form, else the
    default form with or without ``probabilities``; ``explain``: each record's explanation too."""

    kind: str
    keys: tuple[str, ...] | None = None
    probabilities: bool = False
    explain: bool = False


def response_spec(accept: str | None, attributes_header: str | None, default_keys: tuple[str, ...] | None,
                  default_probabilities: bool, has_id: bool = True, default_explain: bool = False) -> ResponseSpec:
    """The answer a request asks for: the first offered Accept type (406 when none is), the keys of its
    ``inference_output`` custom attribute, else ``default_keys`` (SAGEMAKER_INFERENCE_OUTPUT), else the
    default form, with probabilities as the Accept parameter ``probabilities`` or ``default_probabilities``
    say. ``has_id``: whether the model has an ID column (the ``ID`` key needs one). Explanations: the Accept
    parameter or custom attribute ``explain``, else ``default_explain``."""
    for candidate in (accept or CSV).split(","):
        media = MediaType.parse(candidate, CSV)
        kind = CSV if media.type in ("*/*", "text/*") else CONTENT_TYPES.get(media.type, media.type)
        if kind in ACCEPT_TYPES:
            break
    else:
        raise NotAcceptable(f"cannot answer in {accept!r}; accept text/csv, application/jsonlines or "
                            "application/json.")
    attributes = custom_attributes(attributes_header)
    explain = _flag(media.parameters.get(EXPLAIN), "the Accept parameter explain")
    if explain is None:
        explain = _flag(attributes.get(EXPLAIN), f"the {CUSTOM_ATTRIBUTES_HEADER} attribute explain")
    explain = default_explain if explain is None else explain
    selected = attributes.get(INFERENCE_OUTPUT_ATTRIBUTE)
    keys = (output_keys(selected, f"{CUSTOM_ATTRIBUTES_HEADER} {INFERENCE_OUTPUT_ATTRIBUTE}") if selected is not None
            else default_keys)
    if keys is not None:
        if ID_COLUMN in keys and not has_id:
            raise BadOutputSelection(f"output key {ID_COLUMN!r}: the model has no {ID_COLUMN} column; leave it out of "
                                     f"SAGEMAKER_INFERENCE_OUTPUT and the {INFERENCE_OUTPUT_ATTRIBUTE} custom attribute.")
        return ResponseSpec(kind, keys, explain=explain)
    flag = media.parameters.get("probabilities")
    return ResponseSpec(kind, probabilities=(flag in TRUE) if flag is not None else default_probabilities,
                        explain=explain)


def _flag(value: str | None, where: str) -> bool | None:
    """``true``/``false`` (also 1/0, yes/no) of a request option; None when not given."""
    if value is None:
        return None
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    raise BadOutputSelection(f"{where}: {value!r} is not true or false.")


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _probability(p) -> float:
    return round(float(p), 6)


def selected_records(keys: tuple[str, ...], ids: list | None, labels: list, proba: np.ndarray,
                     classes: list) -> list[dict]:
    """One dict per record with exactly ``keys``, in that order. ``probability`` is, as in SageMaker's
    built-in algorithms, the probability of the second class for two classes (the one Clarify thresholds)
    and of the predicted label for more; ``probabilities`` follow ``labels``' order (the model's classes)."""
    plain_classes = [_plain(c) for c in classes]
    records = []
    for i, label in enumerate(labels):
        row = proba[i]
        values = {PREDICTED_LABEL: lambda: _plain(label),
                  LABELS: lambda: plain_classes,
                  PROBABILITY: lambda: _probability(row[1] if len(classes) == 2 else row.max()),
                  PROBABILITIES: lambda: [_probability(p) for p in row],
                  ID_COLUMN: lambda: ids[i] if ids is not None else None}
        records.append({key: values[key]() for key in keys})
    return records


def encode_results(spec: ResponseSpec, ids: list | None, labels: list, proba: np.ndarray, classes: list,
                   explanations: list[dict] | None = None) -> bytes:
    """One result per record, in order, in the form ``spec`` names (see the module's docstring); with
    ``explanations`` (one ``{"baseline": .., "<modality>": ..}`` per record, for the predicted label), each
    record's under ``"explanation"`` (JSON) or as columns after the others (CSV: baseline, then the modalities)."""
    selected = selected_records(spec.keys, ids, labels, proba, classes) if spec.keys is not None else None
    if spec.kind == CSV:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for i, label in enumerate(labels):
            if selected is not None:
                row = [json.dumps(v, ensure_ascii=False) if isinstance(v, list) else v for v in selected[i].values()]
            else:
                row = ([ids[i]] if ids is not None else []) + [_plain(label)]
                if spec.probabilities:
                    row += [f"{p:.6g}" for p in proba[i]]
            if explanations is not None:
                row += [f"{v:.6g}" for v in explanations[i].values()]
            writer.writerow(row)
        return buffer.getvalue().encode("utf-8")
    records = selected
    if records is None:
        records = []
        for i, label in enumerate(labels):
            item = {ID_COLUMN: ids[i]} if ids is not None else {}
            item[LABEL_COLUMN] = _plain(label)
            if spec.probabilities:
                item["probabilities"] = {str(c): _probability(p) for c, p in zip(classes, proba[i])}
            records.append(item)
    if explanations is not None:
        for record, explanation in zip(records, explanations):
            record[EXPLANATION] = {name: _probability(value) for name, value in explanation.items()}
    if selected is not None and spec.kind == JSON:
        return (json.dumps({"predictions": records}, ensure_ascii=False) + "\n").encode("utf-8")
    return _encode_objects(spec.kind, records)


def _encode_objects(kind: str, objects: list[dict]) -> bytes:
    if kind == JSON_LINES:
        return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects).encode("utf-8")
    return (json.dumps(objects, ensure_ascii=False) + "\n").encode("utf-8")
