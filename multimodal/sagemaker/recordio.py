"""MXNet RecordIO framing, as a Pipe-mode channel with ``RecordWrapperType=RecordIO`` delivers records.

Each record is a 4-byte magic (0xCED7230A, little-endian), a 4-byte word whose upper 3 bits are a
continuation flag and lower 29 bits the payload length, then the payload padded with zeros to a multiple of
4 bytes. A writer that finds the magic inside a payload (at a 4-byte-aligned offset) splits the payload
there: the parts carry flags 1 (first), 2 (middle) and 3 (last), the magic itself is left out, and a reader
puts it back between the parts (dmlc-core ``recordio.cc``, which MXNet and SageMaker use). Flag 0 is a
whole record.
"""
from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from multimodal.errors import UserError

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
LENGTH_BITS = 29
MAX_LENGTH = (1 << LENGTH_BITS) - 1
WHOLE, FIRST, MIDDLE, LAST = 0, 1, 2, 3


def read_exactly(stream: BinaryIO, count: int) -> bytes:
    """``count`` bytes, fewer only where the stream ends (a FIFO may return short reads)."""
    parts, remaining = [], count
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def read_records(stream: BinaryIO, name: str) -> Iterator[bytes]:
    """The records of a RecordIO stream, multi-part records joined; ``UserError`` naming ``name`` and the byte
    offset where the framing is broken (a wrong magic, a stream that ends inside a record)."""
    offset = started = 0
    pending: list[bytes] | None = None
    while True:
        header = read_exactly(stream, 8)
        if not header:
            if pending is not None:
                raise UserError(f"{name}: the stream ends inside the multi-part RecordIO record that starts at byte "
                                f"{started}.")
            return
        if len(header) < 8:
            raise UserError(f"{name}: the stream ends inside a RecordIO header (byte {offset}).")
        magic, word = struct.unpack("<II", header)
        if magic != MAGIC:
            raise UserError(f"{name}: byte {offset} is not the start of a RecordIO record (magic {magic:#010x}, "
                            f"expected {MAGIC:#010x}); the stream is not RecordIO-framed as a whole.")
        flag, length = word >> LENGTH_BITS, word & MAX_LENGTH
        if flag > LAST:
            raise UserError(f"{name}: the RecordIO record at byte {offset} has flag {flag}; RecordIO flags are 0-3.")
        padded = (length + 3) & ~3
        body = read_exactly(stream, padded)
        if len(body) < padded:
            raise UserError(f"{name}: the stream ends inside a RecordIO record of {length} bytes (byte {offset}).")
        payload = body[:length]
        at, offset = offset, offset + 8 + padded
        if flag == WHOLE and pending is None:
            yield payload
        elif flag == FIRST and pending is None:
            pending, started = [payload], at
        elif flag in (MIDDLE, LAST) and pending is not None:
            pending.extend((MAGIC_BYTES, payload))
            if flag == LAST:
                yield b"".join(pending)
                pending = None
        else:
            raise UserError(f"{name}: the RecordIO record at byte {at} has continuation flag {flag} out of "
                            "sequence.")


def frame_record(payload: bytes) -> bytes:
    """One record framed as dmlc-core writes it: split at every 4-byte-aligned magic inside the payload."""
    cuts = [i for i in range(0, len(payload) - 3, 4) if payload[i:i + 4] == MAGIC_BYTES]
    parts, start = [], 0
    for cut in cuts:
        parts.append(payload[start:cut])
        start = cut + 4
    parts.append(payload[start:])
    framed = []
    for index, part in enumerate(parts):
        if len(part) > MAX_LENGTH:
            raise ValueError(f"a RecordIO part holds at most {MAX_LENGTH} bytes; got {len(part)}")
        flag = WHOLE if len(parts) == 1 else FIRST if index == 0 else LAST if index == len(parts) - 1 else MIDDLE
        framed.append(struct.pack("<II", MAGIC, (flag << LENGTH_BITS) | len(part)))
        framed.append(part + b"\0" * (-len(part) % 4))
    return b"".join(framed)


def frame_records(payloads: Iterable[bytes]) -> Iterator[bytes]:
    """Each payload framed (``frame_record``), in order: what a Pipe-mode FIFO with RecordIO wrapping carries."""
    for payload in payloads:
        yield frame_record(payload)
