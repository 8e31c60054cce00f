"""Method strings (`Method`, `parse_method`: their one grammar), rounds of a task per probe
(`paced_round`) and the probes that need one: DNS over UDP, HTTP time to first byte
(ICMP: icmp.py; TCP connect: tcpround.py).

Each probe opens its own socket bound to the carrier (see sockets.py), so a probe "through
carrier X" really leaves through X. A failure (refused, timed out, wrong answer, no route)
is an outcome of None with a reason, never an exception out of the round.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from collectors.probes import connecting
from collectors.probes.dnswire import build_query, parse_answer
from collectors.probes.firstbyte import FirstByteWatch
from collectors.probes.pacing import round_start
from collectors.probes.rounds import RoundResult
from collectors.probes.sockets import (
    CMSG_BYTES,
    Binding,
    enable_rx_timestamps,
    enable_tx_timestamps,
    family_of,
    open_bound,
    read_tx_timestamps,
    rx_timestamp_ns,
)

DEFAULT_DNS_QNAME = "example.com"
DEFAULT_HTTP_PATH = "/"
_STATUS_LINE = re.compile(rb"^HTTP/\d(?:\.\d)? (\d{3})")


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


# The method kinds parse_method knows; probers.PROBERS has one prober for each.
METHOD_KINDS = ("icmp", "tcp", "dns", "http")


def parse_method(text: str) -> Method:
    """The one parser of method strings (config validation, the CLI and the engine all
    call it). Raises ValueError with a readable reason."""
    kind, sep, arg = text.partition(":")
    if kind == "icmp" and not sep:
        return Method("icmp")
    if kind == "tcp":
        if not (arg.isascii() and arg.isdigit()) or not 1 <= int(arg) <= 65535:
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


class NotSent(Exception):
    """The agent itself could not send this probe (its socket could not be made, bound or
    written): the probe never left, so it is counted apart, never as network loss."""


# One probe: given its timeout, the RTT in ms; raises TimeoutError (lost), ProbeFailure
# (answered wrongly, refused) or NotSent. The timeout runs from the send and is judged by
# the kernel's timestamps, so an event loop that was late cannot lose an answer.
OneProbe = Callable[[float], Awaitable[float]]


async def paced_round(
    count: int, interval_s: float, timeout_s: float, one_probe: OneProbe
) -> RoundResult:
    """Start a probe every `interval_s` from the round's grid start (pacing.py; they may
    overlap), each bounded by `timeout_s`."""
    failures: list[str] = []
    not_sent: list[str] = []

    async def guarded() -> float | NotSent | None:
        try:
            return await one_probe(timeout_s)
        except NotSent as exc:
            not_sent.append(str(exc))
            return exc
        except TimeoutError:
            failures.append("timed out")
        except ProbeFailure as exc:
            failures.append(str(exc))
        except OSError as exc:
            failures.append(exc.strerror or str(exc))
        return None

    tasks = []
    loop = asyncio.get_running_loop()
    start = round_start()
    for index in range(count):
        delay = start + index * interval_s - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(guarded()))
    outcomes = await asyncio.gather(*tasks)
    errors = not_sent + failures
    return RoundResult(
        rtts_ms=[o for o in outcomes if not isinstance(o, NotSent)],
        send_errors=len(not_sent),
        error=errors[-1] if errors else None,
    )


def _open(binding: Binding, address: str, kind: int) -> socket.socket:
    try:
        return open_bound(binding, family_of(address), kind)
    except OSError as exc:
        raise NotSent(f"socket: {exc.strerror or exc}") from None


async def _connect(binding: Binding, address: str, port: int,
                   timeout_s: float) -> tuple[socket.socket, float]:
    """A connected socket and the connect time (ms) a TCP probe reports. When the timeout
    fires, a handshake the kernel completed in time still counts: the event loop may only
    have been too late to see it."""
    sock = _open(binding, address, socket.SOCK_STREAM)
    start = time.perf_counter()
    try:
        try:
            async with asyncio.timeout(timeout_s):  # no task of its own, unlike wait_for
                await connecting.connect(sock, (address, port))
        except TimeoutError:
            if not connecting.is_connected(sock):
                raise
        rtt_ms = connecting.handshake_ms(sock, start)
        if rtt_ms > timeout_s * 1000.0:
            raise TimeoutError
    except ConnectionRefusedError:
        connecting.reset_close(sock)
        raise ProbeFailure("connection refused") from None
    except BaseException:
        connecting.reset_close(sock)
        raise
    return sock, rtt_ms


def build_dns_query(qname: str, query_id: int) -> bytes:
    return build_query(qname, query_id)


def check_dns_answer(payload: bytes, qname: str, query_id: int) -> None:
    """Raises ProbeFailure unless `payload` is a NOERROR answer to our question."""
    try:
        answer = parse_answer(payload)
    except ValueError as exc:
        raise ProbeFailure(f"malformed DNS answer: {exc}") from None
    if answer.query_id != query_id:
        raise ProbeFailure(f"wrong DNS answer: id {answer.query_id} != {query_id}")
    if not answer.is_response:
        raise ProbeFailure("wrong DNS answer: not a response")
    if answer.rcode != 0:
        raise ProbeFailure(f"DNS error rcode {answer.rcode}")
    wanted = qname.rstrip(".").lower().encode()
    if wanted not in answer.questions:
        raise ProbeFailure("wrong DNS answer: question not echoed")
    if not answer.answer_names:
        raise ProbeFailure("wrong DNS answer: no answer records")
    if wanted not in answer.answer_names:
        raise ProbeFailure("wrong DNS answer: answer is for another name")


def _recv_now(sock: socket.socket, size: int) -> tuple[bytes, int | None] | None:
    """What the kernel has queued on `sock`, with its receive time; None when nothing."""
    try:
        payload, ancdata, _flags, _address = sock.recvmsg(size, CMSG_BYTES,
                                                          socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return None
    return payload, rx_timestamp_ns(ancdata)


class SendTime:
    """When a probe's packet left: the clock read just before send(), then the kernel's
    stamp of the packet once read from the error queue. The stamp can be queued after
    send() returns (the packet waited for a neighbour to resolve, or TCP sent it later),
    so it is read again while and after waiting for the answer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.ns = time.time_ns()

    def take_stamps(self) -> int:
        for _packet, stamp_ns in read_tx_timestamps(self.sock):
            self.ns = max(self.ns, stamp_ns)
        return self.ns


async def recv_in_time(sock: socket.socket, sent: SendTime, timeout_s: float,
                       size: int = 4096,
                       arrival_ns: Callable[[], int | None] | None = None,
                       ) -> tuple[bytes, int | None]:
    """One datagram (or up to `size` bytes of a stream) and the kernel's receive time
    (SO_TIMESTAMPNS), which does not depend on when the event loop got round to reading
    it. On a TCP socket the time is that of the last segment read: read 1 byte to get the
    first segment's, or pass `arrival_ns`, a truer source of the time (firstbyte.py), which
    is used when it has one. The timeout runs from the send; an answer the kernel received
    in time counts even when the loop wakes after the deadline. Raises TimeoutError."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[bytes, int | None]] = loop.create_future()

    def received() -> tuple[bytes, int | None] | None:
        got = _recv_now(sock, size)
        if got is None or arrival_ns is None:
            return got
        return got[0], arrival_ns() or got[1]

    def readable() -> None:
        if done.done():
            return
        sent.take_stamps()  # a stamp queued late wakes us (EPOLLERR) until it is read
        try:
            got = received()
        except OSError as exc:
            done.set_exception(exc)
            return
        if got is not None:
            done.set_result(got)

    left_s = timeout_s - (time.time_ns() - sent.take_stamps()) / 1e9
    loop.add_reader(sock.fileno(), readable)
    try:
        async with asyncio.timeout(max(left_s, 0.0)):
            return await done
    except TimeoutError:
        got = received()
        if got is None or (got[1] is not None
                           and got[1] - sent.take_stamps() > timeout_s * 1e9):
            raise
        return got
    finally:
        loop.remove_reader(sock.fileno())
        sent.take_stamps()


def dns_probe(binding: Binding, address: str, qname: str, port: int = 53) -> OneProbe:
    """The query is built once for the round; each probe patches its id."""
    try:
        template = build_dns_query(qname, 0)
    except ValueError as exc:  # a name DNS cannot carry: every probe of it fails, saying why
        reason = str(exc)

        async def refused(_timeout_s: float) -> float:
            raise ProbeFailure(reason)

        return refused

    async def one(timeout_s: float) -> float:
        sock = _open(binding, address, socket.SOCK_DGRAM)
        try:
            enable_rx_timestamps(sock)
            query_id = int.from_bytes(os.urandom(2), "big")
            query = query_id.to_bytes(2, "big") + template[2:]
            try:
                enable_tx_timestamps(sock)
                sock.connect((address, port))  # UDP: only sets the peer, does not block
                start = time.perf_counter()
                sent = SendTime(sock)
                sock.send(query)  # one datagram: a non-blocking send completes at once
            except OSError as exc:
                raise NotSent(f"send: {exc.strerror or exc}") from None
            try:
                payload, received_ns = await recv_in_time(sock, sent, timeout_s)
            except ConnectionRefusedError:
                raise ProbeFailure("port unreachable") from None
            elapsed_ms = (time.perf_counter() - start) * 1000.0
        finally:
            sock.close()
        check_dns_answer(payload, qname, query_id)
        sent_ns = sent.ns
        if received_ns is None or received_ns < sent_ns:
            return elapsed_ms
        return min((received_ns - sent_ns) / 1e6, elapsed_ms)

    return one


def http_probe(binding: Binding, address: str, host: str, path: str, port: int = 80) -> OneProbe:
    """Time to first byte: the handshake, then the request to the first byte of the answer.
    Both from the kernel (the handshake's RTT sample, the answer's arrival as a raw socket
    saw it: firstbyte.py says why not the TCP socket's stamp), so a late event loop, which
    also sends the request late, adds nothing."""
    host_header = f"[{host}]" if ":" in host else host
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\n"
        "User-Agent: egress-agent\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    ).encode()

    async def one(timeout_s: float) -> float:
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        sock, connect_ms = await _connect(binding, address, port, timeout_s)
        watch: FirstByteWatch | None = None
        try:
            enable_rx_timestamps(sock)  # before the request: no data has arrived yet
            enable_tx_timestamps(sock)
            watch = FirstByteWatch(binding, family_of(address), sock)
            sent = SendTime(sock)
            await loop.sock_sendall(sock, request)  # fits the send buffer: leaves at once
            first, received_ns = await recv_in_time(
                sock, sent, timeout_s - connect_ms / 1000.0, size=1,
                arrival_ns=watch.first_byte_ns)
            sent_ns = sent.ns
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
            if watch is not None:
                watch.close()
            connecting.reset_close(sock)
        if not _STATUS_LINE.match(head):
            raise ProbeFailure("not an HTTP response")
        if received_ns is None or received_ns < sent_ns:
            return elapsed_ms
        return min(connect_ms + (received_ns - sent_ns) / 1e6, elapsed_ms)

    return one
