"""The probes collector: runs every `[[probes]]` entry through its carriers on its interval.

One streaming collector owns one ProbeEngine (one raw ICMP socket per carrier and family)
for all probes. Each probe entry has its own task, woken at its aligned ticks
(interval multiples, like polled collectors), which probes every (carrier, method) at once
and emits `probe` and `quality` points stamped with that tick; entries with
`traceroute = true` also get a task at `[traceroute].interval` emitting `traceroute`.

Probes of one round are spread over half the interval (at most 1 s apart), so a round
samples the interval rather than one instant and still ends before the next tick.
Quality of a (carrier, target) is judged on the entry's `icmp` results when it has that
method, else on its first method.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from agent.collector import Built, CollectorContext, StreamingCollector
from agent.points import FieldValue, Point
from collectors.probes.config import ProbeConfig, probe_carriers
from collectors.probes.engine import ProbeEngine, ProbeResult
from collectors.probes.quality import QualityTracker, assess
from collectors.probes.sockets import DEFAULT_BINDING, Binding
from collectors.probes.stats import RttStats
from collectors.probes.traceroute import AsLookup, TraceResult, traceroute

log = logging.getLogger(__name__)

MAX_SPACING_S = 1.0


def spacing_s(interval_s: float, count: int) -> float:
    """Gap between the probes of one round: spread over half the interval, at most 1 s."""
    return max(0.001, min(MAX_SPACING_S, 0.5 * interval_s / max(count, 1)))


def quality_method(methods: tuple[str, ...]) -> str:
    return "icmp" if "icmp" in methods else methods[0]


def stats_fields(stats: RttStats) -> dict[str, FieldValue]:
    """`probe` fields; RTT figures that do not exist (no reply, one reply) are left out."""
    return {k: v for k, v in stats.as_dict().items() if v is not None}


def probe_point(result: ProbeResult, time_ns: int) -> Point:
    fields = stats_fields(result.stats)
    fields["send_errors"] = result.round.send_errors
    return Point(
        "probe",
        {"carrier": result.carrier, "target": result.target, "method": result.method},
        fields,
        time_ns,
    )


def traceroute_point(result: TraceResult, time_ns: int) -> Point:
    fields: dict[str, FieldValue] = {
        "hops": result.hop_count,
        "reached": result.reached,
        "path": result.path,
    }
    if result.annotated:
        fields["as_path"] = result.as_path
    return Point("traceroute", {"carrier": result.carrier, "target": result.target}, fields,
                 time_ns)


def next_tick_ns(now_ns: int, interval_s: float) -> int:
    interval_ns = max(1, round(interval_s * 1e9))
    return (now_ns // interval_ns + 1) * interval_ns


async def sleep_until_ns(when_ns: int) -> None:
    delay_s = (when_ns - time.time_ns()) / 1e9
    if delay_s > 0:
        await asyncio.sleep(delay_s)


class ProbesCollector(StreamingCollector):
    name = "probes"

    def __init__(self, ctx: CollectorContext) -> None:
        super().__init__(ctx)
        self.engine: ProbeEngine | None = None
        self.tracker = QualityTracker(log)
        self.counters: dict[str, dict[str, Any]] = {}

    def bindings(self, probe: ProbeConfig) -> list[Binding]:
        carriers = probe_carriers(self.ctx.config, probe)
        if not carriers and not self.ctx.config.carriers:
            return [DEFAULT_BINDING]
        return [Binding.from_carrier(c) for c in carriers]

    def status(self) -> dict[str, Any]:
        return {"probes": self.counters}

    async def run(self) -> None:
        self.engine = ProbeEngine()
        try:
            tasks = []
            for probe in self.ctx.config.probes:
                self.counters[probe.name] = {
                    "rounds": 0, "overruns": 0, "errors": 0, "last_error": ""
                }
                tasks.append(self._probe_loop(probe))
                if probe.traceroute:
                    tasks.append(self._trace_loop(probe))
            if not tasks:
                await asyncio.Event().wait()  # nothing configured: idle for the agent's life
            await asyncio.gather(*tasks)
        finally:
            self.engine.close()
            self.engine = None

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()

    async def probe_once(self, probe: ProbeConfig, tick_ns: int) -> list[Point]:
        """One round of one entry: every (carrier, method); returns its points."""
        assert self.engine is not None
        spacing = spacing_s(probe.interval_s, probe.count)
        bindings = self.bindings(probe)
        jobs = [
            self.engine.run_round(b, probe.target, m, probe.count, spacing, probe.timeout_s)
            for b in bindings
            for m in probe.methods
        ]
        results: list[ProbeResult] = list(await asyncio.gather(*jobs))
        points = [probe_point(r, tick_ns) for r in results]
        errors = [f"{r.carrier} {r.method}: {r.round.error}" for r in results if r.round.error]
        counters = self.counters.setdefault(
            probe.name, {"rounds": 0, "overruns": 0, "errors": 0, "last_error": ""}
        )
        counters["last_error"] = "; ".join(errors)[:500]
        wanted = quality_method(probe.methods)
        # A carrier none of whose probes left (the agent's own failure) was not measured:
        # it gets no quality this round rather than a "down" the network did not cause.
        per_carrier = {r.carrier: r.stats for r in results
                       if r.method == wanted and r.stats.sent > 0}
        qualities = assess(probe.target, per_carrier, self.ctx.config.quality)
        self.tracker.update(probe.target, qualities)
        for q in qualities:
            points.append(Point(
                "quality",
                {"carrier": q.carrier, "target": q.target},
                {"status": q.status, "score": q.score, "best": q.best},
                tick_ns,
            ))
        return points

    async def _probe_loop(self, probe: ProbeConfig) -> None:
        counters = self.counters[probe.name]
        tick_ns = next_tick_ns(time.time_ns(), probe.interval_s)
        while True:
            await sleep_until_ns(tick_ns)
            try:
                self.ctx.emit(await self.probe_once(probe, tick_ns))
                counters["rounds"] += 1
            except Exception as exc:  # one bad round must not stop the other entries
                counters["errors"] = counters.get("errors", 0) + 1
                counters["last_error"] = f"{type(exc).__name__}: {exc}"[:500]
                log.exception("probe %s: round failed", probe.name)
            following = next_tick_ns(time.time_ns(), probe.interval_s)
            skipped = round((following - tick_ns) / (probe.interval_s * 1e9)) - 1
            if skipped > 0:
                counters["overruns"] += skipped
                log.warning("probe %s: round overran its interval (%d ticks skipped)",
                            probe.name, skipped)
            tick_ns = following

    def as_lookup(self, carrier: str) -> AsLookup | None:
        handler = self.ctx.control_handlers.get("bgp.lookup")
        if handler is None:
            return None
        from collectors.probes.asn import handler_lookup

        return handler_lookup(handler, carrier)

    async def trace_once(self, probe: ProbeConfig, tick_ns: int) -> list[Point]:
        cfg = self.ctx.config.traceroute
        jobs = [
            traceroute(b, probe.target, cfg.method, cfg.max_hops, cfg.timeout_s,
                       lookup_as=self.as_lookup(b.carrier))
            for b in self.bindings(probe)
        ]
        results: list[TraceResult] = list(await asyncio.gather(*jobs))
        return [traceroute_point(r, tick_ns) for r in results]

    async def _trace_loop(self, probe: ProbeConfig) -> None:
        interval_s = self.ctx.config.traceroute.interval_s
        tick_ns = next_tick_ns(time.time_ns(), interval_s)
        while True:
            await sleep_until_ns(tick_ns)
            try:
                self.ctx.emit(await self.trace_once(probe, tick_ns))
            except Exception:
                log.exception("traceroute %s: run failed", probe.name)
            tick_ns = next_tick_ns(time.time_ns(), interval_s)


def create(ctx: CollectorContext) -> Built:
    """Registry factory: nothing to do without `[[probes]]`."""
    if not ctx.config.probes:
        return Built()
    collector = ProbesCollector(ctx)
    return Built([collector], status={"probes": collector.status})
