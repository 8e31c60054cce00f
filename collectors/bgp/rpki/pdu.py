"""RTR PDUs (RFC 8210 version 1, RFC 6810 version 0), pure: the queries the client sends
and the parsing of what the cache answers. A PDU that breaks the format raises RtrError."""

from __future__ import annotations

import contextlib
import struct
from dataclasses import dataclass

from collectors.bgp.rib import V4, V6

SERIAL_NOTIFY = 0
SERIAL_QUERY = 1
RESET_QUERY = 2
CACHE_RESPONSE = 3
IPV4_PREFIX = 4
IPV6_PREFIX = 6
END_OF_DATA = 7
CACHE_RESET = 8
ROUTER_KEY = 9
ERROR_REPORT = 10

ERROR_NAMES = {
    0: "Corrupt Data", 1: "Internal Error", 2: "No Data Available", 3: "Invalid Request",
    4: "Unsupported Protocol Version", 5: "Unsupported PDU Type",
    6: "Withdrawal of Unknown Record", 7: "Duplicate Announcement Received",
    8: "Unexpected Protocol Version",
}
MAX_PDU_BYTES = 1 << 16

_HEADER = struct.Struct("!BBHI")


class RtrError(Exception):
    """The session cannot go on (protocol error, Error Report, corrupt PDU)."""


class VersionFallback(RtrError):
    """The cache speaks an older version: reconnect with it."""

    def __init__(self, version: int, reason: str) -> None:
        super().__init__(reason)
        self.version = version



def reset_query(version: int) -> bytes:
    return _HEADER.pack(version, RESET_QUERY, 0, 8)


def serial_query(version: int, session_id: int, serial: int) -> bytes:
    return _HEADER.pack(version, SERIAL_QUERY, session_id, 12) + struct.pack("!I", serial)


def error_report(version: int, code: int, pdu: bytes, text: str) -> bytes:
    body = struct.pack("!I", len(pdu)) + pdu
    encoded = text.encode()
    body += struct.pack("!I", len(encoded)) + encoded
    return _HEADER.pack(version, ERROR_REPORT, code, 8 + len(body)) + body


@dataclass(frozen=True)
class Pdu:
    version: int
    type: int
    field: int  # session id, error code, or zero (the header's 16-bit field)
    body: bytes  # after the 8-byte header
    raw: bytes

    def serial(self) -> int:
        return int(struct.unpack_from("!I", self.body)[0])


def parse_header(header: bytes) -> tuple[int, int, int, int]:
    version, kind, value, length = _HEADER.unpack(header)
    if length < 8 or length > MAX_PDU_BYTES:
        raise RtrError(f"corrupt PDU: length {length}")
    return version, kind, value, length


def parse_prefix_pdu(pdu: Pdu) -> tuple[bool, int, int, int, int, int]:
    """IPv4/IPv6 Prefix PDU → (announce, family, network, length, max_length, asn)."""
    if pdu.type == IPV4_PREFIX:
        if len(pdu.body) != 12:
            raise RtrError(f"corrupt IPv4 Prefix PDU: {len(pdu.body) + 8} bytes")
        flags, length, max_length, _zero, network, asn = struct.unpack("!BBBB4sI", pdu.body)
        family, bits = V4, 32
    else:
        if len(pdu.body) != 24:
            raise RtrError(f"corrupt IPv6 Prefix PDU: {len(pdu.body) + 8} bytes")
        flags, length, max_length, _zero, network, asn = struct.unpack("!BBBB16sI", pdu.body)
        family, bits = V6, 128
    value = int.from_bytes(network, "big")
    if not length <= max_length <= bits:
        raise RtrError(f"corrupt Prefix PDU: length {length} max length {max_length}")
    value &= ((1 << bits) - 1) ^ ((1 << (bits - length)) - 1)
    return bool(flags & 1), family, value, length, max_length, asn


def parse_error_report(pdu: Pdu) -> tuple[int, str]:
    """(code, text) of an Error Report; a malformed one still yields its code."""
    text = ""
    with contextlib.suppress(struct.error, UnicodeDecodeError, IndexError):
        (inner,) = struct.unpack_from("!I", pdu.body)
        (text_len,) = struct.unpack_from("!I", pdu.body, 4 + inner)
        text = pdu.body[8 + inner:8 + inner + text_len].decode("utf-8", "replace")
        text = text.rstrip("\x00").strip()  # StayRTR ends it with a NUL
    return pdu.field, text
