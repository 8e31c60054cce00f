"""Conditions on our prefixes as RIS Live's vantage points see them: hijack, visibility
lost, unexpected upstream, feed silent."""

from __future__ import annotations

from typing import Any

from agent.alerts.conditions.base import (
    Condition,
)
from agent.alerts.engine import AlertEngine
from agent.points import Point


def _inside(seen: str, own: str) -> bool:
    """A prefix text equal to or inside another (False for anything unparsable)."""
    import ipaddress

    try:
        a, b = ipaddress.ip_network(seen, strict=False), ipaddress.ip_network(own)
    except ValueError:
        return False
    return a.version == b.version and a.subnet_of(b)  # type: ignore[arg-type]


class RisHijack(Condition):
    name = "ris_hijack"
    measurements = ("bgp_event", "bgp_visibility")

    def __init__(self, engine: AlertEngine, config: Any) -> None:
        super().__init__(engine, config)
        self.origins: dict[str, dict[int, tuple[int, str]]] = {}  # seen → origin → (n, path)

    def _set(self, seen: str) -> None:
        origins = self.origins.get(seen, {})
        described = ", ".join(f"AS{o} by {n} vantage points (path {path or '-'})"
                              for o, (n, path) in sorted(origins.items()))
        self.set({"prefix": seen}, bool(origins),
                 f"{seen} seen from outside (RIS Live) originated by {described}",
                 f"Networks around the world route {seen}, our address space, to another "
                 "AS: a hijack or a misconfiguration. Their users' traffic to it goes there.",
                 value=float(max((n for n, _ in origins.values()), default=0)))
        if not origins:
            self.origins.pop(seen, None)

    def on_point(self, point: Point) -> None:
        fields = point.fields
        if point.measurement == "bgp_visibility":
            own = point.tags.get("prefix", "")
            if (point.tags.get("via") == "any" and fields.get("peers_foreign_origin") == 0
                    and fields.get("peers_more_specific") == 0):
                for seen in [s for s in self.origins if _inside(s, own)]:
                    self.origins[seen] = {}
                    self._set(seen)
            return
        kind = point.tags.get("kind")
        seen_value, origin = fields.get("prefix"), fields.get("origin_as")
        if kind not in ("ris_hijack", "ris_hijack_end") or not isinstance(seen_value, str) or \
                not seen_value or not isinstance(origin, int):
            return
        seen = seen_value
        origins = self.origins.setdefault(seen, {})
        if kind == "ris_hijack":
            peers = fields.get("peers")
            origins[origin] = (peers if isinstance(peers, int) else 0,
                               str(fields.get("as_path", "")))
        else:
            origins.pop(origin, None)
        self._set(seen)


class RisVisibilityLost(Condition):
    name = "ris_visibility_lost"
    measurements = ("bgp_event", "bgp_visibility")

    def _set(self, prefix: str, via: str, active: bool, peers: Any = 0, detail: str = "") -> None:
        extra = {"prefix": prefix} if via == "any" else {"carrier": via, "prefix": prefix}
        where = "from anywhere" if via == "any" else f"through {via}"
        self.set(extra, active,
                 f"{prefix} seen {where} by {peers} RIS Live vantage points: {detail}",
                 f"{via} stopped propagating our prefix: its users and its customers reach "
                 f"{prefix} through other carriers, if at all." if via != "any" else
                 f"{prefix} is gone from most of the Internet's routing tables.",
                 value=float(peers) if isinstance(peers, int) else None)

    def on_point(self, point: Point) -> None:
        fields = point.fields
        if point.measurement == "bgp_visibility":
            via, lost = point.tags.get("via", ""), fields.get("lost")
            prefix = point.tags.get("prefix", "")
            extra = {"prefix": prefix} if via == "any" else {"carrier": via, "prefix": prefix}
            if isinstance(lost, bool) and not lost and self.active(extra):
                self._set(prefix, via, False)
            return
        kind = point.tags.get("kind")
        prefix_value, via_value = fields.get("prefix"), fields.get("via")
        if kind not in ("ris_visibility_lost", "ris_visibility_restored") or not isinstance(
                prefix_value, str) or not isinstance(via_value, str) or not prefix_value or \
                not via_value:
            return
        self._set(prefix_value, via_value, kind == "ris_visibility_lost", fields.get("peers"),
                  str(fields.get("detail", "")))


class RisUnexpectedUpstream(Condition):
    name = "ris_unexpected_upstream"
    measurements = ("bgp_event",)

    def __init__(self, engine: AlertEngine, config: Any) -> None:
        super().__init__(engine, config)
        self.details: dict[str, dict[str, str]] = {}  # prefix → upstream text → detail

    def on_point(self, point: Point) -> None:
        kind = point.tags.get("kind")
        prefix, detail = point.fields.get("prefix"), str(point.fields.get("detail", ""))
        if kind not in ("ris_unexpected_upstream", "ris_unexpected_upstream_end") or \
                not isinstance(prefix, str) or not prefix:
            return
        upstream = next((w.strip(",.;") for w in detail.split() if w.startswith("AS")), detail)
        details = self.details.setdefault(prefix, {})
        if kind == "ris_unexpected_upstream":
            details[upstream] = detail
        else:
            details.pop(upstream, None)
        self.set({"prefix": prefix}, bool(details),
                 "; ".join(details.values()),
                 "Part of the Internet reaches our prefix through a network that is not one "
                 "of our carriers: a route leak or an unexpected upstream.")


class RisFeedSilent(Condition):
    name = "ris_feed_silent"
    measurements = ("bgp_event", "bgp_feed")

    def on_point(self, point: Point) -> None:
        if point.measurement == "bgp_feed":
            silent = point.fields.get("silent")
            if isinstance(silent, bool) and not silent and self.active({}):
                self.set({}, False)
            return
        kind = point.tags.get("kind")
        if kind in ("ris_feed_silent", "ris_feed_restored"):
            self.set({}, kind == "ris_feed_silent",
                     f"RIS Live feed silent: {point.fields.get('detail', '')}",
                     "Visibility of our prefixes from outside is not being watched: hijacks "
                     "and carriers that stop propagating us go unseen until it is back.")
