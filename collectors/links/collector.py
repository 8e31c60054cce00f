"""`link` (polled) and `link_event` (streaming) from rtnetlink.

Per poll: one RTM_GETSTATS dump (64-bit counters of every interface, ~6 ms for 5,000) and
the link state (name, flags, oper state, carrier, MTU) from a cache. The cache is filled by
one RTM_GETLINK dump at start and kept current by the link notifications (RTNLGRP_LINK)
queued on a subscribed socket and drained at each poll; a full RTM_GETLINK dump (~40 ms
for 5,000, the kernel's cost of 1 KB per link) happens again only when the notifications
overflowed (ENOBUFS) or the counters show interfaces the cache does not know.

The event collector has its own subscription and writes `link_event` the moment an uplink
changes; it also re-runs the routing checks when a route or neighbour of a carrier changes.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import threading
import time
from collections.abc import KeysView
from typing import Any

from agent.collector import Built, CollectorContext, PolledCollector, StreamingCollector
from agent.config import CarrierConfig
from agent.points import FieldValue, Point
from collectors.links.carrier import CarrierFiles, StopSignal
from collectors.links.netlink import (
    RT_TABLE_COMPAT,
    RTM_DELLINK,
    RTM_DELNEIGH,
    RTM_DELROUTE,
    RTM_NEWLINK,
    RTM_NEWNEIGH,
    RTM_NEWROUTE,
    RTMGRP_IPV4_ROUTE,
    RTMGRP_IPV6_ROUTE,
    RTMGRP_LINK,
    RTMGRP_NEIGH,
    LinkState,
    RtNetlink,
    SpeedReader,
    link_state,
)
from collectors.links.rates import counter_delta
from collectors.links.routing import RoutingMonitor, RoutingResult

log = logging.getLogger(__name__)

CARRIER_POLL_S = 0.05


def link_verdict(state: LinkState | None) -> tuple[bool, str, str]:
    """(up, state tag, detail) of an uplink: up means admin up, carrier on, oper up."""
    if state is None:
        return False, "deleted", "interface deleted"
    if not state.admin_up:
        return False, "down", "admin down"
    if not state.carrier:
        return False, "down", "carrier lost"
    if not state.oper_up:
        return False, "down", f"oper {state.oper_name}"  # dormant, testing, notpresent
    return True, "up", "up"


class LinkCache:
    """ifindex → LinkState, current through link notifications drained on demand."""

    def __init__(self, netns: str | None = None) -> None:
        self.nl = RtNetlink(netns)
        self.events = RtNetlink(netns, groups=RTMGRP_LINK)
        self.events.sock.setblocking(False)
        self.links: dict[int, LinkState] = {}
        self.changed: set[int] = set()  # indices whose state changed since the last take
        self.resyncs = -1  # full dumps after the first one
        self.resync()

    def resync(self) -> None:
        self.resyncs += 1
        self._drain()  # what is queued predates the dump
        before = set(self.links)
        self.links = self.nl.dump_links()
        self.changed |= before | set(self.links)  # gone ones too: their rates are dropped

    def _drain(self) -> bool:
        """Apply queued notifications; False if some were lost (ENOBUFS)."""
        notices = self.events.drain()
        for msg in notices.messages:
            mtype = msg["header"]["type"]
            if mtype == RTM_NEWLINK:
                state = link_state(msg)
                self.links[state.index] = state
                self.changed.add(state.index)
            elif mtype == RTM_DELLINK:
                index = int(msg["index"])
                self.links.pop(index, None)
                self.changed.add(index)
        return not notices.lost

    def refresh(self, present: KeysView[int]) -> None:
        """Bring the cache up to date with notifications and the interfaces `present`
        (the keys of a counter dump: set operations on dict views run in C, ~1 ms less
        per poll at 5,000 interfaces than a Python loop)."""
        if not self._drain():
            self.resync()
            return
        links = self.links
        missing = present - links.keys()
        if len(missing) > 64:
            self.resync()
            return
        for index in missing:
            state = self.nl.get_link(index)
            if state is not None:
                links[index] = state
                self.changed.add(index)
        if len(links) != len(present):
            for index in links.keys() - present:
                del links[index]
                self.changed.add(index)

    def by_name(self, name: str) -> LinkState | None:
        for state in self.links.values():
            if state.name == name:
                return state
        return None

    def close(self) -> None:
        self.nl.close()
        self.events.close()


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
        (selected, tags, oper_up, carrier_up, mtu, speed, capacity bps, wrap bound)."""
        name = state.name
        # The host tag is set here so the core never has to touch the (shared) tag dict.
        tags = {"host": self._hostname, "interface": name}
        carrier = self.carriers.get(name)
        if carrier is not None:
            tags["carrier"] = carrier.name
        selected = self.selected(name)
        speed = self.speed.speed_mbps(name) if selected else None
        capacity_mbps = (carrier.committed_mbps if carrier is not None else None) or speed
        capacity_bps = capacity_mbps * 1e6 if capacity_mbps else 0.0
        return (selected, tags, state.oper_up, state.carrier, state.mtu, speed, capacity_bps,
                speed * 1e6 if speed else None)

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
            selected, tags, oper_up, carrier_up, mtu, speed, capacity_bps, max_bps = entry
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
                if elapsed > 0:
                    # Inlined fast path of rates.rate_bps; decreases go through it.
                    rx_delta: int | None = rx_bytes - prev[0]
                    if rx_delta < 0:  # type: ignore[operator]
                        rx_delta = counter_delta(prev[0], rx_bytes, elapsed, max_bps)
                    tx_delta: int | None = tx_bytes - prev[1]
                    if tx_delta < 0:  # type: ignore[operator]
                        tx_delta = counter_delta(prev[1], tx_bytes, elapsed, max_bps)
                    if rx_delta is not None:
                        rx_bps = rx_delta * 8.0 / elapsed
                        fields["rx_bps"] = rx_bps
                        if capacity_bps:
                            fields["rx_util"] = rx_bps / capacity_bps
                    if tx_delta is not None:
                        tx_bps = tx_delta * 8.0 / elapsed
                        fields["tx_bps"] = tx_bps
                        if capacity_bps:
                            fields["tx_util"] = tx_bps / capacity_bps
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


def routing_event(carrier: CarrierConfig, result: RoutingResult) -> Point:
    return Point(
        "link_event",
        {"interface": carrier.interface, "carrier": carrier.name,
         "state": "routing_ok" if result.ok else "routing_failed"},
        {"up": result.ok, "detail": result.detail},
        time.time_ns(),
    )


class LinkEventCollector(StreamingCollector):
    """`link_event` at once when an uplink goes down/up or is deleted/created, and when a
    carrier's routing verdict changes (route or neighbour notifications trigger a check)."""

    name = "link_events"

    def __init__(self, ctx: CollectorContext, netns: str | None = None,
                 routing: RoutingMonitor | None = None) -> None:
        super().__init__(ctx)
        self.netns = netns
        self.uplinks: dict[str, CarrierConfig] = {c.interface: c for c in ctx.config.carriers}
        self.routing = routing
        self.verdicts: dict[str, tuple[bool, str]] = {}
        self.index_of: dict[str, int] = {}
        self.events_emitted = 0
        self._nl: RtNetlink | None = None
        self._routing_due = False
        self._poll_nl: RtNetlink | None = None
        self._routing_wakeup: asyncio.Event | None = None
        self._tables = {c.table if c.table < 256 else RT_TABLE_COMPAT
                        for c in ctx.config.carriers if c.table is not None}

    def _sync(self) -> None:
        nl = RtNetlink(self.netns, rcvbuf_bytes=1 << 16)  # not the subscribed socket
        try:
            self._sync_with(nl)
        finally:
            nl.close()

    def _sync_with(self, nl: RtNetlink) -> None:
        for carrier in self.uplinks.values():
            state = nl.get_link_by_name(carrier.interface)
            up, tag, _detail = link_verdict(state)
            self.verdicts[carrier.interface] = (up, tag)
            if state is not None:
                self.index_of[carrier.interface] = state.index

    def _handle(self, state: LinkState | None, name: str, index: int) -> Point | None:
        carrier = self.uplinks.get(name)
        if carrier is None:
            return None
        up, tag, detail = link_verdict(state)
        if state is not None:
            self.index_of[name] = index
        old = self.verdicts.get(name)
        self.verdicts[name] = (up, tag)
        if old == (up, tag):
            return None
        return Point("link_event", {"interface": name, "carrier": carrier.name, "state": tag},
                     {"up": up, "detail": detail}, time.time_ns())

    def _on_readable(self) -> None:
        nl = self._nl
        assert nl is not None
        points: list[Point] = []
        notices = nl.drain()
        for msg in notices.messages:
            mtype = msg["header"]["type"]
            if mtype in (RTM_NEWLINK, RTM_DELLINK):
                state = link_state(msg)
                if mtype == RTM_DELLINK:
                    # The last message of a link: deleted, unless it only left a bridge.
                    if self.index_of.get(state.name) == state.index:
                        point = self._handle(None, state.name, state.index)
                        if point is not None:
                            # The kernel sends "down" just before deleting a link:
                            # both in one read are one event, "deleted".
                            if (points and points[-1].tags["interface"] == state.name
                                    and points[-1].tags["state"] == "down"):
                                points.pop()
                            points.append(point)
                else:
                    point = self._handle(state, state.name, state.index)
                    if point is not None:
                        points.append(point)
            elif mtype in (RTM_NEWROUTE, RTM_DELROUTE):
                # rtm_table (RT_TABLE_COMPAT: "see RTA_TABLE"): only carrier tables count
                if msg["table"] in self._tables or msg["table"] == RT_TABLE_COMPAT:
                    self._routing_due = True
            elif (mtype in (RTM_NEWNEIGH, RTM_DELNEIGH)
                  and msg["ifindex"] in self.index_of.values()):
                self._routing_due = True
        if notices.lost:
            self._routing_due = True
            points.extend(self._resync_points())
        if points:
            self.events_emitted += len(points)
            self.ctx.emit(points)
        if self._routing_due and self._routing_wakeup is not None:
            self._routing_wakeup.set()

    def _resync_points(self) -> list[Point]:
        """After lost notifications: compare every uplink with a fresh read (a socket of
        its own: the subscribed one is for notifications, the poll thread's is busy)."""
        nl = RtNetlink(self.netns, rcvbuf_bytes=1 << 16)
        points = []
        try:
            for name in self.uplinks:
                state = nl.get_link_by_name(name)
                point = self._handle(state, name, state.index if state else -1)
                if point is not None:
                    points.append(point)
        finally:
            nl.close()
        return points

    async def _routing_loop(self) -> None:
        assert self._routing_wakeup is not None and self.routing is not None
        while True:
            await self._routing_wakeup.wait()
            await asyncio.sleep(0.05)  # let a burst of route changes settle
            self._routing_wakeup.clear()
            self._routing_due = False
            indices: dict[str, int | None] = {
                c.interface: (self.index_of.get(c.interface)
                              if self.verdicts.get(c.interface, (False, "deleted"))[1]
                              != "deleted" else None)
                for c in self.routing.carriers
            }
            changed = await asyncio.to_thread(self.routing.check, indices)
            if changed:
                self.events_emitted += len(changed)
                self.ctx.emit([routing_event(c, r) for c, r in changed])

    def _carrier_thread(self, loop: asyncio.AbstractEventLoop, stop: StopSignal) -> None:
        """Check the uplinks' carrier every CARRIER_POLL_S; hand changes to the loop.

        Carrier changes reach netlink listeners through the kernel's linkwatch, which runs
        at most once a second for the whole host: on a busy host (or a flapping link) a
        carrier loss is announced up to a second late. IFF_LOWER_UP/IFLA_CARRIER in a
        direct RTM_GETLINK are current at once, so one tiny request per uplink every
        CARRIER_POLL_S bounds that delay. A thread of its own (not to_thread per poll):
        the loop only hears of it when something changed; while the sysfs files serve, it
        waits in C (`CarrierFiles.wait_change`) and runs Python only on a change.
        """
        assert self._poll_nl is not None
        nl = self._poll_nl
        last: tuple[Any, ...] | None = None
        # The sysfs carrier files when they show the watched namespace (carrier.py): netlink
        # is then asked only when one changed.
        files: CarrierFiles | None = None
        seen: tuple[bytes, ...] | None = None
        try:
            while not stop.is_set():
                if files is not None:
                    now = files.wait_change(seen, stop.fileno(), CARRIER_POLL_S)
                    if now is None:
                        break  # stopped
                    seen = now
                elif stop.wait(CARRIER_POLL_S):
                    break
                try:
                    results = [(name, nl.get_link_by_name(name)) for name in self.uplinks]
                except OSError:
                    log.exception("carrier poll failed")
                    continue
                key = tuple((s.index, s.flags, s.carrier, s.operstate) if s else None
                            for _, s in results)
                if key != last:
                    last = key
                    loop.call_soon_threadsafe(self._apply_poll, results)
                    if files is not None:
                        files.close()  # an index may have changed: open them anew
                    files = CarrierFiles.open(
                        {name: state.index if state else None for name, state in results})
                    seen = files.read() if files is not None else None
        finally:
            if files is not None:
                files.close()

    def _apply_poll(self, results: list[tuple[str, LinkState | None]]) -> None:
        points = []
        for name, state in results:
            point = self._handle(state, name, state.index if state else -1)
            if point is not None:
                points.append(point)
        if points:
            self.events_emitted += len(points)
            self.ctx.emit(points)

    async def run(self) -> None:
        groups = RTMGRP_LINK
        if self.routing is not None and self.routing.carriers:
            groups |= RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE | RTMGRP_NEIGH
        nl = RtNetlink(self.netns, groups=groups)
        nl.only_routes_of(c.table for c in self.ctx.config.carriers if c.table is not None)
        nl.sock.setblocking(False)
        self._nl = nl
        loop = asyncio.get_running_loop()
        routing_task: asyncio.Task[None] | None = None
        self._poll_nl = RtNetlink(self.netns, rcvbuf_bytes=1 << 16)
        stop_polling = StopSignal()
        poller = threading.Thread(target=self._carrier_thread, args=(loop, stop_polling),
                                  name="link-carrier-poll", daemon=True)
        try:
            await asyncio.to_thread(self._sync)
            poller.start()
            # Notifications that arrived during the sync are re-read: harmless (deduped).
            loop.add_reader(nl.fileno(), self._on_readable)
            if self.routing is not None and self.routing.carriers:
                self._routing_wakeup = asyncio.Event()
                routing_task = asyncio.create_task(self._routing_loop())
            await asyncio.Event().wait()  # forever; cancelled on stop
        finally:
            loop.remove_reader(nl.fileno())
            if routing_task is not None:
                routing_task.cancel()
            stop_polling.set()
            if poller.is_alive():
                poller.join(1.0)
            if not poller.is_alive():
                stop_polling.close()
            nl.close()
            self._poll_nl.close()
            self._nl = None

    def status(self) -> dict[str, Any]:
        return {"events": self.events_emitted,
                "uplinks": {n: v[1] for n, v in self.verdicts.items()}}


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
