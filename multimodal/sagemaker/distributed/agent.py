"""The work a host does for the leader, as one Ray actor per host (placed there by the host's own resource).

It runs in a Ray worker process on its host, with that host's environment: its own /opt/ml tree
(``SAGEMAKER_BASE_DIR``), its own copy of the training channel and its own CPUs and GPU. An embedding chunk
is read from the host's own copy of the channel (with FullyReplicated data no base64 crosses the network) and
checked against the digest the leader sends; a member's fit comes back as its probabilities and its AutoGluon
directory packed as bytes. Nothing is written where another host would have to read it.
"""
from __future__ import annotations

import io
import logging
import os
import shutil
import socket
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

# Set by the host's ``train`` for its Ray processes: the file the agent writes the job's outcome to.
STATE_FILE_VARIABLE = "MULTIMODAL_HOST_STATE_FILE"


class HostAgent:
    """The leader's hands on one host (``host``); ``channels`` is the job's validated input data config."""

    def __init__(self, host: str, channels: dict):
        from multimodal.sagemaker.entrypoints import configure_logging

        configure_logging()
        self.host = host
        self.channels = channels
        self._cells: dict[str, list] | None = None
        self._embedders: dict[tuple, object] = {}

    def describe(self) -> dict:
        """Where the agent runs: host, machine name, process, CPUs it may use."""
        from multimodal.sagemaker.distributed.ray_node import host_cpus

        return {"host": self.host, "hostname": socket.gethostname(), "pid": os.getpid(), "cpus": host_cpus()}

    # -- embedding --------------------------------------------------------------------------------
    def prepare_embedding(self, weights: str | None, precision: str | None, batch_size: int) -> dict:
        """Get ready to embed while the leader reads its data: read this host's image cells (its copy of the
        channel; with a sharded channel, the shard it sent) and, when there are image columns, build the
        embedder the leader's chunks will ask for (``weights`` and ``precision`` settings as the job's
        environment gives them) and run it once. Returns what it did, for the leader's log."""
        from multimodal.classifier.images import ImageEmbedder, resolve_weights_setting

        started = time.monotonic()
        if not self._image_cells():
            return {"host": self.host, "embedder": None, "seconds": round(time.monotonic() - started, 1)}
        embedder = ImageEmbedder(resolve_weights_setting(weights), batch_size=batch_size, precision=precision)
        embedder.warm_up()
        self._embedders[(embedder.weights, embedder.precision, embedder.batch_size)] = embedder
        return {"host": self.host, "embedder": embedder.describe(), "seconds": round(time.monotonic() - started, 1)}

    def embed_chunk(self, column: str, start: int, rows: int, digest: str, weights: str, sha256: str,
                    precision: str, batch_size: int, sharded: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
        """Embeddings, missing flags and undecodable count of rows ``start`` to ``start + rows`` of ``column``
        in this host's copy of the training channel (``sharded``: in the shard it sent); ``PlatformError`` when
        those cells are not the leader's (``digest``; of the tokens it sent when sharded) or this host's
        ResNet50 weights are not the leader's (``sha256``)."""
        from multimodal.classifier.embedding_units import cells_digest
        from multimodal.errors import PlatformError

        if sharded and self._cells is None:
            raise PlatformError(f"host {self.host}: asked to embed rows of its shard before it sent one")
        cells = self._image_cells()
        if column not in cells:
            raise PlatformError(f"host {self.host}: its copy of channel 'train' has no image column {column!r}; "
                                "every host needs the same data (S3DataDistributionType FullyReplicated).")
        chunk = cells[column][start:start + rows]
        seen = [shard_token(cell) for cell in chunk] if sharded else chunk
        if len(chunk) != rows or cells_digest(seen) != digest:
            if sharded:
                raise PlatformError(f"host {self.host}: rows {start + 1}-{start + rows} of its shard of channel "
                                    f"'train' (column {column!r}) are not those it sent the leader.")
            raise PlatformError(f"host {self.host}: rows {start + 1}-{start + rows} of column {column!r} in its copy "
                                "of channel 'train' differ from the leader's; with S3DataDistributionType "
                                "FullyReplicated every host needs the same data.")
        embedder = self._embedder(weights, precision, batch_size)
        if embedder.identity.sha256 != sha256:
            raise PlatformError(f"host {self.host}: its ResNet50 weights ({embedder.identity.name}, sha256 "
                                f"{embedder.identity.sha256[:12]}) are not the leader's ({sha256[:12]}); run every "
                                "host on the same image.")
        where = "of its shard" if sharded else "of channel 'train'"
        return embedder.embed(chunk, column, lambda row: f"host {self.host}: labelled row {start + row + 1} {where}",
                              self._image_folder())

    def _image_folder(self):
        """Where this host reads image cells that are paths: its own copy of channel 'train' (None in Pipe mode,
        where the channel is a stream)."""
        from multimodal.sagemaker.channels import image_folder
        from multimodal.sagemaker.paths import SageMakerPaths

        return image_folder(SageMakerPaths.from_environment(), "train", self.channels["train"])

    def shard(self):
        """This host's shard of a training channel sharded by S3 key, for the leader: its rows with a label,
        every image cell replaced by its ``shard_token`` (the images stay here; the leader asks for their
        embeddings by row). None when this host got no file of the channel."""
        from multimodal.classifier.labels import drop_missing_labels
        from multimodal.classifier.schema import LABEL_COLUMN, infer_schema
        from multimodal.sagemaker.channels import SHARDED_PATHS, channel_files, read_channel, refuse_image_paths
        from multimodal.sagemaker.paths import SageMakerPaths

        paths = SageMakerPaths.from_environment()
        settings = self.channels["train"]
        if settings.get("TrainingInputMode", "File") != "Pipe" and not channel_files(paths, "train"):
            self._cells = {}
            return None
        started = time.monotonic()
        table = read_channel(paths, "train", settings).frame
        refuse_image_paths(table, f"host {self.host}: channel 'train' (ShardedByS3Key)", SHARDED_PATHS)
        table = drop_missing_labels(table, LABEL_COLUMN, allow_empty=True).reset_index(drop=True)
        schema = infer_schema(table.columns, source=f"host {self.host}'s shard of channel 'train'", warn=False)
        # As ``split_modalities`` gives them to the leader's fit: a missing cell is "".
        self._cells = {column: table[column].where(table[column].notna(), "").astype(str).tolist()
                       for column in schema.image}
        for column in schema.image:
            table[column] = [shard_token(cell) for cell in self._cells[column]]
        logger.info("host %s: read its shard of channel 'train' (%d rows, image columns %s) in %.1f s", self.host,
                    len(table), sorted(self._cells), time.monotonic() - started)
        return table

    def _image_cells(self) -> dict[str, list]:
        """Each image column's training cells, as the leader's fit sees them (rows with a label, in file order)."""
        if self._cells is None:
            from multimodal.classifier.features import split_modalities
            from multimodal.classifier.labels import drop_missing_labels
            from multimodal.classifier.schema import LABEL_COLUMN, infer_schema
            from multimodal.sagemaker.channels import read_channels
            from multimodal.sagemaker.paths import SageMakerPaths

            started = time.monotonic()
            train, _ = read_channels(SageMakerPaths.from_environment(), self.channels)
            train = drop_missing_labels(train, LABEL_COLUMN)
            frames = split_modalities(train, infer_schema(train.columns, warn=False))
            self._cells = {column: cells.tolist() for column, cells in frames.images.items()}
            logger.info("host %s: read its copy of channel 'train' (%d rows, image columns %s) in %.1f s", self.host,
                        len(train), sorted(self._cells), time.monotonic() - started)
        return self._cells

    def _embedder(self, weights: str, precision: str, batch_size: int):
        key = (weights, precision, batch_size)
        if key not in self._embedders:
            from multimodal.classifier.images import ImageEmbedder

            self._embedders[key] = ImageEmbedder(weights, batch_size=batch_size, precision=precision)
        return self._embedders[key]

    # -- member fits ------------------------------------------------------------------------------
    def fit_member(self, name: str, features, labels: np.ndarray, n_classes: int, options: dict) -> dict:
        """``multimodal.classifier.tabular.fit_member`` on this host; returns the training rows' probabilities,
        the predictor's layout and leaderboard, and its directory as tar bytes."""
        from multimodal.classifier.tabular import fit_member

        work = Path(tempfile.mkdtemp(prefix="multimodal-member-"))
        try:
            started = time.monotonic()
            predictor, proba = fit_member(name, features, labels, n_classes, work / "predictor", **options)
            seconds = time.monotonic() - started
            return {"proba": proba, "layout": list(predictor.layout), "leaderboard": predictor.leaderboard,
                    "archive": pack_directory(work / "predictor"), "seconds": round(seconds, 1), "host": self.host}
        finally:
            shutil.rmtree(work, ignore_errors=True)


def shard_token(cell):
    """What the leader holds for an image cell of another host's shard: a digest of the cell ("" and missing
    cells stay as they are, so the leader sees which rows have no image)."""
    import hashlib

    if not isinstance(cell, str) or not cell.strip():
        return cell
    return "shard-image:" + hashlib.sha256(cell.encode("utf-8", "surrogatepass")).hexdigest()


class HostMessenger:
    """Tells its host's ``train`` how the job ended (an actor beside the agent, which may still be busy)."""

    def tell(self, outcome: str) -> None:
        """``write_outcome`` on this host."""
        write_outcome(outcome)


def write_outcome(outcome: str) -> None:
    """Tell this host's ``train`` how the job ended (``done`` or ``failed: <reason>``), so that it exits; run as
    a Ray task on the host."""
    path = os.environ.get(STATE_FILE_VARIABLE)
    if path:
        temporary = f"{path}.tmp"
        Path(temporary).write_text(outcome, encoding="utf-8")
        os.replace(temporary, path)


def pack_directory(directory: Path) -> bytes:
    """A directory's files as uncompressed tar bytes (paths relative to it)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(str(directory), arcname=".")
    return buffer.getvalue()


def unpack_directory(data: bytes, directory: Path) -> None:
    """Write what ``pack_directory`` packed into ``directory`` (created; nothing may land outside it)."""
    directory.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as archive:
        archive.extractall(str(directory), filter="data")
