"""The DNS answer reader against scapy's dissector (the oracle) on generated messages,
and on hostile input: truncation, pointer loops, overlong names."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR

from collectors.probes.dnswire import parse_answer, read_name

LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
NAME = st.lists(LABEL, min_size=1, max_size=4).map(lambda labels: ".".join(labels))


@settings(max_examples=200, deadline=None)
@given(query_id=st.integers(0, 0xFFFF), qr=st.integers(0, 1), rcode=st.integers(0, 15),
       qname=NAME, owners=st.lists(NAME, max_size=4))
def test_agrees_with_scapy(query_id: int, qr: int, rcode: int, qname: str,
                           owners: list[str]) -> None:
    records = [DNSRR(rrname=o, rdata="192.0.2.7") for o in owners]
    payload = bytes(DNS(id=query_id, qr=qr, rcode=rcode, qd=DNSQR(qname=qname),
                        an=records))
    mine = parse_answer(payload)
    theirs = DNS(payload)
    assert (mine.query_id, int(mine.is_response), mine.rcode) == (
        theirs.id, theirs.qr, theirs.rcode)
    assert mine.questions == [bytes(q.qname).rstrip(b".").lower() for q in theirs.qd]
    assert mine.answer_names == [bytes(r.rrname).rstrip(b".").lower() for r in theirs.an]


def test_compressed_owner_name() -> None:
    # the answer's owner is a pointer to the question's name at offset 12
    question = b"\x03www\x07example\x03org\x00" + struct.pack("!HH", 1, 1)
    record = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 7])
    payload = struct.pack("!HHHHHH", 7, 0x8180, 1, 1, 0, 0) + question + record
    answer = parse_answer(payload)
    assert answer.questions == [b"www.example.org"]
    assert answer.answer_names == [b"www.example.org"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x00\x07", "shorter than a DNS header"),
        (struct.pack("!HHHHHH", 7, 0x8180, 1, 0, 0, 0) + b"\x03ww", "past the end"),
        # a pointer to itself, and one forwards: both could loop
        (struct.pack("!HHHHHH", 7, 0x8180, 1, 0, 0, 0) + b"\xc0\x0c", "backwards"),
        (struct.pack("!HHHHHH", 7, 0x8180, 1, 0, 0, 0) + b"\xc0\x20", "backwards"),
        (struct.pack("!HHHHHH", 7, 0x8180, 1, 0, 0, 0) + b"\x40abc", "label type"),
        (struct.pack("!HHHHHH", 7, 0x8180, 1, 0, 0, 0) + b"\x3f" + b"a" * 63 + b"\x00",
         "question runs past"),
    ],
)
def test_malformed_is_a_value_error(payload: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_answer(payload)


def test_overlong_name_is_refused() -> None:
    name = (b"\x3f" + b"a" * 63) * 5 + b"\x00"  # 320 bytes of labels
    with pytest.raises(ValueError, match="longer than 255"):
        read_name(name, 0)


@settings(max_examples=100, deadline=None)
@given(query_id=st.integers(0, 0xFFFF), qname=NAME)
def test_query_agrees_with_scapy(query_id: int, qname: str) -> None:
    from collectors.probes.dnswire import build_query

    assert build_query(qname, query_id) == bytes(
        DNS(id=query_id, rd=1, qd=DNSQR(qname=qname, qtype="A")))


def test_a_name_dns_cannot_carry_is_refused() -> None:
    from collectors.probes.dnswire import build_query

    with pytest.raises(ValueError, match="not a DNS name"):
        build_query("a" * 64 + ".example", 1)
