"""`link` (polled) from rtnetlink, and the links group's factory.

Per poll: one RTM_GETSTATS dump (64-bit counters of every interface, ~6 ms for 5,000) and
the link state (name, flags, oper state, carrier, MTU) from a cache (cache.py), kept
current by link notifications. The streaming `link_event` collector is in events.py.
"""

from __future__ import annotations

import fnmatch
import time
from typing import Any

from agent.collector import Built, CollectorContext, PolledCollector
from agent.config import CarrierConfig
from agent.points import FieldValue, Point
from collectors.links.cache import LinkCache
from collectors.links.events import LinkEventCollector, routing_event
from collectors.links.rates import rate_bps, utilization
from collectors.links.records import LinkState
from collectors.links.routing import RoutingMonitor, RoutingResult
from collectors.links.speed import SpeedReader


class LinksCollector(PolledCollector):
    """`link` for every selected interface: counters, rates, utilization, state, routing."""

    name = "links"

    def __init__(self, ctx: CollectorContext, netns: str | None = None,
                 routing: RoutingMonitor | None = None) -> None:
        super().__init__(ctx)
        cfg = ctx.config
        self.include = cfg.links.include
        self.exclude = cfg.links.exclude
        self.carriers: dict[str, CarrierConfig] = {c.interface: c for c in cfg.carriers}
        self.cache = LinkCache(netns)
        self.speed = SpeedReader(netns)
        self.routing = routing
        self._selected: dict[str, bool] = {}
        self._entries: dict[int, tuple[Any, ...]] = {}
        self._hostname = ctx.config.agent.hostname
        self._prev: dict[int, tuple[int, int, float]] = {}
        self._routing_events: list[Point] = []

    @property
    def interval_s(self) -> float:
        return self.ctx.config.links.interval_s or self.ctx.config.agent.interval_s

    def selected(self, name: str) -> bool:
        """Carrier uplinks always; others per the include/exclude globs (cached per name)."""
        hit = self._selected.get(name)
        if hit is None:
            hit = name in self.carriers or (
                any(fnmatch.fnmatchcase(name, g) for g in self.include)
                and not any(fnmatch.fnmatchcase(name, g) for g in self.exclude)
            )
            if len(self._selected) > 100_000:
                self._selected.clear()
            self._selected[name] = hit
        return hit

    def close(self) -> None:
        self.cache.close()
        self.speed.close()
        if self.routing is not None:
            self.routing.close()

    def status(self) -> dict[str, Any]:
        return {
            "interfaces": len(self.cache.links),
            "resyncs": self.cache.resyncs,
            "routing": {name: {**r.fields(), "detail": r.detail}
                        for name, r in (self.routing.results.items() if self.routing else ())},
        }

    def _entry(self, index: int, state: LinkState) -> tuple[Any, ...]:
        """What changes only with the link's state, computed once per state change:
        (selected, tags, oper_up, carrier_up, mtu, speed, committed Mbit/s, whether a
        capacity is known, wrap bound)."""
        name = state.name
        # The host tag is set here so the core never has to touch the (shared) tag dict.
        tags = {"host": self._hostname, "interface": name}
        carrier = self.carriers.get(name)
        if carrier is not None:
            tags["carrier"] = carrier.name
        selected = self.selected(name)
        speed = self.speed.speed_mbps(name) if selected else None
        committed_mbps = carrier.committed_mbps if carrier is not None else None
        return (selected, tags, state.oper_up, state.carrier, state.mtu, speed, committed_mbps,
                bool(committed_mbps or speed), speed * 1e6 if speed else None)

    def collect(self) -> list[Point]:
        stats = self.cache.nl.dump_stats64()
        now = time.monotonic()
        cache = self.cache
        cache.refresh(stats.keys())
        links = cache.links
        changed = cache.changed
        cache.changed = set()
        prev_all = self._prev
        entries = self._entries
        if self.ctx.config.agent.hostname != self._hostname:
            # a reload that kept this collector (its slice unchanged) but renamed the host
            self._hostname = self.ctx.config.agent.hostname
            entries.clear()
        for index in changed:
            entries.pop(index, None)
            if index not in links:
                prev_all.pop(index, None)
        routing = self._routing_fields()
        points: list[Point] = []
        append = points.append
        make_entry = self._entry
        get_entry = entries.get
        get_prev = prev_all.get
        for index, c in stats.items():
            entry = get_entry(index)
            if entry is None:
                state = links.get(index)
                if state is None:
                    continue
                entry = entries[index] = make_entry(index, state)
            (selected, tags, oper_up, carrier_up, mtu, speed, committed_mbps, has_capacity,
             max_bps) = entry
            if not selected:
                continue
            rx_packets, tx_packets, rx_bytes, tx_bytes, rx_err, tx_err, rx_drop, tx_drop = c
            fields: dict[str, FieldValue] = {
                "rx_bytes": rx_bytes, "tx_bytes": tx_bytes,
                "rx_packets": rx_packets, "tx_packets": tx_packets,
                "rx_errors": rx_err, "tx_errors": tx_err,
                "rx_dropped": rx_drop, "tx_dropped": tx_drop,
                "oper_up": oper_up, "carrier_up": carrier_up, "mtu": mtu,
            }
            if speed is not None:
                fields["speed_mbps"] = speed
            prev = get_prev(index)
            prev_all[index] = (rx_bytes, tx_bytes, now)
            if prev is not None:
                elapsed = now - prev[2]
                rx_bps = rate_bps(prev[0], rx_bytes, elapsed, max_bps)
                if rx_bps is not None:
                    fields["rx_bps"] = rx_bps
                    rx_util = utilization(rx_bps, committed_mbps, speed) if has_capacity else None
                    if rx_util is not None:
                        fields["rx_util"] = rx_util
                tx_bps = rate_bps(prev[1], tx_bytes, elapsed, max_bps)
                if tx_bps is not None:
                    fields["tx_bps"] = tx_bps
                    tx_util = utilization(tx_bps, committed_mbps, speed) if has_capacity else None
                    if tx_util is not None:
                        fields["tx_util"] = tx_util
            if routing:
                result = routing.get(tags["interface"])
                if result is not None:
                    fields.update(result[1].fields())
            append(Point("link", tags, fields))
        if routing:
            points.extend(self._routing_events)
            self._routing_events = []
        return points

    def _routing_fields(self) -> dict[str, tuple[CarrierConfig, RoutingResult]]:
        if self.routing is None or not self.routing.carriers:
            return {}
        indices: dict[str, int | None] = {}
        for carrier in self.routing.carriers:
            state = self.cache.by_name(carrier.interface)
            indices[carrier.interface] = state.index if state else None
        changed = self.routing.check(indices, only_if_changed=True)
        self._routing_events = [routing_event(c, r) for c, r in changed]
        return {c.interface: (c, self.routing.results[c.name]) for c in self.routing.carriers
                if c.name in self.routing.results}


def create_links(ctx: CollectorContext) -> Built:
    """The registry's factory: the polled `link` collector, plus the event collector when
    there are carrier uplinks to watch. Both share one routing monitor."""
    routing = RoutingMonitor(ctx.config.carriers) if ctx.config.carriers else None
    polled = LinksCollector(ctx, routing=routing)
    built = Built([polled], status={"links": polled.status})
    if ctx.config.carriers:
        events = LinkEventCollector(ctx, routing=routing)
        built.collectors.append(events)
        built.status["link_events"] = events.status
    return built
