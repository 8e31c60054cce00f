"""The spool's records on disk and in memory: the record header, the payload encoding
(line protocol for 2.x+, and for 1.x when it differs) and the index entries.

A segment file is a run of records
`[u32 payload_len][u32 crc32][u64 seq][u32 n_points][u64 first_time_ns][payload]`; the
payload is `[0][lines]`, or `[1][u32 len_v2][lines v2][lines v1]` (agent/spool.py).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

HEADER = struct.Struct("<IIQIQ")
HEADER_BYTES = HEADER.size
MAX_PAYLOAD_BYTES = 256 << 20
_LEN = struct.Struct("<I")


@dataclass(slots=True)
class RecordRef:
    seq: int
    segment: int  # first seq of the segment file
    offset: int
    length: int  # payload bytes
    n_points: int
    first_time_ns: int
    crc: int



@dataclass
class Segment:
    first_seq: int
    path: Path
    size_bytes: int = 0
    records: list[RecordRef] = field(default_factory=list)
    mtime_s: float = 0.0


@dataclass(slots=True)
class SpoolRecord:
    """One batch as stored: line protocol for 2.x+, and for 1.x when it differs."""

    lines_v2: bytes
    lines_v1: bytes | None
    n_points: int
    first_time_ns: int = 0

    def lines(self, version: int) -> bytes:
        return self.lines_v1 if version == 1 and self.lines_v1 is not None else self.lines_v2


def encode_payload(record: SpoolRecord) -> list[bytes]:
    """The payload in parts, written with one writev: a batch is megabytes, never copied."""
    if record.lines_v1 is None:
        return [b"\x00", record.lines_v2]
    return [b"\x01" + _LEN.pack(len(record.lines_v2)), record.lines_v2, record.lines_v1]


def write_all(fd: int, parts: list[bytes]) -> None:
    written = os.writev(fd, parts)
    total = sum(len(part) for part in parts)
    if written < total:  # only on a full disk or a signal; write the rest (or raise)
        rest = b"".join(parts)[written:]
        while rest:
            rest = rest[os.write(fd, rest):]


def seq_of(ref: RecordRef) -> int:
    return ref.seq


def cached_bytes(record: SpoolRecord) -> int:
    return len(record.lines_v2) + len(record.lines_v1 or b"")


def decode_payload(payload: bytes, n_points: int, first_time_ns: int) -> SpoolRecord:
    if payload[:1] == b"\x01":
        (length,) = _LEN.unpack_from(payload, 1)
        start = 1 + _LEN.size
        return SpoolRecord(payload[start:start + length], payload[start + length:], n_points,
                           first_time_ns)
    return SpoolRecord(payload[1:], None, n_points, first_time_ns)
