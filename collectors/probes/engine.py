"""The probe engine: one asyncio process probing many targets through every carrier.

It owns the raw ICMP sockets (one per carrier and address family, opened on first use and
kept for the engine's life); every round resolves its target (resolve.py), checks that the
carrier can send to that family, and hands the round to the prober of its method
(probers.PROBERS). `run_round` never raises for network trouble: failures are outcomes
(None) with a reason.
"""

from __future__ import annotations

import logging
import socket

from collectors.probes.icmp import IcmpSockets
from collectors.probes.methods import Method, parse_method
from collectors.probes.probers import PROBERS, RoundSpec
from collectors.probes.resolve import ResolveError, resolve
from collectors.probes.rounds import ProbeResult, RoundResult
from collectors.probes.sockets import Binding, family_of
from collectors.probes.stats import compute_stats

log = logging.getLogger(__name__)


class ProbeEngine:
    """Create inside a running loop; `close()` releases every socket."""

    def __init__(self) -> None:
        self.icmp = IcmpSockets()

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
        spec = RoundSpec(binding, target, address, method, count, interval_s, timeout_s)
        try:
            return address, await PROBERS[method.kind](spec, self.icmp)
        except OSError as exc:  # the socket itself could not be made or bound
            reason = f"carrier {binding.carrier}: {exc.strerror or exc}"
            return address, RoundResult([], send_errors=count, error=reason)

    def close(self) -> None:
        self.icmp.close()
