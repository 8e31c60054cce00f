"""RTR PDUs (RFC 8210 / 6810): encoding, decoding, and the client's reader on arbitrary
bytes (hypothesis): a corrupt stream ends the session with RtrError (the client then
reconnects), it never raises anything else. Pure: a StreamReader fed in memory."""

from __future__ import annotations

import asyncio
import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.bgp.rib import V4, V6
from collectors.bgp.rpki.pdu import (
    ERROR_REPORT,
    IPV4_PREFIX,
    IPV6_PREFIX,
    Pdu,
    RtrError,
    error_report,
    parse_error_report,
    parse_header,
    parse_prefix_pdu,
    reset_query,
    serial_query,
)
from collectors.bgp.rpki.rtr import RtrClient


def prefix4(flags: int, length: int, max_length: int, network: bytes, asn: int,
            version: int = 1) -> bytes:
    body = struct.pack("!BBBB4sI", flags, length, max_length, 0, network, asn)
    return struct.pack("!BBHI", version, IPV4_PREFIX, 0, 20) + body


def as_pdu(raw: bytes) -> Pdu:
    version, kind, value, _ = parse_header(raw[:8])
    return Pdu(version, kind, value, raw[8:], raw)


def test_queries_on_the_wire() -> None:
    assert reset_query(1) == bytes([1, 2, 0, 0, 0, 0, 0, 8])
    assert serial_query(0, 0x1234, 7) == bytes([0, 1, 0x12, 0x34, 0, 0, 0, 12, 0, 0, 0, 7])


def test_prefix_pdus() -> None:
    pdu = as_pdu(prefix4(1, 22, 24, bytes([198, 51, 100, 0]), 64500))
    assert parse_prefix_pdu(pdu) == (True, V4, 0xC6336400, 22, 24, 64500)
    # host bits are cleared; flags 0 is a withdrawal
    pdu = as_pdu(prefix4(0, 24, 24, bytes([192, 0, 2, 7]), 0))
    assert parse_prefix_pdu(pdu) == (False, V4, 0xC0000200, 24, 24, 0)
    body = struct.pack("!BBBB16sI", 1, 32, 48, 0, bytes.fromhex("20010db8" + "00" * 12), 1)
    pdu = as_pdu(struct.pack("!BBHI", 1, IPV6_PREFIX, 0, 32) + body)
    assert parse_prefix_pdu(pdu) == (True, V6, 0x20010DB8 << 96, 32, 48, 1)
    with pytest.raises(RtrError, match="max length"):
        parse_prefix_pdu(as_pdu(prefix4(1, 24, 23, bytes(4), 1)))
    with pytest.raises(RtrError, match="max length"):
        parse_prefix_pdu(as_pdu(prefix4(1, 24, 33, bytes(4), 1)))


def test_error_report_round_trip_and_header_bounds() -> None:
    raw = error_report(1, 2, reset_query(1), "No data available\x00")
    pdu = as_pdu(raw)
    assert (pdu.type, parse_error_report(pdu)) == (ERROR_REPORT, (2, "No data available"))
    # a truncated one still yields its code
    assert parse_error_report(as_pdu(raw[:8] + raw[8:12]))[0] == 2
    with pytest.raises(RtrError, match="length 7"):
        parse_header(struct.pack("!BBHI", 1, 4, 0, 7))
    with pytest.raises(RtrError, match="length"):
        parse_header(struct.pack("!BBHI", 1, 4, 0, 1 << 20))


def _read_all(data: bytes) -> list[Pdu]:
    """Read PDUs as the client does until the stream ends or is refused."""
    async def go() -> list[Pdu]:
        client = RtrClient("127.0.0.1", 1, lambda *_: None)
        client.session_id = 1  # inside a session: another version is an error
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        pdus = []
        while True:
            try:
                pdus.append(await client._read(reader))
            except asyncio.IncompleteReadError:
                return pdus
    return asyncio.run(go())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_reader_on_arbitrary_bytes_raises_only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(RtrError):
        _read_all(data)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 40), st.integers(0, 40),
                          st.binary(min_size=4, max_size=4), st.integers(0, 2**32 - 1))),
       st.integers(0, 2))
def test_prefix_pdus_parse_or_are_refused(items: list[tuple[int, int, int, bytes, int]],
                                          version: int) -> None:
    raw = b"".join(prefix4(f, ln, m, n, a, version) for f, ln, m, n, a in items)
    try:
        pdus = _read_all(raw)
    except RtrError:
        return
    for pdu in pdus:
        try:
            _announce, family, network, length, max_length, _ = parse_prefix_pdu(pdu)
        except RtrError:
            continue
        assert family == V4 and length <= max_length <= 32
        assert network & ((1 << (32 - length)) - 1) == 0
