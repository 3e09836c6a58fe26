"""How good a fitted model is, in one place: the training report (each member's out-of-fold metrics, the
blend and the network on the network's hold-out rows, modality importance there), the metrics on labelled
rows (the validation channel, or any labelled table), and each modality's permutation importance for the
final (blended) prediction. ``MultimodalClassifier`` and the training job both call these."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from multimodal.classifier.features import split_modalities
from multimodal.classifier.importance import block_shuffler, describe_importance, modality_importance
from multimodal.classifier.labels import drop_missing_labels
from multimodal.classifier.learner import FitRecord, FusionLearner
from multimodal.classifier.metrics import classification_metrics
from multimodal.classifier.schema import LABEL_COLUMN

logger = logging.getLogger(__name__)


def training_report(learner: FusionLearner, record: FitRecord, params: dict) -> dict:
    """Metrics from training alone: each member's training-row probabilities (out of fold by default), scored
    on the rows where it was present, the blend weights, and the blend and the network alone on the network's
    held-out split (which chose the epoch and the weights: slightly optimistic), with modality importance."""
    n = learner.label_map.n_classes
    inputs, codes, rows = record.fusion_inputs, record.codes, record.validation_rows
    report = {"stacking": params["stacking"], "blend": learner.blend.described(), "members": {}}
    for (name, columns), member in zip(learner.member_columns(), learner.members):
        block = inputs[:, columns]
        present = block[:, :n].sum(axis=1) > 0
        if len(member.layout) > n:
            present &= block[:, n] < 0.5
        report["members"][name] = classification_metrics(codes[present], block[present, :n])
    if len(rows):
        held_out = learner.blend.predict_proba(inputs[rows])
        report["blend_holdout"] = classification_metrics(codes[rows], held_out)
        report["fusion_network_holdout"] = classification_metrics(codes[rows],
                                                                  learner.network.predict_proba(inputs[rows]))
        # No joint features: these rows' fusion inputs are out of fold, and the joint member predicting again
        # on shuffled training rows would use fold models that saw them (the contributions came out skewed).
        importance = modality_importance(learner.blend.predict_proba, inputs[rows], codes[rows],
                                         importance_shufflers(learner, inputs[rows], None), seed=params["seed"])
        if importance:
            report["modality_importance"] = {"source": "fusion network hold-out split", **importance}
            logger.info("modality contributions (each shuffled on the %d hold-out rows): %s", len(rows),
                        describe_importance(importance))
    return report


def holdout(learner: FusionLearner, record: FitRecord) -> tuple[np.ndarray, np.ndarray] | None:
    """(label codes, blend probabilities) of the rows the fusion network held out, or None."""
    rows = record.validation_rows
    if not len(rows):
        return None
    return record.codes[rows], learner.blend.predict_proba(record.fusion_inputs[rows])


def evaluate(learner: FusionLearner, data: pd.DataFrame, seed: int = 0, rows_name: str = "labelled",
             image_folder=None) -> tuple[dict, np.ndarray, np.ndarray]:
    """The blend's and each member's metrics on labelled ``data``, and each modality's permutation importance;
    also the label codes and the blend's probabilities of the labelled rows (for a confusion matrix).
    ``rows_name`` says in the log what the rows are (``validation``); ``image_folder``: where image cells given
    as paths are read (``image_files.ImageFolder``)."""
    labelled = drop_missing_labels(data, LABEL_COLUMN)
    codes = learner.label_map.encode(labelled[LABEL_COLUMN])
    inputs = learner.fusion_inputs(labelled, image_folder=image_folder)
    proba = learner.blend.predict_proba(inputs)
    n = learner.label_map.n_classes
    result = {"blend": classification_metrics(codes, proba), "members": {}}
    for name, columns in learner.member_columns():
        result["members"][name] = classification_metrics(codes, inputs[:, columns][:, :n])
    importance = importance_on(learner, labelled, codes, inputs, seed=seed)
    if importance:
        result["modality_importance"] = importance
        logger.info("modality contributions (each shuffled on the %d %s rows): %s", len(codes), rows_name,
                    describe_importance(importance))
    if len(codes):
        result["modality_attribution"] = modality_attribution(learner, labelled, image_folder)
        logger.info("modality attributions (exact Shapley values of the predicted label's probability, mean "
                    "absolute over the %d %s rows): %s", len(codes), rows_name,
                    ", ".join(f"{name} {values['mean_abs']:.3f}"
                              for name, values in result["modality_attribution"].items() if name != "baseline"))
    return result, codes, proba


def modality_attribution(learner: FusionLearner, data: pd.DataFrame, image_folder=None) -> dict[str, dict]:
    """Each modality's exact Shapley value of the predicted label's probability over ``data``'s rows: its
    mean absolute value and its mean (``multimodal.classifier.explanations``), and the baseline's mean."""
    from multimodal.classifier.explanations import ModalityExplainer, shapley_values

    explainer = ModalityExplainer(learner)
    values = explainer.coalition_values(data, image_folder=image_folder)
    contributions = shapley_values(values)
    rows = np.arange(values.shape[1])
    predicted = values[-1].argmax(axis=1)
    result = {"baseline": {"mean": float(values[0][rows, predicted].mean()), "rows": int(len(rows))}}
    for player, phi in zip(explainer.players, contributions):
        picked = phi[rows, predicted]
        result[player.name] = {"mean_abs": float(np.abs(picked).mean()), "mean": float(picked.mean())}
    return result


def importance_on(learner: FusionLearner, labelled: pd.DataFrame, codes: np.ndarray, inputs: np.ndarray,
                  repeats: int = 5, seed: int = 0) -> dict[str, dict]:
    """Permutation importance of each modality on labelled rows whose fusion inputs are ``inputs``."""
    joint = split_modalities(labelled, learner.schema).joint_tabular()
    shufflers = importance_shufflers(learner, inputs, joint[0] if joint else None)
    return modality_importance(learner.blend.predict_proba, inputs, codes, shufflers, repeats=repeats, seed=seed)


def importance_shufflers(learner: FusionLearner, inputs: np.ndarray, joint_features: pd.DataFrame | None) -> list:
    """One shuffler per modality. The joint member is not a modality of its own: a modality's shuffle
    recomputes the joint member's probabilities from the shuffled columns (``joint_features``: all non-image
    columns of the scored rows). Without ``joint_features`` (training rows, whose inputs are out of fold) the
    joint member is shuffled as a block of its own instead."""
    blocks = dict(learner.member_columns())
    joints = learner.joint_members()
    shufflers = []
    for member in learner.members:
        own = block_shuffler(inputs, blocks[member.name])
        if not member.is_modality:
            if joint_features is None:
                shufflers.append((member.name, own))
            continue
        readers = [joint for joint in joints if set(member.columns) <= set(joint.columns)]
        if not readers or joint_features is None:
            shufflers.append((member.name, own))
            continue

        def shuffled(permutation, own=own, columns=member.columns, readers=readers):
            result = own(permutation)
            features = joint_features.copy()
            for column in columns:  # column by column keeps each column's dtype (categoricals stay categorical)
                features[column] = features[column].iloc[permutation].set_axis(features.index)
            for reader in readers:
                result[:, blocks[reader.name]] = reader.predict_proba(features[reader.columns])
            return result

        shufflers.append((member.name, shuffled))
    return shufflers
