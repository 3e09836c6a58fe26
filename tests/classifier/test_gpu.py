"""The GPU check: a GPU that is present but that CUDA cannot use is an ERROR that says why and what to do."""
import logging

from multimodal.sagemaker import algorithm_spec
from multimodal.classifier.gpu import nvidia_driver, report_unusable_gpu, unusable_gpu_reason


def test_driver_version_is_read_from_proc(tmp_path):
    version = tmp_path / "version"
    version.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  470.256.02  Thu May  2 14:37:44 UTC 2024\n")
    assert nvidia_driver(version, tmp_path) == "470.256.02"
    (tmp_path / "dev").mkdir()
    assert nvidia_driver(tmp_path / "absent", tmp_path / "dev") is None
    (tmp_path / "dev" / "nvidia0").write_text("")
    assert nvidia_driver(tmp_path / "absent", tmp_path / "dev") == ""


def test_reason_only_when_a_gpu_is_present_and_cuda_cannot_use_it():
    assert unusable_gpu_reason(True, "13.0", "580.65") is None
    assert unusable_gpu_reason(False, "13.0", None) is None
    reason = unusable_gpu_reason(False, "13.0", "470.256.02")
    assert "driver 470.256.02" in reason and "R580" in reason and "build_push.sh --gpu" in reason
    assert "CUDA 13 needs" not in unusable_gpu_reason(False, "13.0", "")


def test_no_gpu_logs_nothing_and_an_unusable_one_logs_one_error_per_process(caplog, monkeypatch):
    from multimodal.classifier import gpu

    monkeypatch.setattr(gpu, "nvidia_driver", lambda: None)   # a machine without an NVIDIA GPU
    report_unusable_gpu.cache_clear()
    with caplog.at_level(logging.ERROR):
        assert report_unusable_gpu(False, "13.0") is None
    assert caplog.records == []
    monkeypatch.setattr(gpu, "nvidia_driver", lambda: "470.256.02")   # a GPU whose driver is too old
    report_unusable_gpu.cache_clear()
    with caplog.at_level(logging.ERROR):
        first, second = report_unusable_gpu(False, "13.0"), report_unusable_gpu(False, "13.0")
    assert first == second == unusable_gpu_reason(False, "13.0", "470.256.02")
    assert [r.getMessage() for r in caplog.records] == [first], "logged once per process"
    report_unusable_gpu.cache_clear()


def test_gpu_instance_types_only_for_the_gpu_images():
    cpu = algorithm_spec.create_algorithm_request("a", "t", "i")
    gpu = algorithm_spec.create_algorithm_request("a", "t", "i", gpu=True)
    for request, expected in ((cpu, False), (gpu, True)):
        listed = request["TrainingSpecification"]["SupportedTrainingInstanceTypes"] + \
            request["InferenceSpecification"]["SupportedTransformInstanceTypes"]
        assert any(t.startswith(("ml.g", "ml.p")) for t in listed) == expected
