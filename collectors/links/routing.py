"""Routing checks per carrier: can traffic from the carrier's source actually leave through it?

Three checks, each a field on `link` (absent when it cannot be evaluated for lack of config):
- `route_ok`: the carrier's policy-routing table (`table`) holds a default route (0/0,
  unicast). A filtered dump of that table only (strict checking; the kernel walks that table).
- `gateway_ok`: the gateway of that default route (or of the lookup below) has a usable
  neighbour entry on the uplink (REACHABLE, STALE, DELAY, PROBE, PERMANENT, NOARP). When the
  entry is missing or INCOMPLETE the kernel is asked to resolve it (one ARP request, what
  `ip neigh ... use` does) and it is read again within a second; FAILED/INCOMPLETE/none is
  not ok. A default route without gateway (point-to-point) counts as ok.
- `egress_ok`: RTM_GETROUTE for CHECK_DESTINATION from the carrier's `source` (through the
  policy rules, as a probe or reply would go) leaves through the uplink.

With an IPv6 `source6` (and an IPv4 `source`), the same three run for IPv6 as `route6_ok`,
`gateway6_ok` (neighbour discovery), `egress6_ok` (lookup of 100::1, RFC 6666 discard-only).

A change of the combined result is a `link_event` with state `routing_ok`/`routing_failed`.

The polled collector asks `check(..., only_if_changed=True)`: the checks run again only
when the kernel announced something they depend on (a link, address, rule, route or
neighbour notification, or lost notifications), the uplinks' indices changed, the last
check failed, or RECHECK_S passed. Every input of the verdicts is announced that way
(neighbour entries too, on each change between usable and not; while every verdict is
ok, an entry that stays usable is not news: `neighbour_matters`), and reading the
kernel's answers through pyroute2's message classes costs about 0.1 ms each, 18 per poll
at three dual-stack carriers: so a quiet poll costs one non-blocking read instead.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from dataclasses import dataclass

from agent.config import CarrierConfig
from collectors.links import netlink
from collectors.links.netlink import NUD_INCOMPLETE, NUD_NAMES, NUD_USABLE, RtNetlink

# TEST-NET-1: never in a real routing table (bogon-filtered), so the lookup falls through
# to the carrier's default route. IPv6: 100::/64 is discard-only (RFC 6666), same reason.
CHECK_DESTINATION = "192.0.2.1"
CHECK_DESTINATION_V6 = "100::1"
NEIGHBOUR_WAIT_S = 1.0
RECHECK_S = 60.0  # the checks run at least this often, announced changes or not
# What the verdicts depend on: any notification of these groups makes the next poll check.
WATCH_GROUPS = (netlink.RTMGRP_LINK | netlink.RTMGRP_NEIGH | netlink.RTMGRP_IPV4_IFADDR
                | netlink.RTMGRP_IPV6_IFADDR | netlink.RTMGRP_IPV4_ROUTE | netlink.RTMGRP_IPV6_ROUTE
                | netlink.RTMGRP_IPV4_RULE | netlink.RTMGRP_IPV6_RULE)

log = logging.getLogger(__name__)
_CHECKS = ("route_ok", "gateway_ok", "egress_ok", "route6_ok", "gateway6_ok", "egress6_ok")


@dataclass(frozen=True)
class RoutingResult:
    route_ok: bool | None
    gateway_ok: bool | None
    egress_ok: bool | None
    detail: str
    route6_ok: bool | None = None
    gateway6_ok: bool | None = None
    egress6_ok: bool | None = None

    @property
    def ok(self) -> bool:
        return all(getattr(self, key) is not False for key in _CHECKS)

    def fields(self) -> dict[str, bool]:
        out = {}
        for key in _CHECKS:
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


def _check_family(nl: RtNetlink, carrier: CarrierConfig, uplink_index: int,
                  source: str | None, v6: bool, neighbour_wait_s: float,
                  problems: list[str]) -> tuple[bool | None, bool | None, bool | None]:
    """(route_ok, gateway_ok, egress_ok) of one address family."""
    family = socket.AF_INET6 if v6 else socket.AF_INET
    label = "IPv6 " if v6 else ""
    route_ok: bool | None = None
    gateway: str | None = None
    gateway_known = False
    if carrier.table is not None:
        defaults = [r for r in nl.dump_routes(carrier.table, family)
                    if r.dst_len == 0 and r.type == 1]
        route_ok = bool(defaults)
        if not defaults:
            problems.append(f"no {label}default route in table {carrier.table}")
        else:
            hops = [h for r in defaults for h in r.gateways]
            via_uplink = [g for g, oif in hops if oif == uplink_index]
            if via_uplink:
                gateway_known, gateway = True, via_uplink[0]
            elif not hops and any(r.oif == uplink_index for r in defaults):
                gateway_known = True  # on-link default route: no gateway
            # a default route through another interface: egress_ok tells
    egress_ok: bool | None = None
    if source is not None:
        dst = CHECK_DESTINATION_V6 if v6 else CHECK_DESTINATION
        route = nl.route_get(dst, src=source)
        if route is None:
            egress_ok = False
            problems.append(f"no route from {source}")
        else:
            egress_ok = route.oif == uplink_index
            if not egress_ok:
                other = nl.get_link(route.oif) if route.oif else None
                where = other.name if other is not None else f"ifindex {route.oif}"
                problems.append(f"traffic from {source} leaves via {where}")
            elif not gateway_known:
                # the gateway of another uplink says nothing about this one: only when
                # the lookup leaves through this uplink
                gateway_known = True
                gateway = route.gateways[0][0] if route.gateways else None
    gateway_ok: bool | None = None
    if gateway_known and gateway is not None:
        state = nl.get_neighbour(uplink_index, gateway)
        if state is None or state & NUD_INCOMPLETE:
            with contextlib.suppress(OSError):
                nl.resolve_neighbour(uplink_index, gateway)
            deadline = time.monotonic() + neighbour_wait_s
            while time.monotonic() < deadline:
                time.sleep(0.02)
                state = nl.get_neighbour(uplink_index, gateway)
                if state is not None and state & (NUD_USABLE | 0x20):
                    break
        gateway_ok = state is not None and bool(state & NUD_USABLE)
        if not gateway_ok:
            problems.append(f"gateway {gateway} neighbour {NUD_NAMES.get(state or 0, state)}")
    elif gateway_known:
        gateway_ok = True  # on-link default route: no gateway to resolve
    return route_ok, gateway_ok, egress_ok


def check_carrier(nl: RtNetlink, carrier: CarrierConfig, uplink_index: int | None,
                  neighbour_wait_s: float = NEIGHBOUR_WAIT_S) -> RoutingResult:
    """Run the checks for one carrier (blocking: up to neighbour_wait_s per family).

    `source` decides the family of route_ok/gateway_ok/egress_ok (IPv4 unless it is an
    IPv6 address); with an IPv4 `source` and a `source6`, the same checks run for IPv6 as
    route6_ok/gateway6_ok/egress6_ok.
    """
    main_v6 = carrier.source is not None and carrier.source.version == 6
    extra_v6 = not main_v6 and carrier.source6 is not None
    if uplink_index is None:
        missing = {
            "route_ok": False if carrier.table is not None else None,
            "egress_ok": False if carrier.source is not None else None,
        }
        if extra_v6:
            missing["route6_ok"] = False if carrier.table is not None else None
            missing["egress6_ok"] = False
        return RoutingResult(missing["route_ok"], None, missing["egress_ok"],
                             f"uplink {carrier.interface} does not exist",
                             missing.get("route6_ok"), None, missing.get("egress6_ok"))
    problems: list[str] = []
    source = str(carrier.source) if carrier.source is not None else None
    route_ok, gateway_ok, egress_ok = _check_family(
        nl, carrier, uplink_index, source, main_v6, neighbour_wait_s, problems)
    route6_ok = gateway6_ok = egress6_ok = None
    if extra_v6:
        route6_ok, gateway6_ok, egress6_ok = _check_family(
            nl, carrier, uplink_index, str(carrier.source6), True, neighbour_wait_s, problems)
    return RoutingResult(route_ok, gateway_ok, egress_ok, "; ".join(problems) or "ok",
                         route6_ok, gateway6_ok, egress6_ok)


class RoutingMonitor:
    """Latest result per carrier, shared by the polled and the event collector."""

    def __init__(self, carriers: tuple[CarrierConfig, ...], netns: str | None = None) -> None:
        self.nl = RtNetlink(netns)  # its own socket: used from the poll and the event thread
        # Subscribed before any check: nothing that changes after the first one is missed.
        self.watch = RtNetlink(netns, groups=WATCH_GROUPS, rcvbuf_bytes=1 << 20)
        self.watch.sock.setblocking(False)
        self._checked_index: dict[str, int | None] | None = None
        self._recheck_at = 0.0
        self.carriers = tuple(c for c in carriers if c.table is not None or c.source is not None
                              or c.source6 is not None)
        self.results: dict[str, RoutingResult] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._logged: dict[str, str] = {}

    def check(self, uplink_index: dict[str, int | None], only_if_changed: bool = False,
              ) -> list[tuple[CarrierConfig, RoutingResult]]:
        """Check every carrier; return those whose overall verdict changed (not at start).

        only_if_changed: keep the last results when nothing they depend on was announced
        since the last check (module docstring).
        """
        changed = []
        with self._lock:
            if self._closed:
                return []
            # read before checking: later ones count next
            announced = self.watch.pending(count_usable_neighbours=not self._all_ok())
            now = time.monotonic()
            if (only_if_changed and not announced and now < self._recheck_at
                    and uplink_index == self._checked_index):
                return []
            self._checked_index = dict(uplink_index)
            self._recheck_at = now + RECHECK_S
            for carrier in self.carriers:
                try:
                    result = check_carrier(self.nl, carrier,
                                           uplink_index.get(carrier.interface))
                except OSError as exc:
                    # The kernel refused a request (e.g. no RTM_GETNEIGH get before 5.0):
                    # unknown is not a failure; say so once per carrier and reason.
                    result = RoutingResult(None, None, None, f"check failed: {exc}")
                    if self._logged.get(carrier.name) != result.detail:
                        log.warning("routing check of %s: %s", carrier.name, result.detail)
                        self._logged[carrier.name] = result.detail
                    self._recheck_at = 0.0  # a failed check is tried again at the next poll
                old = self.results.get(carrier.name)
                self.results[carrier.name] = result
                if old is not None and old.ok != result.ok:
                    changed.append((carrier, result))
        return changed

    def _all_ok(self) -> bool:
        # Without the lock (a check holds it up to a second): the event loop asks too. The
        # copy is taken in one step, so a first check adding carriers cannot break it.
        return all(result.ok for result in tuple(self.results.values()))

    def neighbour_matters(self, deleted: bool, state: int) -> bool:
        """Whether a neighbour notification on an uplink can change a verdict: an entry
        deleted or not usable, or any entry while a verdict is failed (it may recover).
        A move between usable states (REACHABLE -> STALE -> DELAY -> REACHABLE, every few
        tens of seconds for a gateway in use) cannot, and re-checking every carrier on
        each took 18 requests."""
        return deleted or not state & NUD_USABLE or not self._all_ok()

    def close(self) -> None:
        """Idempotent; the polled and the event collector share the monitor."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self.nl.close()
                self.watch.close()
