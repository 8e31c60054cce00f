"""Reading a DNS answer off the wire (RFC 1035 §4.1), only as far as a probe needs.

A DNS probe checks each answer: its id, that it is a response, its rcode, the question
echoed and an answer record for the name. scapy's full dissection of every answer cost
more than the rest of the probe (a sixth of the agent's CPU in the lab); this reads the
header and walks the names, with the bounds checks of a parser that faces the network:
every offset is checked, compression pointers must point backwards (so they cannot loop).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEADER = struct.Struct("!HHHHHH")
MAX_NAME_BYTES = 255


@dataclass(frozen=True)
class DnsAnswer:
    query_id: int
    is_response: bool
    rcode: int
    questions: list[bytes]     # names, lowercase, without the final dot
    answer_names: list[bytes]  # owner names of the answer records, likewise


def read_name(payload: bytes, offset: int) -> tuple[bytes, int]:
    """(name, offset after it in the record); follows compression pointers."""
    labels: list[bytes] = []
    end: int | None = None
    length_total = 0
    position = offset
    while True:
        if position >= len(payload):
            raise ValueError("name runs past the end")
        length = payload[position]
        if length & 0xC0 == 0xC0:
            if position + 1 >= len(payload):
                raise ValueError("truncated compression pointer")
            target = ((length & 0x3F) << 8) | payload[position + 1]
            if target >= position:
                raise ValueError("compression pointer does not point backwards")
            if end is None:
                end = position + 2
            position = target
            continue
        if length & 0xC0:
            raise ValueError(f"unknown label type {length >> 6}")
        position += 1
        if length == 0:
            break
        if position + length > len(payload):
            raise ValueError("label runs past the end")
        length_total += length + 1
        if length_total > MAX_NAME_BYTES:
            raise ValueError("name longer than 255 bytes")
        labels.append(payload[position:position + length])
        position += length
    return b".".join(labels).lower(), (end if end is not None else position)


def parse_answer(payload: bytes) -> DnsAnswer:
    """The parts of a DNS message a probe checks. Raises ValueError when malformed."""
    if len(payload) < HEADER.size:
        raise ValueError(f"{len(payload)} bytes, shorter than a DNS header")
    query_id, flags, qdcount, ancount, _nscount, _arcount = HEADER.unpack_from(payload)
    offset = HEADER.size
    questions = []
    for _ in range(qdcount):
        name, offset = read_name(payload, offset)
        offset += 4  # type, class
        if offset > len(payload):
            raise ValueError("question runs past the end")
        questions.append(name)
    answer_names = []
    for _ in range(ancount):
        name, offset = read_name(payload, offset)
        if offset + 10 > len(payload):
            raise ValueError("record header runs past the end")
        (rdlength,) = struct.unpack_from("!H", payload, offset + 8)
        offset += 10 + rdlength
        if offset > len(payload):
            raise ValueError("record data runs past the end")
        answer_names.append(name)
    return DnsAnswer(query_id, bool(flags & 0x8000), flags & 0x000F, questions, answer_names)


def build_query(qname: str, query_id: int) -> bytes:
    """A standard query for the A record of `qname`, recursion desired (RFC 1035 §4.1)."""
    try:  # the idna codec also refuses labels over 63 bytes
        labels = [label.encode("idna") for label in qname.rstrip(".").split(".") if label]
    except UnicodeError as exc:
        raise ValueError(f"{qname}: not a DNS name ({exc})") from None
    name = b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"
    if len(name) > MAX_NAME_BYTES:
        raise ValueError(f"{qname}: longer than 255 bytes")
    header = HEADER.pack(query_id & 0xFFFF, 0x0100, 1, 0, 0, 0)  # RD; one question
    return header + name + struct.pack("!HH", 1, 1)  # type A, class IN
