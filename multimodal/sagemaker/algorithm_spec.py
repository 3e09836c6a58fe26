"""The SageMaker ``CreateAlgorithm`` request, built from the project's declarations (no copy by hand):
hyperparameters from ``hyperparameter_specification.json`` (the classifier's) and ``job_hyperparameters.json``
(the training job's), metrics and tuning objectives from
``metric_definitions.json``, channels from ``multimodal.sagemaker.channels``, content types from
``multimodal.sagemaker.serving.payloads``.

``python -m multimodal.sagemaker.algorithm_spec --name NAME --training-image URI --inference-image URI`` prints it.
"""
from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path

from multimodal.sagemaker.channels import CHANNELS, JOB_SPEC_PATH
from multimodal.classifier.hyperparameters import SPEC_PATH
from multimodal.sagemaker.serving.payloads import CONTENT_TYPES
from multimodal.sagemaker.serving.responses import ACCEPT_TYPES

METRICS_PATH = Path(str(resources.files("multimodal.sagemaker").joinpath("metric_definitions.json")))  # package data
# m7i/c7i (Sapphire Rapids) compute bfloat16 natively: the image embedding runs in bf16 there, fp32 on m5/c5.
# CPU instances only for the standard images: their CUDA 13 torch needs NVIDIA driver R580+, and SageMaker's
# default drivers are older (470 on ml.g4dn/ml.g5, 535 on ml.g6/ml.p5, 550 on ml.p5e), so a GPU instance would
# run on its CPU. The GPU images (build_push.sh --gpu: a base with CUDA forward-compatibility libraries) add
# GPU_INSTANCE_TYPES.
TRAINING_INSTANCE_TYPES = ["ml.m5.xlarge", "ml.m5.2xlarge", "ml.m5.4xlarge", "ml.c5.2xlarge", "ml.c5.4xlarge",
                           "ml.m7i.xlarge", "ml.m7i.2xlarge", "ml.m7i.4xlarge", "ml.c7i.2xlarge", "ml.c7i.4xlarge"]
TRANSFORM_INSTANCE_TYPES = ["ml.m5.xlarge", "ml.m5.2xlarge", "ml.m5.4xlarge", "ml.c5.2xlarge",
                            "ml.m7i.xlarge", "ml.m7i.2xlarge", "ml.c7i.2xlarge"]
GPU_INSTANCE_TYPES = ["ml.g5.xlarge", "ml.g5.2xlarge", "ml.g6.xlarge", "ml.g6.2xlarge"]
DESCRIPTION = ("Multimodal classification of CSV rows (or augmented manifests) with text, numeric, categorical and "
               "image columns (base64 or image files): "
               "one AutoGluon model per modality, ResNet50 image features, a TensorFlow fusion network.")


def create_algorithm_request(name: str, training_image: str, inference_image: str, gpu: bool = False) -> dict:
    """The full ``CreateAlgorithm`` input for the two image URIs (``gpu``: images built with ``--gpu``)."""
    gpus = GPU_INSTANCE_TYPES if gpu else []
    metrics = json.loads(METRICS_PATH.read_text(encoding="utf-8"))
    channels = [{
        "Name": spec.name,
        "Description": spec.description,
        "IsRequired": spec.required,
        "SupportedContentTypes": list(spec.content_types),
        "SupportedCompressionTypes": list(spec.compression_types),
        "SupportedInputModes": list(spec.input_modes),
    } for spec in CHANNELS]
    return {
        "AlgorithmName": name,
        "AlgorithmDescription": DESCRIPTION,
        "TrainingSpecification": {
            "TrainingImage": training_image,
            "SupportedHyperParameters": (json.loads(SPEC_PATH.read_text(encoding="utf-8"))
                                         + json.loads(JOB_SPEC_PATH.read_text(encoding="utf-8"))),
            "SupportedTrainingInstanceTypes": TRAINING_INSTANCE_TYPES + gpus,
            "SupportsDistributedTraining": True,   # the hosts of a job train together on Ray
            "MetricDefinitions": metrics["MetricDefinitions"],
            "TrainingChannels": channels,
            "SupportedTuningJobObjectiveMetrics": metrics["SupportedTuningJobObjectiveMetrics"],
        },
        "InferenceSpecification": {
            "Containers": [{"Image": inference_image}],
            "SupportedTransformInstanceTypes": TRANSFORM_INSTANCE_TYPES + gpus,
            "SupportedRealtimeInferenceInstanceTypes": TRANSFORM_INSTANCE_TYPES + gpus,
            "SupportedContentTypes": sorted(CONTENT_TYPES),
            "SupportedResponseMIMETypes": list(ACCEPT_TYPES),
        },
        "CertifyForMarketplace": False,
    }


def main(argv: list[str] | None = None) -> int:
    """Print (or write with --output) the CreateAlgorithm request as JSON; exit 2 if it fails validation."""
    parser = argparse.ArgumentParser(description="Write the SageMaker CreateAlgorithm request.")
    parser.add_argument("--name", required=True)
    parser.add_argument("--training-image", required=True)
    parser.add_argument("--inference-image", required=True)
    parser.add_argument("--output", help="file to write (default: stdout)")
    parser.add_argument("--gpu", action="store_true", help="the images were built with build_push.sh --gpu: list GPU "
                                                           "instance types too")
    args = parser.parse_args(argv)
    from multimodal.sagemaker import aws_shapes

    request = create_algorithm_request(args.name, args.training_image, args.inference_image, gpu=args.gpu)
    problems = aws_shapes.problems(request, aws_shapes.input_shape("CreateAlgorithm"))
    if problems:
        print("CreateAlgorithm request is not valid:\n" + "\n".join(problems), file=sys.stderr)
        return 2
    text = json.dumps(request, indent=2) + "\n"
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
