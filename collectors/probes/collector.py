"""The probes collectors: every `[[probes]]` entry through its carriers on its interval.

The scheduler runs them (agent/scheduler.py): one async polled collector per entry
(`probes:NAME`, at the entry's `interval`) and, for entries with `traceroute = true`, one
at `[traceroute].interval` (`traceroute:NAME`). So rounds start on aligned ticks, their
points are stamped with the tick, and a round that overruns its interval is counted by the
scheduler like any collector's (`status` → `collectors`, and under `probes` per entry).
They share one ProbeSet: one ProbeEngine (one raw ICMP socket per carrier and family for
all entries), the quality tracker and the `probes` status section.

A round probes every (carrier, method) of its entry at once and emits `probe` and
`quality` points. Probes of one round are spread over half the interval (at most 1 s
apart), so a round samples the interval rather than one instant and still ends before the
next tick.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, ClassVar

from agent.collector import AsyncPolledCollector, Built, Collector, CollectorContext
from agent.points import FieldValue, Point
from collectors.probes.config import ProbeConfig, probe_carriers
from collectors.probes.engine import ProbeEngine
from collectors.probes.quality import QualityTracker, assess, judged_stats, quality_point
from collectors.probes.rounds import ProbeResult
from collectors.probes.sockets import DEFAULT_BINDING, Binding
from collectors.probes.stats import RttStats
from collectors.probes.traceroute import AsLookup, TraceResult, traceroute

log = logging.getLogger(__name__)

MAX_SPACING_S = 1.0


def spacing_s(interval_s: float, count: int) -> float:
    """Gap between the probes of one round: spread over half the interval, at most 1 s."""
    return max(0.001, min(MAX_SPACING_S, 0.5 * interval_s / max(count, 1)))


def stats_fields(stats: RttStats) -> dict[str, FieldValue]:
    """`probe` fields; RTT figures that do not exist (no reply, one reply) are left out."""
    return {k: v for k, v in stats.as_dict().items() if v is not None}


def probe_point(result: ProbeResult, time_ns: int = 0) -> Point:
    fields = stats_fields(result.stats)
    fields["send_errors"] = result.round.send_errors
    return Point(
        "probe",
        {"carrier": result.carrier, "target": result.target, "method": result.method},
        fields,
        time_ns,
    )


def traceroute_point(result: TraceResult, time_ns: int = 0) -> Point:
    fields: dict[str, FieldValue] = {
        "hops": result.hop_count,
        "reached": result.reached,
        "path": result.path,
    }
    if result.annotated:
        fields["as_path"] = result.as_path
    return Point("traceroute", {"carrier": result.carrier, "target": result.target}, fields,
                 time_ns)


def _counters() -> dict[str, Any]:
    return {"rounds": 0, "overruns": 0, "errors": 0, "last_error": ""}


class ProbeSet:
    """What the probes collectors of one config share: the engine (its sockets), the
    quality tracker and the per-entry counters of the `probes` status section."""

    def __init__(self, ctx: CollectorContext) -> None:
        self.ctx = ctx
        self.engine = ProbeEngine()
        self.tracker = QualityTracker(log)
        self.counters: dict[str, dict[str, Any]] = {p.name: _counters()
                                                    for p in ctx.config.probes}
        self._loop: asyncio.AbstractEventLoop | None = None  # where the sockets are watched
        self._close_lock = threading.Lock()
        self._closed = False

    def status(self) -> dict[str, Any]:
        return {"probes": self.counters}

    def bindings(self, probe: ProbeConfig) -> list[Binding]:
        carriers = probe_carriers(self.ctx.config, probe)
        if not carriers and not self.ctx.config.carriers:
            return [DEFAULT_BINDING]
        return [Binding.from_carrier(c) for c in carriers]

    def as_lookup(self, carrier: str) -> AsLookup | None:
        handler = self.ctx.control_handlers.get("bgp.lookup")
        if handler is None:
            return None
        from collectors.probes.asn import handler_lookup

        return handler_lookup(handler, carrier)

    async def probe_once(self, probe: ProbeConfig, time_ns: int = 0) -> list[Point]:
        """One round of one entry: every (carrier, method); returns its points."""
        self._loop = asyncio.get_running_loop()
        spacing = spacing_s(probe.interval_s, probe.count)
        jobs = [
            self.engine.run_round(b, probe.target, m, probe.count, spacing, probe.timeout_s)
            for b in self.bindings(probe)
            for m in probe.methods
        ]
        results: list[ProbeResult] = list(await asyncio.gather(*jobs))
        points = [probe_point(r, time_ns) for r in results]
        errors = [f"{r.carrier} {r.method}: {r.round.error}" for r in results if r.round.error]
        counters = self.counters.setdefault(probe.name, _counters())
        counters["last_error"] = "; ".join(errors)[:500]
        qualities = assess(probe.target, judged_stats(results, probe.methods),
                           self.ctx.config.quality)
        self.tracker.update(probe.target, qualities)
        points.extend(quality_point(q, time_ns) for q in qualities)
        return points

    async def trace_once(self, probe: ProbeConfig, time_ns: int = 0) -> list[Point]:
        self._loop = asyncio.get_running_loop()
        cfg = self.ctx.config.traceroute
        jobs = [
            traceroute(b, probe.target, cfg.method, cfg.max_hops, cfg.timeout_s,
                       lookup_as=self.as_lookup(b.carrier))
            for b in self.bindings(probe)
        ]
        results: list[TraceResult] = list(await asyncio.gather(*jobs))
        return [traceroute_point(r, time_ns) for r in results]

    def close(self) -> None:
        """Once for the group, though each of its collectors calls it (the scheduler closes
        them at the same time, each from a thread of its own). The raw sockets are
        unwatched and closed on the loop that watches them."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        loop = self._loop
        if loop is None or not loop.is_running() or _on_loop(loop):
            self.engine.close()
        else:
            loop.call_soon_threadsafe(self.engine.close)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class _EntryCollector(AsyncPolledCollector):
    """A collector of one `[[probes]]` entry, named `PREFIX:ENTRY` in status and alerts."""

    prefix: ClassVar[str]

    def __init__(self, ctx: CollectorContext, probes: ProbeSet, probe: ProbeConfig) -> None:
        super().__init__(ctx)
        self.name = f"{self.prefix}:{probe.name}"
        self.probes = probes
        self.probe = probe

    def close(self) -> None:
        self.probes.close()  # the group stops as a whole; the first close does it


class ProbeRounds(_EntryCollector):
    """The rounds of one `[[probes]]` entry, at its interval."""

    prefix = "probes"

    @property
    def interval_s(self) -> float:
        return self.probe.interval_s

    async def collect(self) -> list[Point]:
        counters = self.probes.counters[self.probe.name]
        try:
            points = await self.probes.probe_once(self.probe)
        except Exception as exc:  # counted here for `probes`, and by the scheduler
            counters["errors"] += 1
            counters["last_error"] = f"{type(exc).__name__}: {exc}"[:500]
            raise
        counters["rounds"] += 1
        return points

    def overran(self, ticks: int) -> None:
        self.probes.counters[self.probe.name]["overruns"] += ticks


class TraceRounds(_EntryCollector):
    """The traceroutes of one entry with `traceroute = true`, at `[traceroute].interval`."""

    prefix = "traceroute"

    @property
    def interval_s(self) -> float:
        interval_s: float = self.ctx.config.traceroute.interval_s
        return interval_s

    async def collect(self) -> list[Point]:
        return await self.probes.trace_once(self.probe)


def create(ctx: CollectorContext) -> Built:
    """Registry factory: nothing to do without `[[probes]]`."""
    if not ctx.config.probes:
        return Built()
    probes = ProbeSet(ctx)
    collectors: list[Collector] = []
    for probe in ctx.config.probes:
        collectors.append(ProbeRounds(ctx, probes, probe))
        if probe.traceroute:
            collectors.append(TraceRounds(ctx, probes, probe))
    return Built(collectors, status={"probes": probes.status})
