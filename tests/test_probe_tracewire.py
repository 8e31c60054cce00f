"""Traceroute's bytes (collectors/probes/tracewire.py) against scapy: every TTL's probe is
the packet scapy builds for it, and every answer reads as scapy dissects it."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, UDP, ICMPerror, UDPerror
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6TimeExceeded,
    IPerror6,
    IPv6,
)
from scapy.packet import Raw

from collectors.probes.tracewire import (
    PAYLOAD,
    UDP_BASE_PORT,
    ProbeTemplate,
    parse_answer_v4,
    parse_answer_v6,
)

SOURCE4, TARGET4, ROUTER4 = "100.64.1.2", "203.0.113.10", "100.64.1.1"
SOURCE6, TARGET6, ROUTER6 = "2001:db8:1::2", "2001:db8:ffff::10", "2001:db8:1::1"
IDENT, SPORT = 0xBEEF, 40001


def scapy_probe(family: int, method: str, ttl: int, ident: int, sport: int) -> bytes:
    """What the tracer sent before tracewire: scapy building each probe in full."""
    if method == "icmp":
        if family == socket.AF_INET:
            return bytes(ICMP(type=8, id=ident, seq=ttl) / PAYLOAD)
        return bytes(ICMPv6EchoRequest(id=ident, seq=ttl, cksum=0, data=PAYLOAD))
    ip: Any = IP(src=SOURCE4, dst=TARGET4) if family == socket.AF_INET else IPv6(
        src=SOURCE6, dst=TARGET6)
    whole = ip / UDP(sport=sport, dport=UDP_BASE_PORT + ttl - 1) / PAYLOAD
    return bytes(whole)[20 if family == socket.AF_INET else 40:]


def template(family: int, method: str, ident: int = IDENT, sport: int = SPORT) -> ProbeTemplate:
    source, target = (SOURCE4, TARGET4) if family == socket.AF_INET else (SOURCE6, TARGET6)
    return ProbeTemplate(family, method, ident, sport, source, target)


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["v4", "v6"])
@pytest.mark.parametrize("method", ["icmp", "udp"])
@pytest.mark.parametrize("ident,sport", [(IDENT, SPORT), (1, 33000), (0xFFFF, 52999)])
def test_every_ttls_probe_is_the_packet_scapy_builds(family: int, method: str, ident: int,
                                                    sport: int) -> None:
    probes = template(family, method, ident, sport)
    for ttl in [*range(1, 65), 3, 1]:  # and again out of order: nothing left from the last
        assert probes.packet(ttl) == scapy_probe(family, method, ttl, ident, sport), ttl


def test_udp_checksum_is_never_sent_as_zero() -> None:
    """A UDP checksum that computes to 0 goes out as 0xFFFF (0 means none). The source
    port adds to the one's-complement sum one for one, so the port whose sum is zero
    follows from any other port's checksum; template and scapy agree there too."""
    checksum = int.from_bytes(template(socket.AF_INET, "udp", sport=SPORT).packet(1)[6:8], "big")
    sport = (SPORT - (~checksum & 0xFFFF)) % 0xFFFF or 0xFFFF
    packet = template(socket.AF_INET, "udp", sport=sport).packet(1)
    assert packet[6:8] == b"\xff\xff"
    assert packet == scapy_probe(socket.AF_INET, "udp", 1, IDENT, sport)


def test_udp_template_needs_its_addresses() -> None:
    with pytest.raises(ValueError, match="source and destination"):
        ProbeTemplate(socket.AF_INET, "udp", IDENT, SPORT)


# ---------------------------------------------------------------- answers


def quote_v4(method: str, ttl: int, ident: int = IDENT, sport: int = SPORT,
             quoted_bytes: int | None = None) -> bytes:
    """The probe as a router quotes it: its IP header and (at least) 8 bytes of it."""
    probe = scapy_probe(socket.AF_INET, method, ttl, ident, sport)
    proto = 1 if method == "icmp" else 17
    quoted = bytes(IP(src=SOURCE4, dst=TARGET4, ttl=1, proto=proto) / Raw(probe))
    return quoted[:quoted_bytes] if quoted_bytes else quoted


def answer_v4(kind: int, quoted: bytes, code: int = 0) -> bytes:
    return bytes(IP(src=ROUTER4, dst=SOURCE4) / ICMP(type=kind, code=code) / Raw(quoted))


def quote_v6(method: str, ttl: int, ident: int = IDENT, sport: int = SPORT) -> bytes:
    probe = scapy_probe(socket.AF_INET6, method, ttl, ident, sport)
    nh = 58 if method == "icmp" else 17
    return bytes(IPv6(src=SOURCE6, dst=TARGET6, hlim=1, nh=nh) / Raw(probe))


def scapy_reads_v4(data: bytes, method: str) -> tuple[int, bool] | None:
    """scapy's dissection of the same answer: the tracer's parser before tracewire (which
    took an exception of scapy's as "not ours")."""
    try:
        return _scapy_reads_v4(data, method)
    except Exception:
        return None


def _scapy_reads_v4(data: bytes, method: str) -> tuple[int, bool] | None:
    packet = IP(data)
    icmp = packet.getlayer(ICMP)
    if icmp is None:
        return None
    if icmp.type == 0 and method == "icmp":
        return (int(icmp.seq), True) if icmp.id == IDENT else None
    if icmp.type not in (3, 11):
        return None
    if method == "icmp":
        inner = packet.getlayer(ICMPerror)
        if inner is None or inner.type != 8 or inner.id != IDENT:
            return None
        return int(inner.seq), icmp.type == 3
    udp = packet.getlayer(UDPerror)
    if udp is None or udp.sport != SPORT:
        return None
    return int(udp.dport) - UDP_BASE_PORT + 1, icmp.type == 3


def scapy_reads_v6(data: bytes, method: str) -> tuple[int, bool] | None:
    if data[0] == 129:
        if method != "icmp":
            return None
        reply = ICMPv6EchoReply(data)
        return (int(reply.seq), True) if reply.id == IDENT else None
    packet: Any = {3: ICMPv6TimeExceeded, 1: ICMPv6DestUnreach}[data[0]](data)
    assert packet.getlayer(IPerror6) is not None
    if method == "icmp":
        inner = packet.getlayer(ICMPv6EchoRequest)
        return (int(inner.seq), data[0] == 1) if inner is not None and inner.id == IDENT else None
    udp = packet.getlayer(UDPerror)
    if udp is None or udp.sport != SPORT:
        return None
    return int(udp.dport) - UDP_BASE_PORT + 1, data[0] == 1


V4_CASES = [
    ("icmp", answer_v4(11, quote_v4("icmp", 3)), (3, False)),  # time exceeded, whole quote
    ("icmp", answer_v4(11, quote_v4("icmp", 4, quoted_bytes=28)), (4, False)),  # RFC 792 quote
    ("icmp", answer_v4(3, quote_v4("icmp", 7), code=1), (7, True)),  # host unreachable
    ("icmp", bytes(IP(src=TARGET4, dst=SOURCE4) / ICMP(type=0, id=IDENT, seq=5) / PAYLOAD),
     (5, True)),  # echo reply from the target
    ("icmp", bytes(IP(src=TARGET4, dst=SOURCE4) / ICMP(type=0, id=IDENT + 1, seq=5)), None),
    ("icmp", answer_v4(11, quote_v4("icmp", 3, ident=IDENT + 1)), None),  # another trace's
    ("icmp", answer_v4(11, quote_v4("udp", 3)), None),  # a UDP probe quoted: not this trace
    ("udp", answer_v4(11, quote_v4("udp", 2)), (2, False)),
    ("udp", answer_v4(3, quote_v4("udp", 6), code=3), (6, True)),  # port unreachable
    ("udp", answer_v4(3, quote_v4("udp", 6, sport=SPORT + 1), code=3), None),
    ("udp", bytes(IP(src=TARGET4, dst=SOURCE4) / ICMP(type=0, id=IDENT, seq=5)), None),
    ("udp", answer_v4(5, quote_v4("udp", 2)), None),  # a redirect
    ("icmp", answer_v4(11, quote_v4("icmp", 3, quoted_bytes=24)), None),  # quote too short
]


@pytest.mark.parametrize("method,data,expected", V4_CASES)
def test_ipv4_answers_read_as_scapy_reads_them(method: str, data: bytes,
                                               expected: tuple[int, bool] | None) -> None:
    assert parse_answer_v4(data, IDENT, SPORT, method) == expected
    assert scapy_reads_v4(data, method) == expected


V6_CASES = [
    ("icmp", bytes(ICMPv6TimeExceeded() / Raw(quote_v6("icmp", 3))), (3, False)),
    ("icmp", bytes(ICMPv6DestUnreach(code=3) / Raw(quote_v6("icmp", 9))), (9, True)),
    ("icmp", bytes(ICMPv6EchoReply(id=IDENT, seq=4, data=PAYLOAD)), (4, True)),
    ("icmp", bytes(ICMPv6EchoReply(id=IDENT - 1, seq=4)), None),
    ("icmp", bytes(ICMPv6TimeExceeded() / Raw(quote_v6("icmp", 3, ident=7))), None),
    ("udp", bytes(ICMPv6TimeExceeded() / Raw(quote_v6("udp", 2))), (2, False)),
    ("udp", bytes(ICMPv6DestUnreach(code=4) / Raw(quote_v6("udp", 5))), (5, True)),
    ("udp", bytes(ICMPv6DestUnreach(code=4) / Raw(quote_v6("udp", 5, sport=1))), None),
    ("udp", bytes(ICMPv6EchoReply(id=IDENT, seq=4)), None),
]


@pytest.mark.parametrize("method,data,expected", V6_CASES)
def test_ipv6_answers_read_as_scapy_reads_them(method: str, data: bytes,
                                               expected: tuple[int, bool] | None) -> None:
    assert parse_answer_v6(data, IDENT, SPORT, method) == expected
    assert scapy_reads_v6(data, method) == expected


def test_answers_to_a_tracers_own_probes_round_trip() -> None:
    """What ProbeTemplate sends, quoted back, reads as the TTL it was sent with."""
    for method in ("icmp", "udp"):
        probes4, probes6 = template(socket.AF_INET, method), template(socket.AF_INET6, method)
        for ttl in range(1, 31):
            proto, nh = (1, 58) if method == "icmp" else (17, 17)
            quoted4 = bytes(IP(src=SOURCE4, dst=TARGET4, ttl=1, proto=proto)) + probes4.packet(ttl)
            assert parse_answer_v4(answer_v4(11, quoted4), IDENT, SPORT, method) == (ttl, False)
            quoted6 = bytes(IPv6(src=SOURCE6, dst=TARGET6, nh=nh)) + probes6.packet(ttl)
            answer6 = bytes(ICMPv6TimeExceeded() / Raw(quoted6))
            assert parse_answer_v6(answer6, IDENT, SPORT, method) == (ttl, False)


@given(st.binary(max_size=120), st.sampled_from(["icmp", "udp"]))
def test_any_bytes_read_without_raising(data: bytes, method: str) -> None:
    """A raw socket hands over whatever arrives: no input may raise."""
    for parse in (parse_answer_v4, parse_answer_v6):
        result = parse(data, IDENT, SPORT, method)
        assert result is None or (isinstance(result[0], int) and isinstance(result[1], bool))


@pytest.mark.parametrize("cut", range(0, 56))
def test_every_truncation_of_an_answer_is_no_answer(cut: int) -> None:
    whole = answer_v4(11, quote_v4("icmp", 3))  # 20 + 8 + 20 + 8: the least that matches
    assert parse_answer_v4(whole[:cut], IDENT, SPORT, "icmp") is None
