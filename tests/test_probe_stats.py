"""RTT statistics and echo packet building: pure, no I/O."""

from __future__ import annotations

import math
import socket
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collectors.probes.connecting import connect_time_ms
from collectors.probes.icmp import build_echo, build_template, inet_checksum
from collectors.probes.methods import Method, parse_method
from collectors.probes.stats import compute_stats, jitter, percentile, sample_stddev

rtt = st.floats(min_value=0.001, max_value=10_000, allow_nan=False, allow_infinity=False)


def test_known_round() -> None:
    stats = compute_stats([10.0, None, 12.0, 11.0, None, 15.0])
    assert stats.sent == 6
    assert stats.received == 4
    assert stats.loss_pct == pytest.approx(100 * 2 / 6)
    assert stats.rtt_min_ms == 10.0
    assert stats.rtt_max_ms == 15.0
    assert stats.rtt_avg_ms == pytest.approx(12.0)
    assert stats.rtt_median_ms == pytest.approx(11.5)
    # consecutive replies 10, 12, 11, 15 -> |2| + |1| + |4| over 3 differences
    assert stats.jitter_ms == pytest.approx(7 / 3)
    assert stats.stddev_ms == pytest.approx(statistics.stdev([10, 12, 11, 15]))
    # type-7 p95 of [10, 11, 12, 15]: position 2.85 -> 12 + 0.85 * 3
    assert stats.rtt_p95_ms == pytest.approx(14.55)


def test_all_lost_and_empty() -> None:
    stats = compute_stats([None, None])
    assert (stats.sent, stats.received, stats.loss_pct) == (2, 0, 100.0)
    assert stats.rtt_median_ms is None and stats.jitter_ms is None and stats.stddev_ms is None
    empty = compute_stats([])
    assert (empty.sent, empty.loss_pct) == (0, None)  # nothing left: no loss figure


def test_single_reply_has_no_jitter_or_stddev() -> None:
    stats = compute_stats([5.0])
    assert stats.rtt_median_ms == stats.rtt_p95_ms == 5.0
    assert stats.jitter_ms is None and stats.stddev_ms is None


def test_constant_rtt_has_zero_jitter() -> None:
    assert jitter([3.0] * 10) == 0.0
    assert sample_stddev([3.0] * 10) == 0.0


def test_percentile_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        percentile([], 0.5)
    with pytest.raises(ValueError):
        percentile([1.0], 1.5)


@given(st.lists(st.one_of(rtt, st.none()), min_size=1, max_size=200))
def test_stats_properties(outcomes: list[float | None]) -> None:
    stats = compute_stats(outcomes)
    rtts = [r for r in outcomes if r is not None]
    assert stats.sent == len(outcomes)
    assert stats.received == len(rtts)
    assert 0.0 <= stats.loss_pct <= 100.0
    if rtts:
        assert stats.rtt_min_ms is not None and stats.rtt_max_ms is not None
        assert stats.rtt_median_ms is not None and stats.rtt_p95_ms is not None
        assert stats.rtt_avg_ms is not None
        eps = 1e-9 * stats.rtt_max_ms
        assert stats.rtt_min_ms <= stats.rtt_median_ms <= stats.rtt_p95_ms + eps
        assert stats.rtt_p95_ms <= stats.rtt_max_ms + eps
        assert stats.rtt_min_ms - eps <= stats.rtt_avg_ms <= stats.rtt_max_ms + eps
        assert stats.rtt_median_ms == pytest.approx(statistics.median(rtts))
        if len(rtts) >= 2:
            assert stats.stddev_ms == pytest.approx(statistics.stdev(rtts), rel=1e-6, abs=1e-9)
            assert stats.jitter_ms is not None
            assert 0.0 <= stats.jitter_ms <= stats.rtt_max_ms - stats.rtt_min_ms + eps


@given(st.lists(rtt, min_size=2, max_size=100), st.floats(min_value=-1000, max_value=1000))
def test_jitter_ignores_a_constant_offset(rtts: list[float], offset: float) -> None:
    shifted = [r + offset for r in rtts]
    base = jitter(rtts)
    assert base is not None
    assert jitter(shifted) == pytest.approx(base, rel=1e-6, abs=1e-6)


def test_echo_v4_matches_scapy_and_checksums() -> None:
    from scapy.layers.inet import ICMP

    packet = build_echo(socket.AF_INET, 0x1234, 0x0102, 0xDEADBEEF, 0x55)
    assert inet_checksum(packet) == 0  # a valid checksum sums to zero
    parsed = ICMP(packet)
    assert (parsed.type, parsed.code, parsed.id, parsed.seq) == (8, 0, 0x1234, 0x0102)
    rebuilt = bytes(ICMP(type=8, id=0x1234, seq=0x0102) / bytes(packet[8:]))
    assert rebuilt == packet
    template = build_template(socket.AF_INET)
    assert template == build_echo(socket.AF_INET, 0, 0, 0, 0)


def test_echo_v6_layout_matches_scapy() -> None:
    from scapy.layers.inet6 import ICMPv6EchoRequest

    packet = build_echo(socket.AF_INET6, 7, 9, 11, 13)
    parsed = ICMPv6EchoRequest(packet)
    assert (parsed.type, parsed.id, parsed.seq) == (128, 7, 9)
    assert build_template(socket.AF_INET6) == build_echo(socket.AF_INET6, 0, 0, 0, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("icmp", Method("icmp")),
        ("tcp:443", Method("tcp", port=443)),
        ("dns", Method("dns", port=53, qname="example.com")),
        ("dns:www.example.org", Method("dns", port=53, qname="www.example.org")),
        ("http", Method("http", port=80, path="/")),
        ("http:/health", Method("http", port=80, path="/health")),
    ],
)
def test_parse_method(text: str, expected: Method) -> None:
    assert parse_method(text) == expected
    assert parse_method(text).text == text


@pytest.mark.parametrize("text", ["tcp", "tcp:0", "tcp:70000", "udp:53", "http:x", "icmp:1", "",
                                  "tcp:\u00b2", "dns:", "http:/a b"])
def test_parse_method_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"tcp needs a port|DNS query name|HTTP path|unknown"):
        parse_method(text)


def test_nan_never_produced() -> None:
    stats = compute_stats([1.0, 1.0])
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in stats.as_dict().values())


def test_tcp_connect_time_prefers_the_kernels_handshake_sample() -> None:
    assert connect_time_ms(elapsed_ms=27.5, kernel_rtt_ms=10.2) == 10.2  # the loop ran late
    assert connect_time_ms(elapsed_ms=10.4, kernel_rtt_ms=None) == 10.4  # no sample: clock
    # A lost SYN (the kernel retransmitted it after >= 1 s): the time users waited counts.
    assert connect_time_ms(elapsed_ms=1010.0, kernel_rtt_ms=10.0, retransmitted=True) == 1010.0
    # No retransmission: the loop was a second late, the handshake took 10 ms.
    assert connect_time_ms(elapsed_ms=1010.0, kernel_rtt_ms=10.0) == 10.0
