"""`link_event` (streaming) from rtnetlink: written the moment an uplink changes (down,
up, deleted, created), from link notifications and a 100 ms carrier poll; it also re-runs
the routing checks when a route or neighbour of a carrier changes (`routing_ok` /
`routing_failed`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from agent.collector import CollectorContext, StreamingCollector
from agent.config import CarrierConfig
from agent.points import Point
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
    RtNetlink,
)
from collectors.links.records import LinkState, link_state
from collectors.links.routing import RoutingMonitor, RoutingResult

log = logging.getLogger(__name__)

# Bounds a carrier loss's delay (linkwatch may hold it up to 1 s) well inside the 200 ms the
# link events promise; 50 ms cost twice the wake-ups (0.13 % of a core on this VM, the
# agent's largest idle cost) for a bound no operator acts on faster.
CARRIER_POLL_S = 0.1


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
                  and msg["ifindex"] in self.index_of.values()
                  and (self.routing is None
                       or self.routing.neighbour_matters(mtype == RTM_DELNEIGH, msg["state"]))):
                self._routing_due = True
        if notices.lost:
            self._routing_due = True
            points.extend(self._resync_points())
        if points:
            self.events_emitted += len(points)
            self.ctx.emit_event(points)
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
                self.ctx.emit_event([routing_event(c, r) for c, r in changed])

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
            self.ctx.emit_event(points)

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

