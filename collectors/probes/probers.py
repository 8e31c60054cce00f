"""The probers: one per method kind, all with one signature, found by name in `PROBERS`.

blackbox_exporter's prober/ is the model: each prober takes what to probe and how, and
answers with the same record, so the engine has no per-method branches and a new method
is one function and one line here (and its grammar in methods.parse_method, the one
parser of method strings, which config validation calls too). Network trouble is an
outcome in the RoundResult, never an exception; an OSError out of a prober means its
socket could not be made at all, and the engine reports it as the round's error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from collectors.probes.icmp import IcmpSockets
from collectors.probes.methods import (
    Method,
    dns_probe,
    http_probe,
    paced_round,
)
from collectors.probes.rounds import RoundResult
from collectors.probes.sockets import Binding, family_of
from collectors.probes.tcpround import tcp_round


@dataclass(frozen=True, slots=True)
class RoundSpec:
    """One round to run: `count` probes of `method` to `address` through `binding`, one
    every `interval_s`, each waited for `timeout_s`. `target` is the name as configured
    (HTTP's Host header)."""

    binding: Binding
    target: str
    address: str
    method: Method
    count: int
    interval_s: float
    timeout_s: float


# The engine's long-lived raw ICMP sockets are lent to every prober (only ICMP uses them).
Prober = Callable[[RoundSpec, IcmpSockets], Awaitable[RoundResult]]


async def probe_icmp(spec: RoundSpec, icmp: IcmpSockets) -> RoundResult:
    prober = icmp.get(spec.binding, family_of(spec.address))
    return await prober.probe(spec.address, spec.count, spec.interval_s, spec.timeout_s)


async def probe_tcp(spec: RoundSpec, _icmp: IcmpSockets) -> RoundResult:
    assert spec.method.port is not None
    return await tcp_round(spec.binding, spec.address, spec.method.port, spec.count,
                           spec.interval_s, spec.timeout_s)


async def probe_dns(spec: RoundSpec, _icmp: IcmpSockets) -> RoundResult:
    assert spec.method.qname is not None
    one = dns_probe(spec.binding, spec.address, spec.method.qname)
    return await paced_round(spec.count, spec.interval_s, spec.timeout_s, one)


async def probe_http(spec: RoundSpec, _icmp: IcmpSockets) -> RoundResult:
    assert spec.method.path is not None
    one = http_probe(spec.binding, spec.address, spec.target, spec.method.path)
    return await paced_round(spec.count, spec.interval_s, spec.timeout_s, one)


PROBERS: dict[str, Prober] = {
    "icmp": probe_icmp,
    "tcp": probe_tcp,
    "dns": probe_dns,
    "http": probe_http,
}
