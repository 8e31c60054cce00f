"""Probe methods other than ICMP: TCP connect, DNS over UDP, HTTP time to first byte.

Each probe opens its own socket bound to the carrier (see sockets.py), so a probe "through
carrier X" really leaves through X. A failure (refused, timed out, wrong answer, no route)
is an outcome of None with a reason, never an exception out of the round.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from collectors.probes.icmp import RoundResult
from collectors.probes.sockets import (
    Binding,
    enable_rx_timestamps,
    family_of,
    open_bound,
    rx_timestamp_ns,
)

DEFAULT_DNS_QNAME = "example.com"
DEFAULT_HTTP_PATH = "/"
_STATUS_LINE = re.compile(rb"^HTTP/\d(?:\.\d)? (\d{3})")
_LINGER_RESET = struct.pack("ii", 1, 0)
# struct tcp_info (linux/tcp.h): tcpi_rtt, the smoothed RTT in microseconds, is the u32 at
# byte 68; after a handshake it is the kernel's one sample of SYN -> SYN-ACK.
_TCPI_RTT_OFFSET = 68
_TCP_INFO_BYTES = 104
# A SYN retransmission waits at least 1 s (the kernel's initial RTO): a connect that took
# this much longer than the kernel's RTT sample lost a SYN, and its user-visible time counts.
_RETRANSMITTED_SYN_GAP_MS = 500.0
_TIMESTAMP_CMSG_BYTES = socket.CMSG_SPACE(16)  # one struct timespec


class ProbeFailure(Exception):
    """One probe failed for a reason worth reporting (refused, wrong answer, ...)."""


@dataclass(frozen=True, slots=True)
class Method:
    """A parsed method string: `icmp`, `tcp:PORT`, `dns[:QNAME]`, `http[:PATH]`."""

    kind: str
    port: int | None = None
    qname: str | None = None
    path: str | None = None

    @property
    def text(self) -> str:
        if self.kind == "tcp":
            return f"tcp:{self.port}"
        if self.kind == "dns" and self.qname != DEFAULT_DNS_QNAME:
            return f"dns:{self.qname}"
        if self.kind == "http" and self.path != DEFAULT_HTTP_PATH:
            return f"http:{self.path}"
        return self.kind


def parse_method(text: str) -> Method:
    """Raises ValueError with a readable reason."""
    kind, sep, arg = text.partition(":")
    if kind == "icmp" and not sep:
        return Method("icmp")
    if kind == "tcp":
        if not arg.isdigit() or not 1 <= int(arg) <= 65535:
            raise ValueError(f"tcp needs a port 1-65535: {text!r}")
        return Method("tcp", port=int(arg))
    if kind == "dns":
        qname = arg if sep else DEFAULT_DNS_QNAME
        if not qname or len(qname) > 253 or any(c.isspace() for c in qname):
            raise ValueError(f"bad DNS query name in {text!r}")
        return Method("dns", port=53, qname=qname)
    if kind == "http":
        path = arg if sep else DEFAULT_HTTP_PATH
        if not path.startswith("/") or any(c.isspace() or ord(c) < 32 for c in path):
            raise ValueError(f"HTTP path must start with / and hold no spaces: {text!r}")
        return Method("http", port=80, path=path)
    raise ValueError(f"unknown method {text!r} (icmp, tcp:PORT, dns[:QNAME], http[:PATH])")


OneProbe = Callable[[], Awaitable[float]]


async def paced_round(
    count: int, interval_s: float, timeout_s: float, one_probe: OneProbe
) -> RoundResult:
    """Start a probe every `interval_s` (they may overlap), each bounded by `timeout_s`."""
    errors: list[str] = []

    async def guarded() -> float | None:
        try:
            return await asyncio.wait_for(one_probe(), timeout_s)
        except TimeoutError:
            errors.append("timed out")
        except ProbeFailure as exc:
            errors.append(str(exc))
        except OSError as exc:
            errors.append(exc.strerror or str(exc))
        return None

    tasks = []
    start = time.perf_counter()
    for index in range(count):
        delay = start + index * interval_s - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(guarded()))
    rtts = list(await asyncio.gather(*tasks))
    return RoundResult(
        rtts_ms=rtts, send_errors=len(errors), error=errors[-1] if errors else None
    )


async def _connect(binding: Binding, address: str, port: int) -> socket.socket:
    family = family_of(address)
    sock = open_bound(binding, family, socket.SOCK_STREAM)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (address, port))
    except ConnectionRefusedError:
        _reset_close(sock)
        raise ProbeFailure("connection refused") from None
    except BaseException:
        _reset_close(sock)
        raise
    return sock


def _reset_close(sock: socket.socket) -> None:
    """Close with RST: a monitor must not leave TIME_WAIT sockets behind on every probe."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    sock.close()


def handshake_rtt_ms(sock: socket.socket) -> float | None:
    """The kernel's RTT sample of the handshake, or None when it has none."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)
    except OSError:
        return None
    if len(info) < _TCPI_RTT_OFFSET + 4:
        return None
    (rtt_us,) = struct.unpack_from("=I", info, _TCPI_RTT_OFFSET)
    return rtt_us / 1000.0 if rtt_us else None


def connect_time_ms(elapsed_ms: float, kernel_rtt_ms: float | None) -> float:
    """What a TCP probe reports. The clock read around connect() on the event loop runs
    late whenever another thread holds the GIL (milliseconds under load), so the kernel's
    own sample is used, unless a SYN was lost: then the connect time users see counts."""
    if kernel_rtt_ms is None or elapsed_ms - kernel_rtt_ms > _RETRANSMITTED_SYN_GAP_MS:
        return elapsed_ms
    return min(kernel_rtt_ms, elapsed_ms)


def tcp_probe(binding: Binding, address: str, port: int) -> OneProbe:
    async def one() -> float:
        start = time.perf_counter()
        sock = await _connect(binding, address, port)
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        kernel_rtt_ms = handshake_rtt_ms(sock)
        _reset_close(sock)
        return connect_time_ms(elapsed_ms, kernel_rtt_ms)

    return one


def build_dns_query(qname: str, query_id: int) -> bytes:
    from scapy.layers.dns import DNS, DNSQR

    return bytes(DNS(id=query_id, rd=1, qd=DNSQR(qname=qname, qtype="A")))


def check_dns_answer(payload: bytes, qname: str, query_id: int) -> None:
    """Raises ProbeFailure unless `payload` is a NOERROR answer to our question."""
    from scapy.layers.dns import DNS

    try:
        answer = DNS(payload)
    except Exception as exc:  # scapy raises many kinds on garbage
        raise ProbeFailure(f"malformed DNS answer: {exc}") from None
    if answer.id != query_id:
        raise ProbeFailure(f"wrong DNS answer: id {answer.id} != {query_id}")
    if answer.qr != 1:
        raise ProbeFailure("wrong DNS answer: not a response")
    if answer.rcode != 0:
        raise ProbeFailure(f"DNS error rcode {answer.rcode}")
    wanted = qname.rstrip(".").lower().encode()
    questions = answer.qd if isinstance(answer.qd, list) else [answer.qd] if answer.qd else []
    if not any(bytes(q.qname).rstrip(b".").lower() == wanted for q in questions):
        raise ProbeFailure("wrong DNS answer: question not echoed")
    records = answer.an if isinstance(answer.an, list) else [answer.an] if answer.an else []
    if not records:
        raise ProbeFailure("wrong DNS answer: no answer records")
    names = {bytes(r.rrname).rstrip(b".").lower() for r in records}
    if wanted not in names:
        raise ProbeFailure("wrong DNS answer: answer is for another name")


async def _recv_with_timestamp(sock: socket.socket,
                               size: int = 4096) -> tuple[bytes, int | None]:
    """One datagram (or up to `size` bytes of a stream) and the kernel's receive time
    (SO_TIMESTAMPNS), which does not depend on when the event loop got round to reading
    it. On a TCP socket the time is that of the last segment read: read 1 byte to get the
    first segment's."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[bytes, int | None]] = loop.create_future()

    def readable() -> None:
        if done.done():
            return
        try:
            payload, ancdata, _flags, _address = sock.recvmsg(size, _TIMESTAMP_CMSG_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            done.set_exception(exc)
            return
        done.set_result((payload, rx_timestamp_ns(ancdata)))

    loop.add_reader(sock.fileno(), readable)
    try:
        return await done
    finally:
        loop.remove_reader(sock.fileno())


def dns_probe(binding: Binding, address: str, qname: str, port: int = 53) -> OneProbe:
    async def one() -> float:
        loop = asyncio.get_running_loop()
        sock = open_bound(binding, family_of(address), socket.SOCK_DGRAM)
        try:
            enable_rx_timestamps(sock)
            query_id = int.from_bytes(os.urandom(2), "big")
            query = build_dns_query(qname, query_id)
            await loop.sock_connect(sock, (address, port))
            start = time.perf_counter()
            sent_ns = time.time_ns()  # read just before the send, as the ICMP prober does
            sock.send(query)  # one datagram: a non-blocking send completes at once
            try:
                payload, received_ns = await _recv_with_timestamp(sock)
            except ConnectionRefusedError:
                raise ProbeFailure("port unreachable") from None
            elapsed_ms = (time.perf_counter() - start) * 1000.0
        finally:
            sock.close()
        check_dns_answer(payload, qname, query_id)
        if received_ns is None or received_ns < sent_ns:
            return elapsed_ms
        return min((received_ns - sent_ns) / 1e6, elapsed_ms)

    return one


def http_probe(binding: Binding, address: str, host: str, path: str, port: int = 80) -> OneProbe:
    """Time to first byte: the handshake, then the request to the first byte of the answer.
    Both from the kernel (the handshake's RTT sample, the answer's receive timestamp), so a
    late event loop, which also sends the request late, adds nothing."""

    async def one() -> float:
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        sock = await _connect(binding, address, port)
        try:
            connect_ms = connect_time_ms((time.perf_counter() - start) * 1000.0,
                                         handshake_rtt_ms(sock))
            enable_rx_timestamps(sock)  # before the request: no data has arrived yet
            host_header = f"[{host}]" if ":" in host else host
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\n"
                "User-Agent: egress-agent\r\nAccept: */*\r\nConnection: close\r\n\r\n"
            ).encode()
            sent_ns = time.time_ns()  # the request fits the send buffer: it leaves now
            await loop.sock_sendall(sock, request)
            first, received_ns = await _recv_with_timestamp(sock, size=1)
            elapsed_ms = (time.perf_counter() - start) * 1000.0
            if not first:
                raise ProbeFailure("connection closed before any response")
            head = first
            while b"\r\n" not in head and len(head) < 4096:
                more = await loop.sock_recv(sock, 4096)
                if not more:
                    break
                head += more
        finally:
            _reset_close(sock)
        if not _STATUS_LINE.match(head):
            raise ProbeFailure("not an HTTP response")
        if received_ns is None or received_ns < sent_ns:
            return elapsed_ms
        return min(connect_ms + (received_ns - sent_ns) / 1e6, elapsed_ms)

    return one
