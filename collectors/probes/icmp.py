"""ICMP echo prober: one raw socket per (carrier, address family), many targets at once.

Matching: every request carries our identifier, a 16-bit sequence and, in its payload, a
64-bit token plus a per-socket magic; a reply counts only if all of them and the source
address match a probe still waiting. RTT = kernel receive timestamp (SO_TIMESTAMPNS)
minus the kernel's send stamp of the request (SO_TIMESTAMPING, looped on the error queue;
the clock read just before sendto() where the kernel gives none), both CLOCK_REALTIME.

- a reply after the probe's timeout is `late`: not counted (the probe stays lost);
- a second reply to an answered probe is a `duplicate`: not counted again;
- a reply after its round ended is `unmatched` (prober-wide counter).

scapy builds the request template (header layout and checksum are checked against it in
the tests); per probe only identifier, sequence and token are patched and the checksum is
recomputed with struct, because building each packet in scapy costs ~100 µs and would cap
the engine far below the 10k probes/s it sustains this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import struct
import time
from dataclasses import dataclass, field

from collectors.probes.pacing import round_start
from collectors.probes.rounds import RoundResult
from collectors.probes.sockets import (
    CMSG_BYTES,
    Binding,
    enable_rx_timestamps,
    enable_tx_timestamps,
    icmp_filter_only,
    open_bound,
    read_tx_timestamps,
    rx_timestamp_ns,
    set_buffers,
)

log = logging.getLogger(__name__)

ECHO_REQUEST_V4, ECHO_REPLY_V4 = 8, 0
ECHO_REQUEST_V6, ECHO_REPLY_V6 = 128, 129
_HEADER = struct.Struct("!BBHHH")
_PAYLOAD = struct.Struct("!QQ")  # token, magic
_REPLY_FIELDS = struct.Struct("!BBHHHQQ")
PACKET_BYTES = _HEADER.size + _PAYLOAD.size
_YIELD_EVERY = 32


def build_template(family: int) -> bytes:
    """An echo request built by scapy: identifier, sequence, token and magic all zero."""
    from scapy.layers.inet import ICMP
    from scapy.layers.inet6 import ICMPv6EchoRequest
    from scapy.packet import Raw

    payload = Raw(bytes(_PAYLOAD.size))
    if family == socket.AF_INET:
        return bytes(ICMP(type=ECHO_REQUEST_V4, code=0, id=0, seq=0) / payload)
    # The kernel fills the ICMPv6 checksum (it covers the pseudo-header): leave it 0.
    return bytes(ICMPv6EchoRequest(id=0, seq=0, cksum=0) / payload)


def inet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def build_echo(family: int, ident: int, seq: int, token: int, magic: int) -> bytes:
    """Fast path of `build_template` with the fields filled in (same bytes as scapy's)."""
    if family == socket.AF_INET:
        body = _PAYLOAD.pack(token, magic)
        header = _HEADER.pack(ECHO_REQUEST_V4, 0, 0, ident, seq)
        checksum = inet_checksum(header + body)
        return _HEADER.pack(ECHO_REQUEST_V4, 0, checksum, ident, seq) + body
    return _HEADER.pack(ECHO_REQUEST_V6, 0, 0, ident, seq) + _PAYLOAD.pack(token, magic)


@dataclass(slots=True)
class _Pending:
    session: _Session
    index: int
    address: str
    send_ns: int
    answered: bool = False


@dataclass
class _Session:
    """One round: `count` probes to one target; results in send order."""

    results: list[float | None]
    timeout_ns: int
    remaining: int
    done: asyncio.Event = field(default_factory=asyncio.Event)
    all_sent: bool = False
    late: int = 0
    duplicates: int = 0
    send_errors: int = 0
    last_error: str | None = None


class IcmpProber:
    """Echo probes through one carrier and family; create inside a running loop."""

    def __init__(self, binding: Binding, family: int, rcvbuf_bytes: int = 8 << 20) -> None:
        self.binding = binding
        self.family = family
        self._v4 = family == socket.AF_INET
        proto = socket.IPPROTO_ICMP if self._v4 else socket.IPPROTO_ICMPV6
        self._sock = open_bound(binding, family, socket.SOCK_RAW, proto)
        try:
            enable_rx_timestamps(self._sock)
            enable_tx_timestamps(self._sock, with_packet=True)
            set_buffers(self._sock, rcvbuf_bytes)
            icmp_filter_only(self._sock, family, {ECHO_REPLY_V4 if self._v4 else ECHO_REPLY_V6})
        except BaseException:
            self._sock.close()
            raise
        self._ident = int.from_bytes(os.urandom(2), "big")
        self._magic = int.from_bytes(os.urandom(8), "big")
        self._magic_bytes = self._magic.to_bytes(8, "big")
        self._token = int.from_bytes(os.urandom(4), "big")
        self._pending: dict[int, _Pending] = {}
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._on_readable)
        self._reply_type = ECHO_REPLY_V4 if self._v4 else ECHO_REPLY_V6
        self.unmatched = 0
        self.received_total = 0
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    # ------------------------------------------------------------ receiving

    def _take_send_stamps(self) -> None:
        """Move each pending probe's send time to the kernel's stamp of its packet (found
        by our token and magic in the looped packet); the clock read before sendto() stays
        only where the kernel gave no stamp."""
        magic = self._magic_bytes
        for data, stamp_ns in read_tx_timestamps(self._sock):
            at = data.find(magic)
            if at < 8:
                continue
            entry = self._pending.get(int.from_bytes(data[at - 8:at], "big"))
            if entry is not None and not entry.answered:
                entry.send_ns = max(entry.send_ns, stamp_ns)

    def _on_readable(self) -> None:
        self._take_send_stamps()  # before any reply: they were queued when the probe left
        sock = self._sock
        v4 = self._v4
        reply_type = self._reply_type
        ident = self._ident
        magic = self._magic
        pending = self._pending
        while True:
            try:
                data, ancdata, _flags, address = sock.recvmsg(2048, CMSG_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. the interface went away: next readiness retries
                return
            offset = (data[0] & 0x0F) * 4 if v4 else 0
            if len(data) < offset + _REPLY_FIELDS.size:
                continue
            icmp_type, _code, _ck, r_ident, r_seq, token, r_magic = _REPLY_FIELDS.unpack_from(
                data, offset
            )
            if icmp_type != reply_type or r_ident != ident or r_magic != magic:
                continue
            entry = pending.get(token)
            if entry is None or (token & 0xFFFF) != r_seq or entry.address != address[0]:
                self.unmatched += 1
                continue
            session = entry.session
            if entry.answered:
                session.duplicates += 1
                continue
            received_ns = rx_timestamp_ns(ancdata) or time.time_ns()
            rtt_ns = received_ns - entry.send_ns
            if rtt_ns > session.timeout_ns:
                session.late += 1
                entry.answered = True  # a late reply is seen once; a later copy is a duplicate
                continue
            entry.answered = True
            self.received_total += 1
            session.results[entry.index] = max(rtt_ns, 0) / 1e6
            session.remaining -= 1
            if session.remaining == 0 and session.all_sent:
                session.done.set()

    # ------------------------------------------------------------ sending

    async def probe(
        self, address: str, count: int, interval_s: float, timeout_s: float
    ) -> RoundResult:
        """Send `count` echoes to `address` every `interval_s` from the round's grid start
        (pacing.py); wait `timeout_s` for each."""
        if self.closed:
            raise RuntimeError("prober is closed")
        session = _Session(
            results=[None] * count, timeout_ns=int(timeout_s * 1e9), remaining=count
        )
        tokens: list[int] = []
        not_sent: set[int] = set()
        destination = (address, 0) if self._v4 else (address, 0, 0, 0)
        loop = self._loop
        start = round_start()
        last_send_ns = time.time_ns()
        try:
            for index in range(count):
                due = start + index * interval_s
                ahead = due - loop.time()
                if ahead > 0.0005:
                    await asyncio.sleep(ahead)
                elif index % _YIELD_EVERY == _YIELD_EVERY - 1:
                    await asyncio.sleep(0)  # let replies in during a burst
                self._token = (self._token + 1) & 0xFFFFFFFFFFFFFFFF
                token = self._token
                packet = build_echo(self.family, self._ident, token & 0xFFFF, token, self._magic)
                entry = _Pending(session, index, address, 0)
                self._pending[token] = entry
                tokens.append(token)
                entry.send_ns = time.time_ns()
                if not await self._send(packet, destination, session):
                    entry.answered = True
                    session.remaining -= 1
                    not_sent.add(index)
                last_send_ns = entry.send_ns
            session.all_sent = True
            if session.remaining > 0:
                wait_s = (last_send_ns + session.timeout_ns - time.time_ns()) / 1e9
                if wait_s > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait_s):  # no task, unlike wait_for
                            await session.done.wait()
            self._on_readable()  # replies already queued by the kernel belong to this round
        finally:
            for token in tokens:
                self._pending.pop(token, None)
        return RoundResult(
            rtts_ms=[r for i, r in enumerate(session.results) if i not in not_sent],
            late=session.late,
            duplicates=session.duplicates,
            send_errors=session.send_errors,
            error=session.last_error,
        )

    async def _send(
        self, packet: bytes, destination: tuple[object, ...], session: _Session
    ) -> bool:
        for _attempt in range(50):
            try:
                self._sock.sendto(packet, destination)
                return True
            except (BlockingIOError, InterruptedError):
                await asyncio.sleep(0.0002)
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    await asyncio.sleep(0.0002)
                    continue
                session.send_errors += 1
                session.last_error = exc.strerror or str(exc)
                return False
        session.send_errors += 1
        session.last_error = "send buffer full"
        return False


class IcmpSockets:
    """One IcmpProber per (carrier, address family), opened on first use and kept: every
    round and target through a carrier shares its raw socket. Use inside a running loop."""

    def __init__(self) -> None:
        self._probers: dict[tuple[Binding, int], IcmpProber] = {}

    def get(self, binding: Binding, family: int) -> IcmpProber:
        key = (binding, family)
        prober = self._probers.get(key)
        if prober is None or prober.closed:
            prober = IcmpProber(binding, family)
            self._probers[key] = prober
        return prober

    def close(self) -> None:
        for prober in self._probers.values():
            prober.close()
        self._probers.clear()
