"""A local batch-transform job: what SageMaker does with the inference image, against a local ``serve``.

Given a model (directory or ``model.tar.gz``), an input folder and an output folder, it starts
``serve`` (this environment's, or the inference image's in a container) on a free local port, waits
for ``/ping``, reads ``/execution-parameters``, then for each input file: Line split, MultiRecord (or
SingleRecord) mini-batches up to MaxPayloadInMB, one ``<file>.out`` per input file written only when
every request of that file succeeded, AssembleWith=Line, and optionally JoinSource=Input.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from multimodal.tooling.containers import container_run, docker_command
from multimodal.errors import PlatformError, UserError

logger = logging.getLogger(__name__)

PING_TIMEOUT_SECONDS = 300.0


@dataclass
class TransformResult:
    """What a transform job did: output files written, input files that failed (name → reason), records."""

    outputs: list[Path] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    records: int = 0
    seconds: float = 0.0


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unpack_model(model: Path, into: Path) -> Path:
    """The model directory: ``model`` itself, or ``model.tar.gz`` extracted (safely) into ``into``."""
    if model.is_dir():
        return model
    if not model.is_file():
        raise UserError(f"model {model} is neither a directory nor a model.tar.gz file.")
    into.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(model, "r:*") as archive:
            archive.extractall(into, filter="data")
    except tarfile.TarError as error:   # FilterError included: links or paths that leave the directory
        raise UserError(f"{model} is not a usable model.tar.gz: {error}") from error
    return into


def split_lines(data: bytes) -> list[bytes]:
    """Line split as SageMaker does it: each record is one line (the last may lack its newline)."""
    return [line for line in data.splitlines(keepends=True) if line.strip(b"\r\n")]


def mini_batches(records: list[bytes], max_bytes: int, multi_record: bool):
    """Consecutive records joined into payloads of at most ``max_bytes`` (one record each for SingleRecord)."""
    batch: list[bytes] = []
    size = 0
    for record in records:
        record = record if record.endswith(b"\n") else record + b"\n"
        if len(record) > max_bytes:
            raise UserError(f"a record of {len(record)} bytes is larger than MaxPayloadInMB ({max_bytes} bytes).")
        if batch and (not multi_record or size + len(record) > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(record)
        size += len(record)
    if batch:
        yield batch


class ServerClient:
    """The HTTP side of a batch transform: ping, execution parameters and invocations on a server's URL.

    ``process`` (optional) is the server's process: when it dies, waiting for /ping stops at once.
    """

    def __init__(self, url: str, process: subprocess.Popen | None = None):
        self.url = url.rstrip("/")
        self.process = process

    def log_tail(self, characters: int = 3000) -> str:
        """The end of the server's log, when this client knows it."""
        return ""

    def wait_ready(self, timeout: float = PING_TIMEOUT_SECONDS, poll_seconds: float = 0.5) -> float:
        """Poll /ping until 200; returns the seconds it took. ``PlatformError`` if the server dies or times out."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process is not None and self.process.poll() is not None:
                raise PlatformError(f"serve exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/ping", timeout=2) as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(poll_seconds)
        raise PlatformError(f"serve did not answer /ping with 200 within {timeout:.0f} s:\n{self.log_tail()}")

    def get_json(self, path: str) -> dict:
        """GET a JSON document from the server."""
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.loads(response.read())

    def invoke(self, body: bytes, content_type: str, accept: str, timeout: float = 600,
               headers: dict | None = None) -> tuple[int, bytes]:
        """POST /invocations (with ``headers`` besides Content-Type and Accept); returns (status, body) whatever
        the status."""
        request = urllib.request.Request(self.url + "/invocations", data=body, method="POST",
                                         headers={"Content-Type": content_type, "Accept": accept, **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()


class ServerProcess(ServerClient):
    """A ``serve`` process this driver started on a free local port, its log in a scratch directory."""

    def __init__(self, command: list[str], port: int, scratch: Path, environment: dict | None = None):
        self.port = port
        self._scratch = scratch
        self._log = open(scratch / "serve.log", "wb")
        super().__init__(f"http://127.0.0.1:{port}",
                         subprocess.Popen(command, env=environment, stdout=self._log, stderr=subprocess.STDOUT))

    def log_tail(self, characters: int = 3000) -> str:
        """The end of the server's log."""
        return (self._scratch / "serve.log").read_text(errors="replace")[-characters:]

    def _terminate(self) -> None:
        self.process.terminate()

    def stop(self) -> None:
        """SIGTERM, then wait (SIGKILL after 40 s: SageMaker's 30 s grace plus a container's stop)."""
        if self.process.poll() is None:
            self._terminate()
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        shutil.rmtree(self._scratch, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class LocalServer(ServerProcess):
    """This environment's ``serve`` as a subprocess, with the model directory under a temporary /opt/ml."""

    def __init__(self, model_dir: Path, environment: dict | None = None, serve_command: list[str] | None = None):
        port = free_port()
        root = Path(tempfile.mkdtemp(prefix="multimodal-serve-"))
        (root / "model").symlink_to(model_dir.resolve(), target_is_directory=True)
        env = {**os.environ, "SAGEMAKER_BATCH": "true", **(environment or {}), "SAGEMAKER_BASE_DIR": str(root),
               "SAGEMAKER_BIND_TO_PORT": str(port)}
        super().__init__(serve_command or [str(Path(sys.executable).with_name("serve"))], port, root, env)


class ContainerServer(ServerProcess):
    """The inference image's ``serve`` as SageMaker starts it: ``docker run IMAGE serve`` with the model at
    /opt/ml/model (read-only) and the container's port 8080 published on a free local port."""

    def __init__(self, image: str, model_dir: Path, environment: dict | None = None):
        port = free_port()
        self.name = f"multimodal-serve-{port}-{os.getpid()}"
        command = container_run(image, "serve", self.name, {str(model_dir.resolve()): "/opt/ml/model:ro"},
                                {"SAGEMAKER_BATCH": "true", **(environment or {})}, {port: 8080})
        super().__init__(command, port, Path(tempfile.mkdtemp(prefix="multimodal-container-")))

    def _terminate(self) -> None:
        started = time.monotonic()
        subprocess.run(docker_command() + ["stop", "-t", "30", self.name], capture_output=True, timeout=60)
        logger.info("serve container %s stopped (SIGTERM) in %.1f s", self.name, time.monotonic() - started)


def _join(record: bytes, result: bytes, content_type: str) -> bytes:
    record = record.rstrip(b"\r\n")
    result = result.rstrip(b"\n")
    if content_type == "application/jsonlines":
        item = json.loads(record)
        output = json.loads(result)
        if isinstance(item, dict):
            item["SageMakerOutput"] = output
        else:
            item = {"SageMakerInput": item, "SageMakerOutput": output}
        return json.dumps(item, ensure_ascii=False).encode("utf-8")
    return record + b"," + result


def run_transform(server: ServerClient, input_dir: Path, output_dir: Path, content_type: str = "text/csv",
                  accept: str = "text/csv", batch_strategy: str | None = None, max_payload_mb: int | None = None,
                  join_source: str = "None") -> TransformResult:
    """Transform every file directly in ``input_dir`` (sorted) into ``output_dir/<file>.out``."""
    started = time.monotonic()
    parameters = server.get_json("/execution-parameters")
    strategy = batch_strategy or ("SingleRecord" if "SINGLE" in str(parameters.get("BatchStrategy", "")).upper()
                                  .replace("_", "") else "MultiRecord")
    payload_mb = max_payload_mb or int(parameters.get("MaxPayloadInMB", 6))
    output_dir.mkdir(parents=True, exist_ok=True)
    result = TransformResult()
    files = sorted(p for p in input_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise UserError(f"no input files in {input_dir}.")
    for path in files:
        records = split_lines(path.read_bytes())
        pieces: list[bytes] = []
        try:
            for batch in mini_batches(records, payload_mb * 1024 * 1024, strategy == "MultiRecord"):
                status, body = server.invoke(b"".join(batch), content_type, accept)
                if status != 200:
                    raise UserError(f"/invocations answered {status}: {body.decode(errors='replace').strip()}")
                results = body.splitlines(keepends=False) if accept != "application/json" else [body.rstrip(b"\n")]
                if accept != "application/json" and len(results) != len(batch):
                    raise UserError(f"{len(batch)} records sent, {len(results)} results received.")
                if join_source == "Input":
                    pieces += [_join(r, o, content_type) for r, o in zip(batch, results)]
                else:
                    pieces += results
        except UserError as error:
            result.failures[path.name] = str(error)
            logger.error("%s: failed, no output written: %s", path.name, error)
            continue
        target = output_dir / (path.name + ".out")
        target.write_bytes(b"".join(piece + b"\n" for piece in pieces))   # AssembleWith=Line
        result.outputs.append(target)
        result.records += len(records)
        logger.info("%s: %d records -> %s", path.name, len(records), target)
    result.seconds = time.monotonic() - started
    return result


def run_local_transform(model: Path, input_dir: Path, output_dir: Path, image: str | None = None,
                        environment: dict | None = None, **options) -> TransformResult:
    """A whole local batch-transform job: unpack the model, start ``serve`` (this environment's, or
    ``image``'s in a container), transform ``input_dir`` into ``output_dir``, stop the server.

    ``options`` go to ``run_transform`` (content_type, accept, batch_strategy, max_payload_mb, join_source).
    """
    with tempfile.TemporaryDirectory(prefix="multimodal-model-") as scratch:
        model_dir = unpack_model(Path(model), Path(scratch))
        server = ContainerServer(image, model_dir, environment) if image else LocalServer(model_dir, environment)
        with server:
            ready = server.wait_ready()
            logger.info("serve%s answered /ping after %.1f s", f" ({image})" if image else "", ready)
            return run_transform(server, Path(input_dir), Path(output_dir), **options)
