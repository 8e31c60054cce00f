"""The HTTP probe's first-byte time (collectors/probes/firstbyte.py): the parsing and
choice of segment as pure functions, then real connections on loopback: the watch's
filter and stamp, and the probe through it with a late event loop."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from collectors.probes.firstbyte import (
    FirstByteWatch,
    Segment,
    first_byte_arrival_ns,
    parse_segment,
)
from collectors.probes.methods import http_probe
from collectors.probes.sockets import Binding, enable_rx_timestamps, rx_timestamp_ns


def tcp_header(source_port: int, destination_port: int, seq: int) -> bytes:
    return struct.pack("!HHIIBBHHH", source_port, destination_port, seq, 0, 5 << 4, 0x18,
                       65535, 0, 0)


def test_an_ipv4_copy_is_read_past_its_ip_header_with_options() -> None:
    header = bytes([0x46, 0, 0, 0]) + bytes(20)  # IHL 6: 24 bytes, one option word
    data = header + tcp_header(80, 40000, 1234) + b"HTTP/1.1"
    data = data[:2] + len(data).to_bytes(2, "big") + data[4:]
    assert parse_segment(socket.AF_INET, data, len(data)) == (80, 40000, 1234, 8)


def test_an_ipv6_copy_starts_at_the_tcp_header_and_counts_its_full_length() -> None:
    data = tcp_header(443, 51000, 7) + b"x" * 100
    assert parse_segment(socket.AF_INET6, data[:60], len(data)) == (443, 51000, 7, 100)
    assert parse_segment(socket.AF_INET6, data[:19], 19) is None


def test_the_first_byte_is_the_lowest_sequence_number_with_data() -> None:
    ack = Segment(arrived_ns=100, seq=1000, payload_bytes=0)
    second = Segment(arrived_ns=200, seq=2460, payload_bytes=100)  # came first, out of order
    first = Segment(arrived_ns=300, seq=1000, payload_bytes=1460)
    again = Segment(arrived_ns=400, seq=1000, payload_bytes=1460)  # a retransmission
    assert first_byte_arrival_ns([ack, second, first, again]) == 300
    assert first_byte_arrival_ns([ack]) is None
    wrapped = [Segment(10, 5, 10), Segment(20, (1 << 32) - 10, 15)]  # seq wraps past 2^32
    assert first_byte_arrival_ns(wrapped) == 20


def connected_pair(family: int) -> tuple[socket.socket, socket.socket, socket.socket]:
    """(listener, client, server side) of a TCP connection on loopback."""
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
    listener.listen(4)
    client = socket.socket(family, socket.SOCK_STREAM)
    client.connect(listener.getsockname())
    server_side, _ = listener.accept()
    return listener, client, server_side


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def test_the_watch_sees_its_own_connections_first_segment_only(family: int) -> None:
    """Two connections to one server; the watch of the second gives the arrival stamp of
    that connection's first data segment (the one TCP gives too when it has not merged
    anything), not the other's, which came 20 ms earlier, nor the later segment's."""
    listener, client, server_side = connected_pair(family)
    _other_listener, other, other_server_side = connected_pair(family)
    watch = FirstByteWatch(Binding("loopback"), family, client)
    try:
        assert watch.raw is not None  # the suite runs as root
        enable_rx_timestamps(client)
        other_server_side.sendall(b"other")
        time.sleep(0.02)
        server_side.sendall(b"HTTP/1.1 200 OK\r\n")
        time.sleep(0.02)
        server_side.sendall(b"more")
        time.sleep(0.02)
        _data, ancdata, _flags, _address = client.recvmsg(1, 256)
        tcp_stamp_ns = rx_timestamp_ns(ancdata)
        first_ns = watch.first_byte_ns()
        assert first_ns is not None and first_ns == tcp_stamp_ns
        assert watch.first_byte_ns() is None  # read once: nothing new since
    finally:
        watch.close()
        for s in (listener, client, server_side, _other_listener, other, other_server_side):
            s.close()


class AnswerThenClose:
    """An HTTP server on loopback that answers a request at once and closes (its FIN) only
    `close_after_s` later: what a server that answers, then finishes up, looks like."""

    def __init__(self, family: int, close_after_s: float) -> None:
        self.close_after_s = close_after_s
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        self.listener.listen(8)
        self.address, self.port = self.listener.getsockname()[:2]
        self.answered_ns: list[int] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                self.answered_ns.append(time.time_ns())
                time.sleep(self.close_after_s)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(params=[socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def server(request: pytest.FixtureRequest) -> Iterator[AnswerThenClose]:
    s = AnswerThenClose(request.param, close_after_s=0.04)
    yield s
    s.close()


def probe_with_a_late_loop(server: AnswerThenClose, late_s: float) -> float:
    """One HTTP probe while another task holds the event loop for `late_s` right after the
    request goes out: the answer and then the FIN arrive before the probe reads."""
    async def go() -> float:
        one = http_probe(Binding("loopback"), server.address, "lab", "/", server.port)
        probe_task = asyncio.ensure_future(one(2.0))
        while not server.answered_ns:  # the request is out and answered
            await asyncio.sleep(0.0005)
        time.sleep(late_s)  # the loop is busy elsewhere (a late reader)
        return await probe_task

    return asyncio.run(go())


def test_ttfb_through_the_watch_on_loopback(server: AnswerThenClose) -> None:
    """Answer at once, FIN 40 ms later, the loop reads after 80 ms: the time to first byte
    is loopback's, well under a millisecond. (Loopback does not merge the FIN into the
    answer, which is the sender's own buffer; the lab's delay line does:
    tests/test_probe_lab.py has the test where the TCP stamp alone reads 40 ms high.)"""
    assert probe_with_a_late_loop(server, late_s=0.08) < 2.0
