"""DNS query building and answer checking (scapy builds the answers here), and what a
round counts as sent, lost and not sent (loopback sockets only)."""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR

from collectors.probes.methods import (
    NotSent,
    ProbeFailure,
    SendTime,
    build_dns_query,
    check_dns_answer,
    paced_round,
    recv_in_time,
)
from collectors.probes.sockets import enable_rx_timestamps, enable_tx_timestamps, read_tx_timestamps
from collectors.probes.stats import compute_stats


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


# ---------------------------------------------------------------- what counts as loss


def test_round_counts_only_probes_that_left() -> None:
    """A probe the agent could not send is a send error, not a lost probe: it is left out
    of the outcomes (so of `sent` and loss) and counted apart."""
    script: list[float | BaseException] = [10.0, NotSent("socket: no buffer"),
                                            TimeoutError(), ProbeFailure("refused"), 12.0]

    async def one(timeout_s: float) -> float:
        item = script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    result = asyncio.run(paced_round(5, 0.0, 1.0, one))
    assert result.rtts_ms == [10.0, None, None, 12.0]
    assert result.send_errors == 1
    stats = compute_stats(result.rtts_ms)
    assert (stats.sent, stats.received, stats.loss_pct) == (4, 2, 50.0)


def _socket_pair() -> tuple[socket.socket, socket.socket]:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setblocking(False)
    enable_rx_timestamps(receiver)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.connect(receiver.getsockname())
    return receiver, sender


@pytest.mark.parametrize(("sent_before_s", "timeout_s", "counted"),
                         [(0.0, 0.1, True), (0.15, 0.1, False)])
def test_answer_received_in_time_counts_even_when_read_late(
        sent_before_s: float, timeout_s: float, counted: bool) -> None:
    """The event loop got to the socket only after the deadline (another thread held the
    GIL, say). The kernel's receive time decides: in time counts, late does not."""
    receiver, sender = _socket_pair()
    try:
        sent = SendTime(receiver)  # no stamps on this socket: the clock read stands
        sent_ns = sent.ns
        time.sleep(sent_before_s)
        sender.send(b"answer")
        select.select([receiver], [], [], 1.0)
        time.sleep(0.2)  # the loop is late: the deadline has passed before it looks

        async def wait() -> tuple[bytes, int | None]:
            return await recv_in_time(receiver, sent, timeout_s)

        if counted:
            payload, received_ns = asyncio.run(wait())
            assert payload == b"answer"
            assert received_ns is not None and 0 < received_ns - sent_ns < timeout_s * 1e9
        else:
            with pytest.raises(TimeoutError):
                asyncio.run(wait())
    finally:
        receiver.close()
        sender.close()


@pytest.mark.parametrize("with_packet", [False, True])
def test_kernel_send_stamp_is_when_the_packet_left(with_packet: bool) -> None:
    """The send time probes use is the kernel's stamp of the packet, taken inside send():
    between the clock reads around it, and looped with the packet when asked (the ICMP
    prober finds its probe by the payload)."""
    receiver, sender = _socket_pair()
    try:
        enable_tx_timestamps(sender, with_packet=with_packet)
        before_ns = time.time_ns()
        sender.send(b"probe-payload")
        after_ns = time.time_ns()
        stamps = read_tx_timestamps(sender)
        assert stamps, "no send stamp looped back"
        assert all(before_ns <= stamp <= after_ns for _data, stamp in stamps)
        assert all((b"probe-payload" in data) == with_packet for data, _stamp in stamps)
        assert read_tx_timestamps(sender) == []  # drained
    finally:
        receiver.close()
        sender.close()
