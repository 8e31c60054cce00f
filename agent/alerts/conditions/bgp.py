"""Conditions on our BGP sessions and prefixes: sessions down or flapping, ExaBGP down,
prefix counts collapsed, own prefix missing, origin mismatch, RPKI invalid,
more-specific, unexpected path."""

from __future__ import annotations

import collections
from typing import Any

from agent.alerts.conditions.base import (
    Condition,
    _EventGuard,
    _t,
)
from agent.alerts.engine import AlertEngine, format_duration
from agent.points import Point


def _session_extra(point: Point) -> dict[str, str]:
    return {"carrier": point.tags.get("carrier", ""), "peer": point.tags.get("peer", "")}


class BgpSessionDown(Condition):
    name = "bgp_session_down"
    measurements = ("bgp_session",)

    def on_point(self, point: Point) -> None:
        state = point.fields.get("state")
        if not isinstance(state, str) or state == "exabgp_down":
            return  # ExaBGP itself: its own alert; a session alert keeps its state
        extra = _session_extra(point)
        carrier = extra["carrier"]
        self.set(extra, state != "up",
                 f"BGP session with {carrier} ({extra['peer']}, AS{point.tags.get('peer_as')})"
                 f" is {state}",
                 f"No routes are exchanged with {carrier}: our prefixes are not announced "
                 f"to it and its routes are not used.")


class ExabgpDown(Condition):
    name = "exabgp_down"
    measurements = ("bgp_session",)

    def on_point(self, point: Point) -> None:
        state = point.fields.get("state")
        if isinstance(state, str):
            self.set({}, state == "exabgp_down", "ExaBGP is not running (being restarted)",
                     "The agent's BGP speaker is down: every carrier session is down with it.")


class BgpFlapping(Condition):
    name = "bgp_flapping"
    measurements = ("bgp_session",)

    def __init__(self, engine: AlertEngine, config: Any) -> None:
        super().__init__(engine, config)
        self.history: dict[str, collections.deque[tuple[float, int]]] = {}

    def on_point(self, point: Point) -> None:
        flaps = point.fields.get("flaps")
        if not isinstance(flaps, int) or isinstance(flaps, bool):
            return
        extra = _session_extra(point)
        history = self.history.setdefault(extra["carrier"], collections.deque())
        now = _t(point)
        if history and flaps < history[-1][1]:
            history.clear()  # the agent restarted: the counter starts again
        history.append((now, flaps))
        window = self.p("window")
        # keep one sample at or before the window's start as the base
        while len(history) > 1 and history[1][0] <= now - window:
            history.popleft()
        base = history[0][1] if history[0][0] <= now - window else 0
        count = flaps - base
        self.set(extra, count >= self.p("flaps"),
                 f"BGP session with {extra['carrier']} flapped {count} times in the last "
                 f"{format_duration(window)}",
                 "An unstable session withdraws and re-announces every route each time: "
                 "traffic shifts between carriers.", value=float(count))


class PrefixesCollapsed(Condition):
    name = "bgp_prefixes_collapsed"
    measurements = ("bgp_session",)

    def __init__(self, engine: AlertEngine, config: Any) -> None:
        super().__init__(engine, config)
        self.history: dict[tuple[str, str], collections.deque[tuple[float, int]]] = {}
        self.reference: dict[tuple[str, str], int] = {}

    def on_point(self, point: Point) -> None:
        extra = _session_extra(point)
        carrier = extra["carrier"]
        up = point.fields.get("state") == "up"
        now = _t(point)
        keep = 1 - self.p("drop_pct") / 100
        for family in ("v4", "v6"):
            count = point.fields.get(f"prefixes_{family}")
            key = (carrier, family)
            labels = {**extra, "family": "ipv4" if family == "v4" else "ipv6"}
            if not up or not isinstance(count, int):
                self.history.pop(key, None)
                self.reference.pop(key, None)
                self.set(labels, False)  # a session down is its own alert
                continue
            history = self.history.setdefault(key, collections.deque())
            while history and history[0][0] < now - self.p("window"):
                history.popleft()
            reference = self.reference.get(key)
            if reference is None:
                highest = max((c for _, c in history), default=0)
                if highest >= self.p("min_prefixes") and count < highest * keep:
                    reference = self.reference[key] = highest
            elif count >= reference * keep:
                reference = None
                del self.reference[key]
            history.append((now, count))
            self.set(labels, reference is not None,
                     f"{carrier} {labels['family']} prefixes fell from {reference} to {count} "
                     f"within {format_duration(self.p('window'))}",
                     f"{carrier} stopped sending most of its table while the session stayed "
                     "up: destinations fall back to other carriers or the default route.",
                     value=float(count))


class OwnPrefixMissing(Condition):
    name = "own_prefix_missing"
    measurements = ("bgp_session", "bgp_prefix", "bgp_event")

    def __init__(self, engine: AlertEngine, config: Any) -> None:
        super().__init__(engine, config)
        self.session_up: dict[str, bool] = {}

    def _set(self, carrier: str, prefix: str, active: bool) -> None:
        self.set({"carrier": carrier, "prefix": prefix}, active,
                 f"our prefix {prefix} is not announced to {carrier}",
                 f"Users of {carrier} reach {prefix} only through other carriers.")

    def on_point(self, point: Point) -> None:
        carrier = point.tags.get("carrier", "")
        if point.measurement == "bgp_session":
            up = point.fields.get("state") == "up"
            self.session_up[carrier] = up
            return
        if point.measurement == "bgp_event":
            if point.tags.get("kind") == "own_prefix_missing":
                prefix = point.fields.get("prefix")
                if isinstance(prefix, str) and prefix:
                    self._set(carrier, prefix, True)
            return
        announced = point.fields.get("announced")
        prefix = point.tags.get("prefix", "")
        if isinstance(announced, bool):
            self._set(carrier, prefix, self.session_up.get(carrier, False) and not announced)


def _local_as(config: Any) -> int | None:
    return config.bgp.local_as if config.bgp is not None else None


class OriginMismatch(Condition):
    name = "origin_mismatch"
    measurements = ("bgp_event", "bgp_prefix")

    def __init__(self, engine: AlertEngine, config: Any) -> None:
        super().__init__(engine, config)
        self.guard = _EventGuard()
        self.local_as = _local_as(config)

    def _set(self, carrier: str, prefix: str, active: bool, origin: Any = 0,
             path: Any = "") -> None:
        self.set({"carrier": carrier, "prefix": prefix}, active,
                 f"our prefix {prefix} is seen from {carrier} originated by AS{origin} "
                 f"(path {path or '-'}; ours is AS{self.local_as})",
                 f"Another AS announces {prefix}: a hijack or a misconfiguration. Traffic of "
                 f"{carrier}'s users to it may go there.")

    def on_point(self, point: Point) -> None:
        carrier = point.tags.get("carrier", "")
        fields = point.fields
        if point.measurement == "bgp_event":
            if point.tags.get("kind") != "origin_mismatch":
                return
            prefix = fields.get("prefix")
            if isinstance(prefix, str) and prefix:
                self.guard.event((carrier, prefix), point.time_ns)
                self._set(carrier, prefix, True, fields.get("origin_as"),
                          fields.get("as_path"))
            return
        prefix = point.tags.get("prefix", "")
        if self.guard.stale((carrier, prefix), point.time_ns):
            return
        visible, origin = fields.get("visible"), fields.get("origin_as")
        if not isinstance(visible, bool):
            return
        mismatch = visible and isinstance(origin, int) and origin not in (0, self.local_as)
        self._set(carrier, prefix, mismatch, origin, fields.get("as_path"))


class RpkiOwnInvalid(Condition):
    """[bgp.rpki]: networks that validate would drop our announcement. One alert per
    prefix (the state is the same through every carrier: no carrier label)."""

    name = "rpki_own_invalid"
    measurements = ("bgp_event", "bgp_prefix")

    def __init__(self, engine: AlertEngine, config: Any) -> None:
        super().__init__(engine, config)
        self.guard = _EventGuard()

    def _set(self, prefix: str, active: bool, detail: Any = "") -> None:
        self.set({"prefix": prefix}, active,
                 f"our prefix {prefix} is RPKI-invalid"
                 + (f": {detail}" if detail else ""),
                 "Networks that validate routes (RFC 6811) drop our announcement: their "
                 "users cannot reach the prefix. Fix the ROA (AS, maxLength) or the origin.")

    def on_point(self, point: Point) -> None:
        fields = point.fields
        if point.measurement == "bgp_event":
            kind = point.tags.get("kind")
            prefix = fields.get("prefix")
            if kind in ("rpki_own_invalid", "rpki_own_valid", "rpki_own_not_found") and \
                    isinstance(prefix, str) and prefix:
                self.guard.event(prefix, point.time_ns)
                self._set(prefix, kind == "rpki_own_invalid", fields.get("detail"))
            return
        state, prefix = fields.get("rpki"), point.tags.get("prefix", "")
        if isinstance(state, str) and prefix and not self.guard.stale(prefix, point.time_ns):
            self._set(prefix, state == "invalid")


class MoreSpecific(Condition):
    name = "more_specific"
    measurements = ("bgp_event",)
    CHECK_EVERY_S = 10.0

    def __init__(self, engine: AlertEngine, config: Any) -> None:
        super().__init__(engine, config)
        self.seen: dict[tuple[str, str], float] = {}
        self._next_check = 0.0

    def on_point(self, point: Point) -> None:
        if point.tags.get("kind") != "more_specific":
            return
        carrier = point.tags.get("carrier", "")
        prefix = point.fields.get("prefix")
        if not isinstance(prefix, str) or not prefix:
            return
        self.seen[(carrier, prefix)] = self.engine.clock()
        self.set({"carrier": carrier, "prefix": prefix}, True,
                 f"more-specific {prefix} of our space seen from {carrier}: "
                 f"{point.fields.get('detail', '')} (path {point.fields.get('as_path') or '-'})",
                 "A more-specific route wins over ours everywhere it is seen: traffic to "
                 f"{prefix} goes to whoever announces it.")

    def on_tick(self, now: float, self_stats: dict[str, Any] | None) -> None:
        if now < self._next_check:
            return
        self._next_check = now + self.CHECK_EVERY_S
        for alert in list(self.engine.alerts.values()):
            if alert.condition != self.name:
                continue
            carrier, prefix = alert.labels.get("carrier", ""), alert.labels.get("prefix", "")
            gone = now - self.seen.get((carrier, prefix), alert.active_at) > self.p(
                "resolve_after")
            if self.engine.lookup is not None:
                try:
                    found = self.engine.lookup({"address": prefix.split("/")[0]})
                except Exception:
                    found = None
                if isinstance(found, dict) and carrier in found:
                    route = found.get(carrier)
                    gone = not (isinstance(route, dict) and route.get("prefix") == prefix)
            if gone:
                self.seen.pop((carrier, prefix), None)
                self.set({"carrier": carrier, "prefix": prefix}, False)


class UnexpectedPath(Condition):
    name = "unexpected_path"
    measurements = ("bgp_prefix", "bgp_event")

    def __init__(self, engine: AlertEngine, config: Any) -> None:
        super().__init__(engine, config)
        self.peer_as = {c.name: c.bgp.peer_as for c in config.carriers if c.bgp is not None}

    def on_point(self, point: Point) -> None:
        carrier = point.tags.get("carrier", "")
        peer_as = self.peer_as.get(carrier)
        if peer_as is None:
            return
        if point.measurement == "bgp_event":
            if point.tags.get("kind") != "path_change":
                return
            prefix = point.fields.get("prefix")
            path = point.fields.get("as_path")
            if not isinstance(prefix, str) or not prefix or not isinstance(path, str):
                return
        else:
            prefix = point.tags.get("prefix", "")
            path = point.fields.get("as_path")
            if not isinstance(path, str) or point.fields.get("visible") is False:
                path = ""
        first = path.split()[0] if path.split() else ""
        self.set({"carrier": carrier, "prefix": prefix}, bool(first) and first != str(peer_as),
                 f"{prefix} through {carrier} has AS path {path}, which does not start with "
                 f"{carrier}'s AS{peer_as}",
                 "The route arrives through an unexpected upstream: a route leak or a "
                 "misconfigured peer.")
