"""The probe engine: one asyncio process probing many targets through every carrier.

It owns one ICMP prober (raw socket) per (carrier, address family), created lazily and kept
for the engine's life, and opens a bound socket per TCP/DNS/HTTP probe. `run_round` never
raises for network trouble: failures are outcomes (None) with a reason.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass

from collectors.probes.icmp import IcmpProber, RoundResult
from collectors.probes.methods import (
    Method,
    dns_probe,
    http_probe,
    paced_round,
    parse_method,
    tcp_probe,
)
from collectors.probes.sockets import Binding, family_of
from collectors.probes.stats import RttStats, compute_stats

log = logging.getLogger(__name__)


class ResolveError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class ProbeResult:
    target: str
    carrier: str
    method: str
    address: str | None
    round: RoundResult
    stats: RttStats


def preferred_family(binding: Binding) -> int | None:
    """The family a carrier can use for a name with both A and AAAA (None: either)."""
    if binding.source4 is None and binding.source6 is not None:
        return socket.AF_INET6
    if binding.source4 is not None:
        return socket.AF_INET
    return None


async def resolve(target: str, binding: Binding | None = None) -> str:
    """An address literal as is; a name through the system resolver (IPv4 preferred)."""
    try:
        return str(ipaddress.ip_address(target))
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(target, None, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ResolveError(f"cannot resolve {target!r}: {exc}") from None
    addresses = [(info[0], str(info[4][0])) for info in infos]
    want = preferred_family(binding) if binding else None
    for family in (want, socket.AF_INET, socket.AF_INET6):
        for fam, address in addresses:
            if family is None or fam == family:
                return address
    raise ResolveError(f"cannot resolve {target!r}: no address")


class ProbeEngine:
    """Create inside a running loop; `close()` releases every socket."""

    def __init__(self) -> None:
        self._icmp: dict[tuple[Binding, int], IcmpProber] = {}

    def icmp_prober(self, binding: Binding, family: int) -> IcmpProber:
        key = (binding, family)
        prober = self._icmp.get(key)
        if prober is None or prober.closed:
            prober = IcmpProber(binding, family)
            self._icmp[key] = prober
        return prober

    async def run_round(
        self,
        binding: Binding,
        target: str,
        method: Method | str,
        count: int,
        interval_s: float,
        timeout_s: float,
        address: str | None = None,
    ) -> ProbeResult:
        method_text = method if isinstance(method, str) else method.text  # tag as configured
        if isinstance(method, str):
            method = parse_method(method)
        used, outcome = await self._round(
            binding, target, method, count, interval_s, timeout_s, address
        )
        return ProbeResult(
            target=target,
            carrier=binding.carrier,
            method=method_text,
            address=used,
            round=outcome,
            stats=compute_stats(outcome.rtts_ms),
        )

    async def _round(
        self,
        binding: Binding,
        target: str,
        method: Method,
        count: int,
        interval_s: float,
        timeout_s: float,
        address: str | None,
    ) -> tuple[str | None, RoundResult]:
        if address is None:
            try:
                address = await resolve(target, binding)
            except ResolveError as exc:
                return None, RoundResult([], send_errors=count, error=str(exc))
        family = family_of(address)
        bound = binding.source4 is not None or binding.source6 is not None
        if bound and binding.source(family) is None:
            version = 6 if family == socket.AF_INET6 else 4
            reason = f"carrier {binding.carrier} has no IPv{version} source"
            return address, RoundResult([], send_errors=count, error=reason)
        try:
            if method.kind == "icmp":
                prober = self.icmp_prober(binding, family)
                return address, await prober.probe(address, count, interval_s, timeout_s)
            if method.kind == "tcp":
                assert method.port is not None
                one = tcp_probe(binding, address, method.port)
            elif method.kind == "dns":
                assert method.qname is not None
                one = dns_probe(binding, address, method.qname)
            else:
                assert method.path is not None
                one = http_probe(binding, address, target, method.path)
            return address, await paced_round(count, interval_s, timeout_s, one)
        except OSError as exc:  # the socket itself could not be made or bound
            reason = f"carrier {binding.carrier}: {exc.strerror or exc}"
            return address, RoundResult([], send_errors=count, error=reason)

    def close(self) -> None:
        for prober in self._icmp.values():
            prober.close()
        self._icmp.clear()
