"""The built-in conditions (agent/alerts/schema.py lists them with their keys).

Each condition names the measurements it reads, judges each point of them, and tells the
engine whether its alert (one per label set) is active. Windows are judged on the points'
own timestamps; the life cycle (`for`, firing, resolved) on the engine's clock.
Levels that can hover use a lower level to resolve than to fire (hysteresis).
"""

from __future__ import annotations

import collections
import statistics
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from agent.alerts.engine import AlertEngine, format_duration
from agent.alerts.schema import CONDITIONS
from agent.points import Point

_ROUTING_FIELDS = ("route_ok", "gateway_ok", "egress_ok", "route6_ok", "gateway6_ok",
                   "egress6_ok")


def _t(point: Point) -> float:
    return point.time_ns / 1e9


def _pct(fraction: float) -> str:
    return f"{fraction * 100:.1f} %"


def _mbps(bps: float) -> str:
    return f"{bps / 1e6:,.0f} Mbit/s"


class Condition:
    name = ""
    measurements: tuple[str, ...] = ()

    def __init__(self, engine: AlertEngine, config: Any) -> None:
        self.engine = engine
        self.config = config
        self.rule = config.alerts.rule(self.name)
        self.spec = CONDITIONS[self.name]
        self.alertname = self.spec.alertnames[0]
        self.for_s = self.rule.for_s

    def p(self, key: str) -> Any:
        return self.rule.get(key)

    def labels(self, extra: dict[str, str], severity: str | None = None) -> dict[str, str]:
        return self.engine.labels_for(self.alertname, severity or self.spec.severity, extra)

    def active(self, extra: dict[str, str], severity: str | None = None) -> bool:
        return self.engine.is_active(self.labels(extra, severity))

    def set(self, extra: dict[str, str], active: bool, summary: str = "",
            description: str = "", value: float | None = None,
            severity: str | None = None) -> None:
        self.engine.set_active(self.name, self.labels(extra, severity), active, summary,
                               description, self.for_s, value)

    def on_point(self, point: Point) -> None:
        pass

    def on_tick(self, now: float, self_stats: dict[str, Any] | None) -> None:
        pass


class _EventGuard:
    """Level points (polled) older than the last event of the same key are stale: the poll
    read the state before the event happened."""

    def __init__(self) -> None:
        self.last_event_ns: dict[Any, int] = {}

    def event(self, key: Any, time_ns: int) -> None:
        self.last_event_ns[key] = max(time_ns, self.last_event_ns.get(key, 0))

    def stale(self, key: Any, time_ns: int) -> bool:
        return time_ns < self.last_event_ns.get(key, 0)


# ---------------------------------------------------------------- links


class UplinkDown(Condition):
    name = "uplink_down"
    measurements = ("link_event", "link")

    def __init__(self, engine: AlertEngine, config: Any) -> None:
        super().__init__(engine, config)
        self.guard = _EventGuard()

    def _describe(self, carrier: str) -> str:
        return (f"The uplink of carrier {carrier} is not passing traffic. Traffic and BGP "
                f"sessions through {carrier} are down; users of {carrier} reach us through "
                "other carriers, if at all.")

    def on_point(self, point: Point) -> None:
        tags = point.tags
        carrier = tags.get("carrier")
        if not carrier:
            return
        interface = tags.get("interface", "")
        extra = {"carrier": carrier, "interface": interface}
        key = (carrier, interface)
        if point.measurement == "link_event":
            state = tags.get("state")
            if state in ("down", "deleted"):
                self.guard.event(key, point.time_ns)
                detail = point.fields.get("detail", state)
                self.set(extra, True, f"uplink {interface} of {carrier} is {state}: {detail}",
                         self._describe(carrier))
            elif state == "up":
                self.guard.event(key, point.time_ns)
                self.set(extra, False)
            return
        oper_up = point.fields.get("oper_up")
        if not isinstance(oper_up, bool) or self.guard.stale(key, point.time_ns):
            return
        carrier_up = point.fields.get("carrier_up")
        why = "carrier lost" if carrier_up is False else "oper down"
        self.set(extra, not oper_up, f"uplink {interface} of {carrier} is down: {why}",
                 self._describe(carrier))


class RoutingFailed(Condition):
    name = "routing_failed"
    measurements = ("link_event", "link")

    def __init__(self, engine: AlertEngine, config: Any) -> None:
        super().__init__(engine, config)
        self.guard = _EventGuard()

    def on_point(self, point: Point) -> None:
        tags = point.tags
        carrier = tags.get("carrier")
        if not carrier:
            return
        interface = tags.get("interface", "")
        extra = {"carrier": carrier, "interface": interface}
        key = (carrier, interface)
        description = (f"Traffic meant to leave through {carrier} may not: its routing "
                       "table, gateway or policy rules are not as configured.")
        if point.measurement == "link_event":
            state = tags.get("state")
            if state == "routing_failed":
                self.guard.event(key, point.time_ns)
                self.set(extra, True, f"routing through {carrier} ({interface}) failed: "
                         f"{point.fields.get('detail', '')}", description)
            elif state == "routing_ok":
                self.guard.event(key, point.time_ns)
                self.set(extra, False)
            return
        fields = point.fields
        checks = [k for k in _ROUTING_FIELDS if k in fields]
        if not checks or self.guard.stale(key, point.time_ns):
            return
        failed = [k for k in checks if fields[k] is False]
        self.set(extra, bool(failed), f"routing through {carrier} ({interface}) failed: "
                 f"{', '.join(failed)} false", description)


class Utilization(Condition):
    name = "utilization"
    measurements = ("link",)

    def on_point(self, point: Point) -> None:
        carrier = point.tags.get("carrier")
        if not carrier:
            return
        rx, tx = point.fields.get("rx_util"), point.fields.get("tx_util")
        values = [v for v in (rx, tx) if isinstance(v, int | float) and not isinstance(v, bool)]
        if not values:
            return
        util = float(max(values))
        interface = point.tags.get("interface", "")
        extra = {"carrier": carrier, "interface": interface}
        hysteresis = self.p("hysteresis_pct") / 100
        for severity, key in (("warning", "warning_pct"), ("critical", "critical_pct")):
            level = self.p(key) / 100
            threshold = level - hysteresis if self.active(extra, severity) else level
            direction = "rx" if rx is not None and float(rx) == util else "tx"
            self.set(
                extra, util >= threshold,
                f"{carrier} uplink {interface} {direction} at {_pct(util)} of its committed "
                f"bandwidth (rx {_pct(float(rx or 0))}, tx {_pct(float(tx or 0))}; "
                f"{severity} level {self.p(key):g} %)",
                f"Traffic on {carrier} has been above {self.p(key):g} % of the commit for "
                f"{format_duration(self.for_s)}: risk of congestion and of a 95th percentile "
                "above the commit.",
                value=util, severity=severity)


# ---------------------------------------------------------------- billing


class Commit(Condition):
    name = "commit"
    measurements = ("billing",)

    def on_point(self, point: Point) -> None:
        carrier = point.tags.get("carrier")
        p95, committed = point.fields.get("p95_bps"), point.fields.get("committed_bps")
        if not carrier or not isinstance(p95, float | int) or not isinstance(
                committed, float | int) or committed <= 0:
            return
        if self.engine.clock() - _t(point) > 3600:  # a closed month's final figure
            return
        extra = {"carrier": carrier, "interface": point.tags.get("interface", "")}
        ratio = float(p95) / float(committed)
        threshold = 1.0 - self.p("hysteresis_pct") / 100 if self.active(extra) else 1.0
        self.set(extra, ratio > threshold,
                 f"{carrier}: month-to-date 95th percentile {_mbps(p95)} is above the commit "
                 f"of {_mbps(committed)} ({_pct(ratio)})",
                 f"This month's billable rate of {carrier} already exceeds what is "
                 "contracted: overage charges apply unless traffic moves to other carriers.",
                 value=float(p95))


def read_billing_rates(data_dir: Any, carrier: str, mode: str, now: float,
                       window_s: float) -> tuple[list[float], list[float], int]:
    """(this month's rates, the rates of the last window_s, 5-minute slots left this month)
    from the billing collector's sample files."""
    from collectors.links.billing import SAMPLE_PERIOD_S, BillingStore, _safe_name, month_of
    from collectors.links.rates import billing_rate

    store = BillingStore(data_dir / "billing" / _safe_name(carrier))
    month = month_of(now)
    samples = dict(store.samples(month))
    month_rates = [billing_rate(rx, tx, mode) for rx, tx in samples.values()]
    start = now - window_s
    if month_of(start) != month:
        samples.update(BillingStore(data_dir / "billing" / _safe_name(carrier))
                       .samples(month_of(start)))
    window_rates = [billing_rate(rx, tx, mode) for slot, (rx, tx) in sorted(samples.items())
                    if slot >= start]
    begin = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    end = (begin.replace(year=begin.year + 1, month=1) if begin.month == 12
           else begin.replace(month=begin.month + 1)).timestamp()
    left = max(0, int((end - now) // SAMPLE_PERIOD_S))
    return month_rates, window_rates, left


def p95(values: list[float]) -> float | None:
    """The billing collector's rule: sort, discard the top 5 %, the highest remaining."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[len(ordered) - 1 - len(ordered) * 5 // 100]


class CommitProjected(Condition):
    name = "commit_projected"
    measurements = ("billing",)

    def on_point(self, point: Point) -> None:
        carrier = point.tags.get("carrier")
        committed = point.fields.get("committed_bps")
        if not carrier or not isinstance(committed, float | int) or committed <= 0:
            return
        now = self.engine.clock()
        if now - _t(point) > 3600:
            return
        reader: Callable[..., tuple[list[float], list[float], int]] = (
            self.engine.billing_reader or self._read)
        month_rates, window_rates, left = reader(carrier, now, self.p("window"))
        if not window_rates:
            return
        repeated = [window_rates[i % len(window_rates)] for i in range(left)]
        projected = p95(month_rates + repeated)
        if projected is None:
            return
        extra = {"carrier": carrier, "interface": point.tags.get("interface", "")}
        ratio = projected / float(committed)
        threshold = 1.0 - self.p("hysteresis_pct") / 100 if self.active(extra) else 1.0
        self.set(extra, ratio > threshold,
                 f"{carrier}: projected p95 {_mbps(projected)} of {_mbps(committed)} committed "
                 f"({_pct(ratio)}) if the rest of the month looks like the last "
                 f"{format_duration(self.p('window'))}",
                 f"At this rate {carrier}'s 95th percentile ends the month above the commit; "
                 "move traffic to other carriers or raise the commit before it is billed.",
                 value=projected)

    def _read(self, carrier: str, now: float, window_s: float
              ) -> tuple[list[float], list[float], int]:
        return read_billing_rates(self.config.agent.data_dir, carrier,
                                  self.config.billing.rate, now, window_s)


# ---------------------------------------------------------------- BGP


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


# ---------------------------------------------------------------- RIS Live


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


# ---------------------------------------------------------------- access quality


class QualityBad(Condition):
    name = "quality_bad"
    measurements = ("quality",)

    def __init__(self, engine: AlertEngine, config: Any) -> None:
        super().__init__(engine, config)
        self.runs: dict[tuple[str, str], list[int]] = {}  # [bad in a row, good in a row]

    def on_point(self, point: Point) -> None:
        status = point.fields.get("status")
        if not isinstance(status, str):
            return
        carrier, target = point.tags.get("carrier", ""), point.tags.get("target", "")
        bad = status == "down" if self.p("status") == "down" else status in ("degraded", "down")
        runs = self.runs.setdefault((carrier, target), [0, 0])
        if bad:
            runs[0] += 1
            runs[1] = 0
        else:
            runs[1] += 1
            runs[0] = 0
        extra = {"carrier": carrier, "target": target}
        if self.active(extra):
            active = runs[1] < self.p("clear_rounds")
        else:
            active = runs[0] >= self.p("rounds")
        self.set(extra, active,
                 f"{target} through {carrier}: quality {status} for {runs[0]} rounds "
                 f"(score {point.fields.get('score', '-')})",
                 f"Users reaching {target} through {carrier} see loss or delay above the "
                 "[quality] thresholds.")


class CarrierLoss(Condition):
    name = "carrier_loss"
    measurements = ("probe",)
    MIN_SAMPLES = 3

    def __init__(self, engine: AlertEngine, config: Any) -> None:
        super().__init__(engine, config)
        self.samples: dict[tuple[str, str], dict[str, collections.deque[tuple[float, float]]]] = {}

    def on_point(self, point: Point) -> None:
        loss = point.fields.get("loss_pct")
        if not isinstance(loss, float | int) or isinstance(loss, bool):
            return
        target, method = point.tags.get("target", ""), point.tags.get("method", "")
        carrier = point.tags.get("carrier", "")
        now = _t(point)
        window = self.p("window")
        per_carrier = self.samples.setdefault((target, method), {})
        per_carrier.setdefault(carrier, collections.deque()).append((now, float(loss)))
        means: dict[str, float] = {}
        for name, history in per_carrier.items():
            while history and history[0][0] <= now - window:
                history.popleft()
            if len(history) >= self.MIN_SAMPLES:
                means[name] = sum(v for _, v in history) / len(history)
        for name in per_carrier:
            others = [m for other, m in means.items() if other != name]
            extra = {"carrier": name, "target": target, "method": method}
            if name not in means or not others:
                if name not in means:
                    self.set(extra, False)
                continue
            best = min(others)
            diff = means[name] - best
            threshold = self.p("diff_pp")
            if self.active(extra):
                threshold -= self.p("hysteresis_pp")
            self.set(extra, diff >= threshold,
                     f"{target} ({method}) through {name}: loss {means[name]:.1f} % over "
                     f"{format_duration(window)}, {diff:.1f} points worse than the best other "
                     f"carrier ({best:.1f} %)",
                     f"{name} loses packets to {target} that other carriers deliver: a "
                     "problem in or behind that carrier, not at the target.",
                     value=diff)


class LatencyShift(Condition):
    name = "latency_shift"
    measurements = ("probe",)

    def __init__(self, engine: AlertEngine, config: Any) -> None:
        super().__init__(engine, config)
        self.samples: dict[tuple[str, str, str], collections.deque[tuple[float, float]]] = {}

    def on_point(self, point: Point) -> None:
        rtt = point.fields.get("rtt_median_ms")
        if not isinstance(rtt, float | int) or isinstance(rtt, bool):
            return
        carrier, target = point.tags.get("carrier", ""), point.tags.get("target", "")
        method = point.tags.get("method", "")
        now = _t(point)
        recent_s, baseline_s = self.p("recent"), self.p("baseline")
        history = self.samples.setdefault((carrier, target, method), collections.deque())
        history.append((now, float(rtt)))
        while history and history[0][0] <= now - recent_s - baseline_s:
            history.popleft()
        recent = [v for t, v in history if t > now - recent_s]
        base = [v for t, v in history if t <= now - recent_s]
        extra = {"carrier": carrier, "target": target, "method": method}
        if len(recent) < self.p("min_samples") or len(base) < self.p("min_samples"):
            return
        recent_median, base_median = statistics.median(recent), statistics.median(base)
        tolerance = max(self.p("min_ms"), self.p("pct") / 100 * base_median)
        shift = recent_median - base_median
        threshold = tolerance / 2 if self.active(extra) else tolerance
        self.set(extra, shift > threshold,
                 f"{target} ({method}) through {carrier}: median RTT {recent_median:.1f} ms over "
                 f"the last {format_duration(recent_s)}, was {base_median:.1f} ms "
                 f"(+{shift:.1f} ms, tolerance {tolerance:.1f} ms)",
                 f"The path from {carrier} to {target} got slower: a reroute or congestion.",
                 value=shift)


# ---------------------------------------------------------------- the agent itself


class OutputLagging(Condition):
    name = "output_lagging"

    def on_tick(self, now: float, self_stats: dict[str, Any] | None) -> None:
        if not self_stats:
            return
        for name, output in self_stats.get("outputs", {}).items():
            lag = float(output.get("lag_s", 0.0))
            extra = {"output": name}
            limit = self.p("lag") / 2 if self.active(extra) else self.p("lag")
            error = output.get("last_error") or "no error reported"
            self.set(extra, lag > limit,
                     f"output {name} has not delivered points for {lag:.0f} s "
                     f"({output.get('lag_points', 0)} points waiting; last error: {error})",
                     "The points stay in the spool and are delivered when the server is "
                     "back, unless the spool fills first.", value=lag)


class _CounterGrowth(Condition):
    """Fires while a counter grew within `window`."""

    def __init__(self, engine: AlertEngine, config: Any) -> None:
        super().__init__(engine, config)
        self.last: dict[str, int] = {}
        self.growth: dict[str, collections.deque[tuple[float, int]]] = {}

    def observe(self, key: str, value: int, now: float) -> tuple[bool, int]:
        """(grew within the window, by how much). Growth since start counts."""
        previous = min(self.last.get(key, 0), value)
        self.last[key] = value
        growth = self.growth.setdefault(key, collections.deque())
        if value > previous:
            growth.append((now, value - previous))
        while growth and growth[0][0] <= now - self.p("window"):
            growth.popleft()
        return bool(growth), sum(d for _, d in growth)


class PointsDropped(_CounterGrowth):
    name = "points_dropped"

    def on_tick(self, now: float, self_stats: dict[str, Any] | None) -> None:
        if not self_stats or "points_dropped" not in self_stats:
            return
        active, count = self.observe("", int(self_stats["points_dropped"]), now)
        self.set({}, active, f"{count} points dropped (spool full, queue overflow or "
                 "unencodable) in the last "
                 f"{format_duration(self.p('window'))}",
                 "Those points are lost for good: an output has been down longer than the "
                 "spool holds, or the disk cannot keep up.", value=float(count))


class CollectorOverrun(_CounterGrowth):
    name = "collector_overrun"

    def on_tick(self, now: float, self_stats: dict[str, Any] | None) -> None:
        if not self_stats:
            return
        for name, overruns in self_stats.get("collectors", {}).items():
            active, count = self.observe(name, int(overruns), now)
            self.set({"collector": name}, active,
                     f"collector {name} overran its interval {count} times in the last "
                     f"{format_duration(self.p('window'))}",
                     "Its samples are late or missing: the host is overloaded or the "
                     "collector has too much to do for its interval.", value=float(count))


CLASSES: dict[str, type[Condition]] = {
    cls.name: cls for cls in (
        UplinkDown, RoutingFailed, Utilization, Commit, CommitProjected, BgpSessionDown,
        BgpFlapping, PrefixesCollapsed, ExabgpDown, OwnPrefixMissing, OriginMismatch,
        RpkiOwnInvalid, MoreSpecific, UnexpectedPath, QualityBad, CarrierLoss, LatencyShift,
        OutputLagging, PointsDropped, CollectorOverrun,
        RisHijack, RisVisibilityLost, RisUnexpectedUpstream, RisFeedSilent,
    )
}
assert set(CLASSES) == set(CONDITIONS), "every condition in the schema has a class"


def build_conditions(engine: AlertEngine, config: Any) -> list[Condition]:
    return [CLASSES[rule.name](engine, config) for rule in config.alerts.rules if rule.enabled]

