import json

from multimodal.sagemaker import aws_shapes
from multimodal.sagemaker.algorithm_spec import create_algorithm_request, main
from multimodal.classifier.hyperparameters import SPEC_PATH
from multimodal.sagemaker.channels import JOB_SPEC_PATH

IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/multimodal-{}:0.1.0"


def test_request_is_valid_for_botocores_create_algorithm_shape_including_strict_rules():
    request = create_algorithm_request("multimodal-classification", IMAGE.format("training"), IMAGE.format("inference"))
    assert aws_shapes.problems(request, aws_shapes.input_shape("CreateAlgorithm")) == []
    training = request["TrainingSpecification"]
    assert training["SupportedHyperParameters"] == json.loads(SPEC_PATH.read_text()) + json.loads(
        JOB_SPEC_PATH.read_text()), "straight from the spec files"
    assert [c["Name"] for c in training["TrainingChannels"]] == ["train", "validation"]
    assert {"File", "Pipe", "FastFile"} == set(training["TrainingChannels"][0]["SupportedInputModes"])
    assert "text/csv" in request["InferenceSpecification"]["SupportedContentTypes"]
    assert training["SupportsDistributedTraining"] is True, "multi-instance jobs train on every host (Ray)"


def test_an_invalid_name_is_refused(capsys, tmp_path):
    code = main(["--name", "bad name!", "--training-image", "a", "--inference-image", "b",
                 "--output", str(tmp_path / "r.json")])
    assert code == 2 and "AlgorithmName" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_build_push_dry_run_prints_every_command_and_writes_the_request(tmp_path):
    import os
    import subprocess

    from sagemaker_tree import ROOT

    tripwire = tmp_path / "bin"
    tripwire.mkdir()
    for tool in ("docker", "aws"):   # a dry run must not call them: these fail loudly if it does
        (tripwire / tool).write_text(f"#!/bin/sh\necho '{tool} was called' >&2\nexit 99\n")
        (tripwire / tool).chmod(0o755)
    environment = {**os.environ, "PATH": f"{tripwire}:{os.environ['PATH']}", "BASE_IMAGE_GPU": "example/cuda-py311"}
    result = subprocess.run(["bash", "build_push.sh", "--dry-run", "--region", "eu-west-1", "--account",
                             "123456789012", "--tag", "t1", "--gpu", "--create-algorithm", "mm-test"],
                            cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "was called" not in result.stderr
    out = result.stdout
    registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    assert ("+ docker build --platform linux/amd64 -f docker/Dockerfile --target training "
            "--build-arg BASE_IMAGE=example/cuda-py311") in out
    assert f"-t {registry}/multimodal-training:t1-gpu" in out and f"docker push {registry}/multimodal-inference:t1-gpu" in out
    assert "aws ecr create-repository --region eu-west-1 --repository-name multimodal-training" in out
    assert "aws sagemaker create-algorithm --region eu-west-1" in out
    request = json.loads((ROOT / "build" / "create-algorithm.json").read_text())
    assert request["TrainingSpecification"]["TrainingImage"] == f"{registry}/multimodal-training:t1-gpu"
    assert aws_shapes.problems(request, aws_shapes.input_shape("CreateAlgorithm")) == []
