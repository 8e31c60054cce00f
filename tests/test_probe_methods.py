"""DNS query building and answer checking (pure: scapy builds the answers here)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR

from collectors.probes.methods import ProbeFailure, build_dns_query, check_dns_answer


def answer(query_id: int = 7, qname: str = "www.example.org", **kw: object) -> bytes:
    fields: dict[str, object] = {
        "id": query_id, "qr": 1, "rd": 1, "ra": 1,
        "qd": DNSQR(qname=qname),
        "an": DNSRR(rrname=qname, rdata="192.0.2.7"),
    }
    fields.update(kw)
    return bytes(DNS(**fields))


def test_query_is_a_standard_a_query() -> None:
    query = DNS(build_dns_query("www.example.org", 4242))
    assert query.id == 4242 and query.qr == 0 and query.rd == 1
    assert query.qd[0].qname == b"www.example.org." and query.qd[0].qtype == 1


def test_good_answer_passes() -> None:
    check_dns_answer(answer(), "www.example.org", 7)
    check_dns_answer(answer(qname="WWW.Example.ORG."), "www.example.org", 7)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (answer(query_id=8), "id 8 != 7"),
        (answer(qr=0), "not a response"),
        (answer(rcode=2, an=[]), "rcode 2"),
        (answer(an=[]), "no answer records"),
        (answer(an=DNSRR(rrname="other.example.", rdata="192.0.2.9")), "another name"),
        (answer(qd=DNSQR(qname="other.example.")), "question not echoed"),
        (b"\x00\x07", "malformed"),
    ],
)
def test_wrong_answers_fail(payload: bytes, reason: str) -> None:
    with pytest.raises(ProbeFailure, match=reason):
        check_dns_answer(payload, "www.example.org", 7)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_never_raises_anything_else(payload: bytes) -> None:
    with contextlib.suppress(ProbeFailure):
        check_dns_answer(payload, "www.example.org", 7)
