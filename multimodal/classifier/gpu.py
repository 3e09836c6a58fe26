"""Whether an NVIDIA GPU the machine has can be used, and an ERROR that says why not when it cannot.

The pinned torch wheel is built for CUDA 13, which needs an NVIDIA driver R580 or newer. SageMaker's default
drivers on several GPU instance families are older (470 on ml.g4dn and ml.g5 inference instances), and there
``torch.cuda.is_available()`` is simply False: without this check the job would run on the CPU at GPU prices.
"""
from __future__ import annotations

import functools
import logging
import re
from pathlib import Path

logger = logging.getLogger(__name__)

DRIVER_FILE = Path("/proc/driver/nvidia/version")
MINIMUM_DRIVER = 580


def nvidia_driver(driver_file: Path = DRIVER_FILE, devices: Path = Path("/dev")) -> str | None:
    """The NVIDIA kernel driver's version when the machine has an NVIDIA GPU ("" when the version cannot be
    read), None when it has none."""
    try:
        text = driver_file.read_text(encoding="ascii", errors="ignore")
    except OSError:
        text = None
    if text is not None:
        found = re.search(r"Kernel Module\s+(?:for \S+\s+)?([0-9]+(?:\.[0-9]+)*)", text)
        return found.group(1) if found else ""
    try:
        present = any(re.fullmatch(r"nvidia[0-9]+", p.name) for p in devices.iterdir())
    except OSError:
        present = False
    return "" if present else None


def unusable_gpu_reason(cuda_available: bool, cuda_version: str | None, driver: str | None) -> str | None:
    """Why a GPU that is present cannot be used (None when there is none, or CUDA works)."""
    if cuda_available or driver is None:
        return None
    major = int(driver.split(".")[0]) if driver else None
    old = major is not None and major < MINIMUM_DRIVER
    return (f"an NVIDIA GPU is present (driver {driver or 'of unknown version'}) but CUDA "
            f"{cuda_version or '(none)'} in this image cannot use it"
            + (f": CUDA 13 needs driver R{MINIMUM_DRIVER} or newer" if old else "")
            + ". Image embedding and AutoGluon run on the CPU, at GPU prices. Use a CPU instance, an instance "
              f"whose driver is R{MINIMUM_DRIVER}+, or the GPU image built with CUDA forward-compatibility "
              "libraries (build_push.sh --gpu, see the README's GPUs section).")


@functools.lru_cache(maxsize=1)
def report_unusable_gpu(cuda_available: bool, cuda_version: str | None) -> str | None:
    """Log the reason once per process as an ERROR (CloudWatch shows it), and return it."""
    reason = unusable_gpu_reason(cuda_available, cuda_version, nvidia_driver())
    if reason:
        logger.error("%s", reason)
    return reason


def report_this_machine() -> str | None:
    """``report_unusable_gpu`` for this process's torch (imported here, so callers need not)."""
    import torch

    return report_unusable_gpu(torch.cuda.is_available(), torch.version.cuda)


def visible_gpus() -> int:
    """How many CUDA GPUs this process can use (0 on a CPU machine)."""
    from autogluon.common.utils.resource_utils import ResourceManager

    try:
        count = int(ResourceManager.get_gpu_count_torch(cuda_only=True))
    except Exception:  # noqa: BLE001 - no CUDA runtime or driver means no GPU
        count = 0
    if not count:
        report_this_machine()
    return count
