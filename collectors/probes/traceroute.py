"""Traceroute through one carrier: TTL-stepped ICMP echo or UDP probes.

Probes leave on sockets bound to the carrier (see sockets.py) with the TTL (hop limit) set
per probe; ICMP answers (time exceeded, echo reply, unreachable) come back on a raw ICMP
socket bound the same way and are matched to the probe through the quoted header (ICMP
identifier + sequence, or UDP ports). The bytes, both ways, are tracewire.py's. TTLs go
out in windows of `window` so a path of n hops costs about n / window timeouts at worst,
not n.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from collectors.probes.resolve import ResolveError, resolve
from collectors.probes.sockets import (
    Binding,
    enable_rx_timestamps,
    family_of,
    open_bound,
    rx_timestamp_ns,
)
from collectors.probes.tracewire import (
    UDP_BASE_PORT,
    ProbeTemplate,
    parse_answer_v4,
    parse_answer_v6,
)

IPV6_UNICAST_HOPS = 16

# Lookup of one hop address: origin AS or None (unknown); None as a whole = no BGP tables.
AsLookup = Callable[[str], Awaitable[int | None]]


@dataclass
class Hop:
    ttl: int
    address: str | None = None
    rtt_ms: float | None = None
    origin_as: int | None = None

    def as_dict(self, with_as: bool) -> dict[str, Any]:
        data: dict[str, Any] = {"ttl": self.ttl, "address": self.address, "rtt_ms": self.rtt_ms}
        if with_as:
            data["origin_as"] = self.origin_as
        return data


@dataclass
class TraceResult:
    target: str
    carrier: str
    method: str
    address: str | None = None
    hops: list[Hop] = field(default_factory=list)
    reached: bool = False
    annotated: bool = False  # origin AS looked up in the agent's BGP tables
    error: str | None = None

    @property
    def hop_count(self) -> int:
        """Hops to the target when reached, else to the last hop that answered."""
        return len(self.hops)

    @property
    def path(self) -> str:
        return " ".join(h.address or "*" for h in self.hops)

    @property
    def as_path(self) -> str:
        """Origin ASes along the path, consecutive repeats collapsed, unknown ones skipped."""
        collapsed: list[int] = []
        for hop in self.hops:
            if hop.origin_as is not None and (not collapsed or collapsed[-1] != hop.origin_as):
                collapsed.append(hop.origin_as)
        return " ".join(str(asn) for asn in collapsed)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "target": self.target,
            "carrier": self.carrier,
            "method": self.method,
            "address": self.address,
            "reached": self.reached,
            "hops": [h.as_dict(self.annotated) for h in self.hops],
        }
        if self.annotated:
            data["as_path"] = self.as_path
        if self.error:
            data["error"] = self.error
        return data


@dataclass
class _Answer:
    address: str
    received_ns: int
    final: bool  # from the destination (echo reply / port unreachable) or a hard stop


def _local_source(binding: Binding, family: int, address: str) -> str:
    """The source address the kernel would use (the UDP checksum covers it)."""
    source = binding.source(family)
    if source:
        return source
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        if binding.interface:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, binding.interface.encode())
        probe.connect((address, UDP_BASE_PORT))
        return str(probe.getsockname()[0])


class _Tracer:
    def __init__(
        self, binding: Binding, address: str, method: str, timeout_s: float
    ) -> None:
        self.binding = binding
        self.address = address
        self.method = method
        self.timeout_s = timeout_s
        self.family = family_of(address)
        self.v4 = self.family == socket.AF_INET
        self.ident = int.from_bytes(os.urandom(2), "big") or 1
        self.sport = 33000 + int.from_bytes(os.urandom(2), "big") % 20000
        source = None if method == "icmp" else _local_source(binding, self.family, address)
        self.probes = ProbeTemplate(self.family, method, self.ident, self.sport, source, address)
        proto = socket.IPPROTO_ICMP if self.v4 else socket.IPPROTO_ICMPV6
        self.rx = open_bound(binding, self.family, socket.SOCK_RAW, proto)
        enable_rx_timestamps(self.rx)
        if method == "icmp":
            self.tx = self.rx
        else:
            self.tx = open_bound(binding, self.family, socket.SOCK_RAW, socket.IPPROTO_UDP)
            self.tx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # never read
        self.sent_ns: dict[int, int] = {}
        self.answers: dict[int, _Answer] = {}
        self.changed = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.rx.fileno(), self._on_readable)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.rx.fileno())
        self.rx.close()
        if self.tx is not self.rx:
            self.tx.close()

    def send(self, ttl: int) -> None:
        if self.v4:
            self.tx.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        else:
            self.tx.setsockopt(socket.IPPROTO_IPV6, IPV6_UNICAST_HOPS, ttl)
        packet = self.probes.packet(ttl)
        self.sent_ns[ttl] = time.time_ns()
        self.tx.sendto(packet, (self.address, 0) if self.v4 else (self.address, 0, 0, 0))

    def _on_readable(self) -> None:
        parse = parse_answer_v4 if self.v4 else parse_answer_v6
        while True:
            try:
                data, ancdata, _flags, source = self.rx.recvmsg(4096, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            matched = parse(data, self.ident, self.sport, self.method)
            if matched is None:
                continue
            ttl, final = matched
            if ttl not in self.sent_ns or ttl in self.answers:
                continue
            received_ns = rx_timestamp_ns(ancdata) or time.time_ns()
            self.answers[ttl] = _Answer(str(source[0]), received_ns, final)
            self.changed.set()

    def done_below(self, ttls: range) -> bool:
        """All of `ttls` answered, or the destination answered with every lower TTL answered."""
        final = [t for t in ttls if t in self.answers and self.answers[t].final]
        limit = min(final) if final else None
        relevant = [t for t in ttls if limit is None or t <= limit]
        return all(t in self.answers for t in relevant)


async def traceroute(
    binding: Binding,
    target: str,
    method: str = "icmp",
    max_hops: int = 30,
    timeout_s: float = 1.0,
    window: int = 8,
    address: str | None = None,
    lookup_as: AsLookup | None = None,
) -> TraceResult:
    """Trace `target` through `binding`'s carrier; network failures land in `.error`."""
    result = TraceResult(target=target, carrier=binding.carrier, method=method)
    if method not in ("icmp", "udp"):
        raise ValueError(f"traceroute method must be icmp or udp, got {method!r}")
    try:
        result.address = address or await resolve(target, binding)
        tracer = _Tracer(binding, result.address, method, timeout_s)
    except (ResolveError, OSError) as exc:
        result.error = str(exc) if isinstance(exc, ResolveError) else (exc.strerror or str(exc))
        return result
    final_ttl: int | None = None
    try:
        first = 1
        while first <= max_hops and final_ttl is None:
            ttls = range(first, min(first + window, max_hops + 1))
            for ttl in ttls:
                try:
                    tracer.send(ttl)
                except OSError as exc:
                    result.error = exc.strerror or str(exc)
                    break
                await asyncio.sleep(0.001)
            if result.error:
                break
            deadline = time.monotonic() + timeout_s
            while not tracer.done_below(ttls):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                tracer.changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await tracer.changed.wait()
            finals = [t for t in ttls if t in tracer.answers and tracer.answers[t].final]
            final_ttl = min(finals) if finals else None
            first += window
        if final_ttl is not None and not result.error:
            final_ttl = await _recheck_silent(tracer, final_ttl, timeout_s)
    finally:
        tracer.close()
    last = final_ttl or max(tracer.answers, default=0)
    for ttl in range(1, last + 1):
        hop = Hop(ttl)
        answer = tracer.answers.get(ttl)
        if answer is not None:
            hop.address = answer.address
            hop.rtt_ms = round((answer.received_ns - tracer.sent_ns[ttl]) / 1e6, 3)
        result.hops.append(hop)
    result.reached = final_ttl is not None and result.hops[-1].address == result.address
    if lookup_as is not None:
        await _annotate(result, lookup_as)
    return result


async def _recheck_silent(tracer: _Tracer, final_ttl: int, timeout_s: float) -> int:
    """Probe silent TTLs just below the destination again, one at a time.

    Probes of a window that overshoot the path all reach the destination, whose ICMP errors
    (UDP port unreachable) are rate-limited per source: a silent TTL right below the final
    one may be the destination itself, not a silent router. Re-asking one at a time
    finds the true hop count.
    """
    silent = []
    ttl = final_ttl - 1
    while ttl >= 1 and ttl not in tracer.answers:
        silent.append(ttl)
        ttl -= 1
    for ttl in sorted(silent):
        tracer.sent_ns.pop(ttl, None)
        try:
            tracer.send(ttl)
        except OSError:
            break
        deadline = time.monotonic() + timeout_s
        while ttl not in tracer.answers and time.monotonic() < deadline:
            tracer.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline - time.monotonic()):
                    await tracer.changed.wait()
        answer = tracer.answers.get(ttl)
        if answer is not None and answer.final:
            return ttl
    return final_ttl


async def _annotate(result: TraceResult, lookup_as: AsLookup) -> None:
    """Origin AS per hop; any failure of the lookup itself means no annotation at all."""
    cache: dict[str, int | None] = {}
    try:
        for hop in result.hops:
            if hop.address is None:
                continue
            if hop.address not in cache:
                cache[hop.address] = await lookup_as(hop.address)
            hop.origin_as = cache[hop.address]
    except Exception:  # AsLookupUnavailable and whatever a handler raised
        for hop in result.hops:
            hop.origin_as = None
        return
    result.annotated = True
