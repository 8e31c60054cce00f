"""The lab's wire truth: decoding captured packets and pairing them per probe (no I/O).

Packets are built with scapy, so the decoder is checked against another implementation.
"""

from __future__ import annotations

import dataclasses

import pytest
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.packet import Packet, Raw

from tests.lab.ktrace import handshake_host_ms
from tests.lab.wire import (
    Frame,
    decode,
    dns_rtts_from_far_end,
    http_rtts_from_far_end,
    icmp_rtts_from_far_end,
    nearest_in,
    wire_rtts,
)

AGENT, TARGET = "100.64.1.2", "203.0.113.10"
AGENT6, TARGET6 = "2001:db8:1::2", "2001:db8:ffff::10"
MS = 1_000_000


def frame(at_ms: float, outgoing: bool, packet: Packet) -> Frame:
    decoded = decode(round(at_ms * MS), outgoing, bytes(packet))
    assert decoded is not None
    return decoded


def out_tcp(at_ms: float, sport: int, flags: str, seq: int, data: bytes = b"") -> Frame:
    return frame(at_ms, True, IP(src=AGENT, dst=TARGET) / TCP(sport=sport, dport=80,
                                                               flags=flags, seq=seq) / Raw(data))


def in_tcp(at_ms: float, dport: int, flags: str, data: bytes = b"") -> Frame:
    return frame(at_ms, False, IP(src=TARGET, dst=AGENT) / TCP(sport=80, dport=dport,
                                                               flags=flags) / Raw(data))


def test_decode_fields() -> None:
    f = frame(1.0, True, IP(src=AGENT, dst=TARGET) / UDP(sport=4000, dport=53) / DNS(id=7))
    assert (f.src, f.dst, f.proto, f.sport, f.dport, f.time_ns) == (AGENT, TARGET, 17, 4000,
                                                                     53, MS)
    assert f.payload[:2] == b"\x00\x07"
    f6 = frame(2.0, False, IPv6(src=TARGET6, dst=AGENT6) / ICMPv6EchoReply(id=3, seq=9))
    assert (f6.proto, f6.icmp_type, f6.icmp_id, f6.icmp_seq) == (58, 129, 3, 9)
    assert decode(0, True, b"") is None
    assert decode(0, True, b"\x45\x00") is None


def test_icmp_pairs_by_identifier_and_sequence_and_keeps_losses() -> None:
    frames = [
        frame(0.0, True, IP(src=AGENT, dst=TARGET) / ICMP(type=8, id=5, seq=1)),
        frame(10.0, True, IP(src=AGENT, dst=TARGET) / ICMP(type=8, id=5, seq=2)),
        frame(20.0, True, IP(src=AGENT, dst=TARGET) / ICMP(type=8, id=5, seq=3)),
        frame(22.5, False, IP(src=TARGET, dst=AGENT) / ICMP(type=0, id=5, seq=3)),
        frame(25.0, False, IP(src=TARGET, dst=AGENT) / ICMP(type=0, id=5, seq=1)),
        frame(26.0, False, IP(src="192.0.2.1", dst=AGENT) / ICMP(type=0, id=5, seq=2)),
    ]
    probes = wire_rtts(frames, "icmp", TARGET)
    assert [p.rtt_ms for p in probes] == [25.0, None, 2.5]
    six = [frame(0.0, True, IPv6(src=AGENT6, dst=TARGET6) / ICMPv6EchoRequest(id=1, seq=1)),
           frame(4.0, False, IPv6(src=TARGET6, dst=AGENT6) / ICMPv6EchoReply(id=1, seq=1))]
    assert [p.rtt_ms for p in wire_rtts(six, "icmp", TARGET6)] == [4.0]


def test_icmp_from_far_end_times_the_request_where_the_far_end_received_it() -> None:
    request = IP(src=AGENT, dst=TARGET) / ICMP(type=8, id=5, seq=1)
    reply = IP(src=TARGET, dst=AGENT) / ICMP(type=0, id=5, seq=1)
    lost = IP(src=AGENT, dst=TARGET) / ICMP(type=8, id=5, seq=2)
    uplink = [frame(0.0, True, request), frame(5.0, True, lost), frame(20.0, False, reply)]
    # the far end sees the request come in (not outgoing) and the reply leave
    far_end = [frame(1.25, False, request), frame(5.01, False, lost), frame(19.99, True, reply),
               frame(30.0, True, IP(src=TARGET, dst=AGENT) / ICMP(type=8, id=5, seq=3))]
    probes = icmp_rtts_from_far_end(uplink, far_end, TARGET)
    assert [(p.request_ns, p.rtt_ms) for p in probes] == [(1_250_000, 18.75), (5_010_000, None)]
    assert [p.rtt_ms for p in wire_rtts(uplink, "icmp", TARGET)] == [20.0, None]


def test_tcp_first_syn_to_synack_and_a_reused_local_port_is_a_new_probe() -> None:
    frames = [
        out_tcp(0.0, 4000, "S", seq=100),
        out_tcp(1000.0, 4000, "S", seq=100),  # retransmitted SYN: same connection
        in_tcp(1010.0, 4000, "SA"),
        out_tcp(1010.1, 4000, "R", seq=101),
        out_tcp(1020.0, 4000, "S", seq=900),  # the port reused by the next probe
        in_tcp(1030.5, 4000, "SA"),
        out_tcp(1040.0, 4001, "S", seq=5),  # never answered
    ]
    probes = wire_rtts(frames, "tcp:80", TARGET)
    assert [p.rtt_ms for p in probes] == [pytest.approx(1010.0), pytest.approx(10.5), None]


def test_http_is_handshake_plus_request_to_first_byte() -> None:
    frames = [
        out_tcp(0.0, 4000, "S", seq=1),
        in_tcp(10.0, 4000, "SA"),
        out_tcp(10.1, 4000, "A", seq=2),
        out_tcp(15.0, 4000, "PA", seq=2, data=b"GET / HTTP/1.1\r\n\r\n"),  # client paused 5 ms
        in_tcp(25.0, 4000, "A"),  # an ACK without data is not the first byte
        in_tcp(27.0, 4000, "PA", data=b"HTTP/1.1 200 OK\r\n"),
        out_tcp(40.0, 4001, "S", seq=7),
        in_tcp(50.0, 4001, "SA"),  # handshake, but no answer to the request
    ]
    probes = wire_rtts(frames, "http:/health", TARGET)
    assert [p.rtt_ms for p in probes] == [pytest.approx(10.0 + 12.0), None]


def test_http_from_far_end_times_the_request_where_the_far_end_received_it() -> None:
    uplink = [out_tcp(0.0, 4000, "S", seq=1), in_tcp(10.0, 4000, "SA"),
              out_tcp(10.1, 4000, "PA", seq=2, data=b"GET / HTTP/1.1\r\n\r\n"),
              in_tcp(22.0, 4000, "PA", data=b"HTTP/1.1 200 OK\r\n")]
    # the far end sees the client's frames come in: the request 0.9 ms after the tap's stamp
    far_end = [dataclasses.replace(f, outgoing=not f.outgoing,
                                   time_ns=f.time_ns + (900_000 if f.payload else 10_000))
               for f in uplink]
    assert [p.rtt_ms for p in http_rtts_from_far_end(uplink, far_end, TARGET)] == [
        pytest.approx(10.0 + 22.0 - 11.0)]
    assert [p.rtt_ms for p in wire_rtts(uplink, "http:/health", TARGET)] == [
        pytest.approx(10.0 + 11.9)]


def query(at_ms: float, sport: int, ident: int, outgoing: bool = True) -> Frame:
    return frame(at_ms, outgoing, IP(src=AGENT, dst=TARGET) / UDP(sport=sport, dport=53)
                 / DNS(id=ident, qd=DNSQR(qname="www.example.org")))


def answer(at_ms: float, dport: int, ident: int, outgoing: bool = False) -> Frame:
    return frame(at_ms, outgoing, IP(src=TARGET, dst=AGENT) / UDP(sport=53, dport=dport)
                 / DNS(id=ident, qr=1))


def test_dns_pairs_by_port_and_id() -> None:
    frames = [query(0.0, 5000, 1), query(1.0, 5001, 2), answer(11.0, 5001, 2),
              answer(12.0, 5000, 9), answer(13.0, 5000, 1)]
    assert [p.rtt_ms for p in wire_rtts(frames, "dns:www.example.org", TARGET)] == [13.0, 10.0]


def test_dns_from_far_end_times_the_query_where_the_far_end_received_it() -> None:
    uplink = [query(0.0, 5000, 1), query(1.0, 5001, 2), answer(14.0, 5000, 1)]
    # the far end sees the queries come in (not outgoing) and the answer leave
    far_end = [query(2.9, 5000, 1, outgoing=False), query(3.01, 5001, 2, outgoing=False),
               answer(13.99, 5000, 1, outgoing=True)]
    probes = dns_rtts_from_far_end(uplink, far_end, TARGET)
    assert [(p.request_ns, p.rtt_ms) for p in probes] == [(2_900_000, pytest.approx(11.1)),
                                                           (3_010_000, None)]
    assert [p.rtt_ms for p in wire_rtts(uplink, "dns", TARGET)] == [14.0, None]


def test_unknown_method_is_an_error() -> None:
    with pytest.raises(ValueError):
        wire_rtts([], "ftp", TARGET)


def test_nearest_in_clamps_to_the_interval() -> None:
    assert nearest_in(10.0, 16.0, 10.7) == 10.7  # inside: the agent's own figure
    assert nearest_in(10.0, 16.0, 9.0) == 10.0
    assert nearest_in(10.0, 16.0, 17.5) == 16.0
    assert nearest_in(12.0, 11.0, 10.0) == 11.0  # empty: the tap's


def state(at_s: float, cpu: int, sport: int, old: str, new: str, saddr: str = AGENT) -> str:
    return (f"          python-31758   [{cpu:03d}] ..... {at_s:.6f}: inet_sock_set_state: "
            f"family=AF_INET protocol=IPPROTO_TCP sport={sport} dport=443 saddr={saddr} "
            f"daddr={TARGET} oldstate={old} newstate={new}")


def device(at_s: float, cpu: int, event: str, skb: int) -> str:
    extra = " queue_mapping=0" if event == "net_dev_start_xmit" else ""
    return (f"          python-31682   [{cpu:03d}] b.s1. {at_s:.6f}: {event}: dev=mobile{extra} "
            f"skbaddr={skb:016x} len=74")


def sent(at_s: float, cpu: int, skb: int, start_s: float) -> list[str]:
    """A packet queued on `cpu` and its transmission started at `start_s`."""
    return [device(at_s, cpu, "net_dev_queue", skb),
            device(start_s, cpu, "net_dev_start_xmit", skb)]


def test_handshake_host_time_follows_each_packet() -> None:
    """Two handshakes in flight at once, SYN-ACKs waiting for the CPU in one batch, an ACK
    queued by another CPU in between, the same port used again after a refusal, and another
    source's connection: each SYN's own transmit and each SYN-ACK's own arrival."""
    lines = [
        "# tracer: nop",
        state(100.000000, 0, 40000, "TCP_CLOSE", "TCP_SYN_SENT"),
        device(100.000010, 1, "net_dev_queue", 0xA0),    # another CPU's packet
        *sent(100.000020, 0, 0xA1, 100.000050),           # probe 0's SYN: 50 µs
        state(100.020000, 1, 40001, "TCP_CLOSE", "TCP_SYN_SENT"),
        *sent(100.020010, 1, 0xA2, 100.022500),           # probe 1's SYN: 2.5 ms (a stall)
        state(100.030000, 0, 40009, "TCP_CLOSE", "TCP_SYN_SENT", saddr="100.64.2.2"),
        device(100.040000, 1, "netif_rx", 0xB0),          # probe 0's SYN-ACK arrives
        device(100.041000, 1, "netif_rx", 0xB1),          # probe 1's, 1 ms later
        device(100.043000, 0, "netif_receive_skb", 0xB0),  # the CPU comes back 3 ms late
        state(100.043030, 0, 40000, "TCP_SYN_SENT", "TCP_ESTABLISHED"),
        device(100.043050, 1, "netif_receive_skb", 0xB1),
        state(100.043060, 1, 40001, "TCP_SYN_SENT", "TCP_ESTABLISHED"),
        state(100.070000, 0, 40000, "TCP_CLOSE", "TCP_SYN_SENT"),
        *sent(100.070010, 0, 0xA3, 100.070040),
        device(100.080000, 0, "netif_rx", 0xB2),          # RST: refused
        device(100.080005, 0, "netif_receive_skb", 0xB2),
        state(100.080020, 0, 40000, "TCP_SYN_SENT", "TCP_CLOSE"),
        state(100.090000, 1, 40000, "TCP_CLOSE", "TCP_SYN_SENT"),
        *sent(100.090005, 1, 0xA1, 100.090020),          # a buffer address used again
        device(100.100000, 0, "netif_rx", 0xB0),
        device(100.100002, 0, "netif_receive_skb", 0xB0),
        state(100.100010, 0, 40000, "TCP_SYN_SENT", "TCP_ESTABLISHED"),
    ]
    handshakes = handshake_host_ms("\n".join(lines), AGENT)
    assert [h.sport for h in handshakes] == [40000, 40001, 40000]
    assert [round(h.send_ms, 3) for h in handshakes] == [0.05, 2.5, 0.02]
    assert [round(h.receive_ms, 3) for h in handshakes] == [3.03, 2.06, 0.01]
    assert round(handshakes[1].host_ms, 3) == 4.56


def test_handshake_host_time_adds_nothing_for_a_packet_not_traced() -> None:
    """The SYN's transmission and the SYN-ACK's arrival not in the trace (an arrival of
    another packet taken by the CPU): nothing is added (the strict reading)."""
    lines = [device(99.0, 0, "netif_rx", 0xB0),
             state(100.0, 0, 40000, "TCP_CLOSE", "TCP_SYN_SENT"),
             device(100.01, 0, "netif_receive_skb", 0xB9),
             state(100.01, 0, 40000, "TCP_SYN_SENT", "TCP_ESTABLISHED")]
    [handshake] = handshake_host_ms("\n".join(lines), AGENT)
    assert handshake.host_ms == 0.0
