"""Running the algorithm's images as SageMaker does, with a docker-compatible command line."""
from __future__ import annotations

import os
import shutil

from multimodal.errors import PlatformError

DOCKER_ENV = "MULTIMODAL_DOCKER"  # the docker-compatible command (docker, podman, a wrapper); default "docker"
# Settings of this library that a local run passes on into the container when they are set here.
FORWARDED_ENV = ("MULTIMODAL_IMAGE_WEIGHTS", "MULTIMODAL_IMAGE_PRECISION")


def docker_command() -> list[str]:
    """The docker-compatible command to run images with (``$MULTIMODAL_DOCKER``, else ``docker``)."""
    command = os.environ.get(DOCKER_ENV, "docker").split()
    if not command or shutil.which(command[0]) is None:
        raise PlatformError(f"{command[0] if command else DOCKER_ENV!r} not found: install Docker (or podman and "
                            f"set {DOCKER_ENV}=podman), or run without --image to use this Python environment.")
    return command


def container_run(image: str, argument: str, name: str, volumes: dict[str, str], environment: dict[str, str],
                  ports: dict[int, int] | None = None) -> list[str]:
    """``docker run --rm --name NAME -v HOST:CONTAINER ... -e K=V ... [-p HOST:CONTAINER] IMAGE ARGUMENT``.

    ``environment`` is passed as given, plus this library's settings from ``FORWARDED_ENV`` that are set.
    """
    command = docker_command() + ["run", "--rm", "--name", name]
    for host, container in volumes.items():
        command += ["-v", f"{host}:{container}"]
    forwarded = {key: os.environ[key] for key in FORWARDED_ENV if os.environ.get(key)}
    for key, value in {**forwarded, **environment}.items():
        command += ["-e", f"{key}={value}"]
    for host_port, container_port in (ports or {}).items():
        command += ["-p", f"127.0.0.1:{host_port}:{container_port}"]
    return command + [image, argument]
