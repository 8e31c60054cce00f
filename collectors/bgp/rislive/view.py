"""What RIS Live's vantage points see of our prefixes: pure state and arithmetic.

No I/O and no clock of its own: the websocket client hands it each text frame
(`handle_text`), the polled collector asks it for points every interval (`evaluate`). So
every count and every event is tested without a server (tests/test_rislive_view.py).

State: per prefix seen (one of ours, a watched one, or a more-specific of either), per RIS
peer (a "vantage point", keyed by its address) the route that peer announced last: origin
AS, the AS just before ours (the upstream), the AS path text. A withdrawal removes it; a
RIS_PEER_STATE other than `connected` removes every route of that peer.

Counts per own prefix P (`bgp.announce`), all of distinct vantage points:
- `any`: holds P itself with origin `bgp.local_as`;
- per carrier: of those, the ones whose path has the carrier's `peer_as` just before our
  AS (prepends of our AS skipped);
- `other`: of those, the ones whose AS before ours is none of our carriers' (an AS_SET
  there counts as other); a vantage point inside our own AS counts in `any` only;
- `peers_foreign_origin`: holds P with another origin, or a more-specific of P (one not
  itself in `announce`/`watch`) with another origin;
- `peers_more_specific`: holds a more-specific of P (not itself ours/watched), any origin.
A watched prefix (`bgp.watch`, someone else's) has `any` only: vantage points holding it,
whatever the origin.

Events (`bgp_event`): a hijack (P with a foreign origin, or a more-specific of P, held by at
least `hijack_min_peers` vantage points: one event per seen prefix and origin, and its end
when fewer hold it); an unexpected upstream (P reached through an AS that is none of our
carriers by at least `hijack_min_peers`); visibility via a carrier (or `any`) below
`drop_fraction` of its usual level (the highest count in the last `baseline`) and
restored when back at that share of the level it fell from. Lost/restored are judged only
when the caller says the feed is trustworthy (connected, past warm-up).

The message format is checked in messages.py, the settings in settings.py, the counters and
records in records.py. RisView stays one class in one file (~430 lines): its input, counts,
events and judgement all read and write the same per-prefix, per-peer routes.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from typing import Any

from agent.points import FieldValue, Point
from collectors.bgp.metrics import (
    EVENT_RIS_HIJACK,
    EVENT_RIS_HIJACK_END,
    EVENT_RIS_LOST,
    EVENT_RIS_RESTORED,
    EVENT_RIS_UPSTREAM,
    EVENT_RIS_UPSTREAM_END,
)
from collectors.bgp.prefixes import Prefix
from collectors.bgp.rib import FAMILY_BITS, format_prefix
from collectors.bgp.rislive.messages import (
    UPSTREAM_NONE,
    UPSTREAM_SET,
    BadMessage,
    Route,
    _peer,
    _prefix,
    parse_path,
)
from collectors.bgp.rislive.records import Counts, FeedStats, Series
from collectors.bgp.rislive.settings import ViewSettings

log = logging.getLogger(__name__)


VIA_ANY = "any"
VIA_OTHER = "other"

_MAX_TEXT = 1 << 20  # a frame longer than this is not a RIS Live message we can use


class RisView:
    def __init__(self, settings: ViewSettings) -> None:
        self.stats = FeedStats()
        self.events: deque[dict[str, Any]] = deque(maxlen=20)
        self.seen: dict[tuple[int, int], dict[str, Route]] = {}
        self.series: dict[tuple[str, str], Series] = {}
        self.hijacks: dict[tuple[str, str, int], int] = {}  # (own, seen, origin) → peers
        self.upstreams: dict[tuple[str, int], int] = {}  # (own, upstream AS) → peers
        self.settings = settings
        self.reconfigure(settings)

    # ------------------------------------------------------------ settings

    def reconfigure(self, settings: ViewSettings) -> None:
        """New prefixes, carriers or thresholds: routes outside the new prefixes go,
        series and active events of removed prefixes are forgotten."""
        self.settings = settings
        self._mine = [(p, True) for p in settings.own] + [(p, False) for p in settings.watch]
        self._known = {(p.family, p.key) for p, _ in self._mine}
        self._carrier_as = {asn for _, asn in settings.carriers}
        self._shift: dict[int, int] = {}
        self._tops: dict[int, set[int]] = {}
        for family in FAMILY_BITS:
            lengths = [p.length for p, _ in self._mine if p.family == family]
            if lengths:
                shift = self._shift[family] = FAMILY_BITS[family] - min(lengths)
                self._tops[family] = {p.network >> shift for p, _ in self._mine
                                      if p.family == family}
        for key in [k for k in self.seen if not self._relevant(*k)]:
            del self.seen[key]
        texts = {p.text for p, _ in self._mine}
        vias = {(p.text, v) for p, own in self._mine for v in self._vias(own)}
        for skey in [k for k in self.series if k not in vias]:
            del self.series[skey]
        self.hijacks = {k: v for k, v in self.hijacks.items() if k[0] in texts}
        self.upstreams = {k: v for k, v in self.upstreams.items() if k[0] in texts}

    def _vias(self, own: bool) -> list[str]:
        if not own:
            return [VIA_ANY]
        return [VIA_ANY, *dict.fromkeys(name for name, _ in self.settings.carriers), VIA_OTHER]

    def _relevant(self, family: int, key: int) -> bool:
        """Inside one of our (or a watched) prefixes: its leading bits at our shortest
        length of that family are probed first (no scan for the usual unrelated one)."""
        shift = self._shift.get(family)
        network, length = key >> 8, key & 0xFF
        if shift is None or length < FAMILY_BITS[family] - shift or (
                network >> shift) not in self._tops[family]:
            return False
        return any(p.contains(family, network, length) for p, _ in self._mine)

    # ------------------------------------------------------------ input

    def handle_text(self, frame: str | bytes, now: float) -> list[Point]:
        """One websocket frame. Never raises: what is not RIS Live's format is counted in
        `bad_messages` (its reason kept in `last_bad`) and changes nothing."""
        self.stats.messages += 1
        try:
            if len(frame) > _MAX_TEXT:
                raise BadMessage(f"frame of {len(frame)} bytes")
            message = json.loads(frame)
            if not isinstance(message, dict):
                raise BadMessage("not a JSON object")
            kind = message.get("type")
            if kind == "ris_message":
                return self.apply(message.get("data"), now)
            if kind == "pong":
                self.stats.pongs += 1
            elif kind == "ris_error":
                data = message.get("data")
                text = data.get("message") if isinstance(data, dict) else None
                self.stats.ris_errors += 1
                self.stats.last_errors.append(str(text if text is not None else data)[:300])
                log.warning("RIS Live error: %s", self.stats.last_errors[-1])
            elif kind == "ris_subscribe_ok":
                self.stats.subscribe_ok += 1
            elif kind == "ris_rrc_list":
                pass
            else:
                raise BadMessage(f"unknown message type {str(kind)[:40]!r}")
        except (BadMessage, ValueError, TypeError, RecursionError, UnicodeDecodeError) as exc:
            self.stats.bad_messages += 1
            self.stats.last_bad.append(f"{type(exc).__name__}: {exc}"[:200])
        return []

    def apply(self, data: Any, now: float) -> list[Point]:
        """The `data` of one `ris_message`. Checked whole before anything is applied."""
        if not isinstance(data, dict):
            raise BadMessage("ris_message without a data object")
        kind = data.get("type")
        peer = _peer(data.get("peer"))
        if kind == "RIS_PEER_STATE":
            state = data.get("state")
            if not isinstance(state, str):
                raise BadMessage("RIS_PEER_STATE without a state")
            self.stats.peer_states += 1
            if state == "connected":
                return []
            dropped = {k for k, routes in self.seen.items() if peer in routes}
            for key in dropped:
                del self.seen[key][peer]
                if not self.seen[key]:
                    del self.seen[key]
            return self._recheck(dropped, now)
        if kind != "UPDATE":
            if not isinstance(kind, str):
                raise BadMessage("ris_message without a type")
            return []  # OPEN, NOTIFICATION, KEEPALIVE: nothing about routes
        withdrawn = data.get("withdrawals", [])
        announced = data.get("announcements", [])
        if not isinstance(withdrawn, list) or not isinstance(announced, list):
            raise BadMessage("announcements/withdrawals: expected lists")
        gone = [_prefix(p) for p in withdrawn]
        new: list[tuple[int, int, int]] = []
        for item in announced:
            if not isinstance(item, dict) or not isinstance(item.get("prefixes"), list):
                raise BadMessage("announcement without a prefixes list")
            new.extend(_prefix(p) for p in item["prefixes"])
        relevant_new = [(f, (n << 8) | ln) for f, n, ln in new if self._relevant(f, (n << 8) | ln)]
        route = parse_path(data.get("path"), self.settings.local_as) if relevant_new else None
        self.stats.updates += 1
        self.stats.unrelated += len(new) - len(relevant_new)
        touched: set[tuple[int, int]] = set()
        for family, network, length in gone:
            key = (family, (network << 8) | length)
            if not self._relevant(*key):
                self.stats.unrelated += 1
                continue
            self.stats.withdrawals += 1
            routes = self.seen.get(key)
            if routes is not None and routes.pop(peer, None) is not None:
                touched.add(key)
                if not routes:
                    del self.seen[key]
        for key in relevant_new:
            self.stats.announcements += 1
            assert route is not None
            self.seen.setdefault(key, {})[peer] = route
            touched.add(key)
        return self._recheck(touched, now)

    # ------------------------------------------------------------ arithmetic

    def _routes_under(
        self, prefix: Prefix
    ) -> tuple[dict[str, Route], list[tuple[str, dict[str, Route]]]]:
        """(routes of the prefix itself, [(text, routes)] of its more-specifics that are
        not ours or watched)."""
        exact = self.seen.get((prefix.family, prefix.key), {})
        more = []
        for (family, key), routes in self.seen.items():
            length = key & 0xFF
            if (length > prefix.length and (family, key) not in self._known
                    and prefix.contains(family, key >> 8, length)):
                more.append((format_prefix(family, key), routes))
        return exact, more

    def counts(self, prefix: Prefix, own: bool = True) -> Counts:
        exact, more = self._routes_under(prefix)
        counts = Counts()
        if not own:
            counts.any = len(exact)
            return counts
        counts.carriers = {name: 0 for name, _ in self.settings.carriers}
        foreign: set[str] = set()
        for peer, route in exact.items():
            if not route.ours:
                foreign.add(peer)
                continue
            counts.any += 1
            if route.upstream == UPSTREAM_NONE:
                continue
            matched = False
            for name, asn in self.settings.carriers:
                if route.upstream == asn:
                    counts.carriers[name] += 1
                    matched = True
            if not matched:
                counts.other += 1
        more_peers: set[str] = set()
        for _, routes in more:
            more_peers.update(routes)
            foreign.update(p for p, r in routes.items() if not r.ours)
        counts.foreign_origin = len(foreign)
        counts.more_specific = len(more_peers)
        return counts

    def vantage_points(self) -> int:
        return len({peer for routes in self.seen.values() for peer in routes})

    def _suspects(self, prefix: Prefix) -> dict[tuple[str, int], tuple[int, str]]:
        """(seen prefix, origin) → (vantage points, a sample path) of foreign origins of
        the prefix and of its more-specifics."""
        exact, more = self._routes_under(prefix)
        found: dict[tuple[str, int], list[Any]] = {}
        for text, routes in [(prefix.text, exact), *more]:
            for route in routes.values():
                if text == prefix.text and route.ours:
                    continue
                entry = found.setdefault((text, route.origin_as), [0, route.path])
                entry[0] += 1
        return {k: (v[0], v[1]) for k, v in found.items()}

    def _unexpected(self, prefix: Prefix) -> dict[int, tuple[int, str]]:
        exact = self.seen.get((prefix.family, prefix.key), {})
        found: dict[int, list[Any]] = {}
        for route in exact.values():
            if route.ours and route.upstream != UPSTREAM_NONE and (
                    route.upstream not in self._carrier_as):
                entry = found.setdefault(route.upstream, [0, route.path])
                entry[0] += 1
        return {k: (v[0], v[1]) for k, v in found.items()}

    def _recheck(self, touched: set[tuple[int, int]], now: float) -> list[Point]:
        """Hijack and upstream events of the own prefixes a change touched."""
        points: list[Point] = []
        n = self.settings.hijack_min_peers
        for prefix in self.settings.own:
            if not any(prefix.contains(f, k >> 8, k & 0xFF) for f, k in touched):
                continue
            suspects = self._suspects(prefix)
            for (text, origin), (peers, path) in suspects.items():
                key = (prefix.text, text, origin)
                if peers >= n and key not in self.hijacks:
                    what = (f"our {prefix.text} originated by AS{origin}" if text == prefix.text
                            else f"more-specific {text} of our {prefix.text} originated by "
                                 f"AS{origin}")
                    points.append(self._event(
                        EVENT_RIS_HIJACK, now, text, path, origin, peers,
                        f"{what}, seen by {peers} RIS vantage points"))
                if peers >= n:
                    self.hijacks[key] = peers
            for key in [k for k in self.hijacks if k[0] == prefix.text]:
                peers = suspects.get((key[1], key[2]), (0, ""))[0]
                if peers < n:
                    del self.hijacks[key]
                    points.append(self._event(
                        EVENT_RIS_HIJACK_END, now, key[1], "", key[2], peers,
                        f"{key[1]} originated by AS{key[2]} now seen by {peers} RIS vantage "
                        f"points (fewer than {n})"))
            unexpected = self._unexpected(prefix)
            for upstream, (peers, path) in unexpected.items():
                key2 = (prefix.text, upstream)
                name = "an AS_SET" if upstream == UPSTREAM_SET else f"AS{upstream}"
                if peers >= n and key2 not in self.upstreams:
                    points.append(self._event(
                        EVENT_RIS_UPSTREAM, now, prefix.text, path, self.settings.local_as, peers,
                        f"our {prefix.text} reached through {name}, none of our carriers, "
                        f"by {peers} RIS vantage points"))
                if peers >= n:
                    self.upstreams[key2] = peers
            for key2 in [k for k in self.upstreams if k[0] == prefix.text]:
                peers = unexpected.get(key2[1], (0, ""))[0]
                if peers < n:
                    del self.upstreams[key2]
                    name = "an AS_SET" if key2[1] == UPSTREAM_SET else f"AS{key2[1]}"
                    points.append(self._event(
                        EVENT_RIS_UPSTREAM_END, now, prefix.text, "", self.settings.local_as,
                        peers, f"our {prefix.text} through {name} now seen by {peers} RIS "
                               f"vantage points (fewer than {n})"))
        return points

    def _event(self, kind: str, now: float, prefix: str, path: str, origin: int, peers: int,
               detail: str, carrier: str = "", via: str = "") -> Point:
        fields: dict[str, FieldValue] = {
            "prefix": prefix, "as_path": path, "origin_as": origin, "detail": detail,
            "peers": peers, "via": via,
        }
        tags = {"kind": kind}
        if carrier:
            tags["carrier"] = carrier
        self.events.append({"time": now, "kind": kind, "carrier": carrier, **fields})
        return Point("bgp_event", tags, fields, int(now * 1e9))

    # ------------------------------------------------------------ every interval

    def evaluate(self, now: float, judging: bool, time_ns: int = 0) -> list[Point]:
        """`bgp_visibility` points of every prefix and via, and lost/restored events.
        `judging` false (feed down, silent or warming up): counts are written, nothing is
        judged lost or restored, and the counts do not feed the usual level."""
        points: list[Point] = []
        events: list[Point] = []
        for prefix, own in self._mine:
            counts = self.counts(prefix, own)
            values: dict[str, int] = {VIA_ANY: counts.any}
            if own:
                values.update(counts.carriers)
                values[VIA_OTHER] = counts.other
            for via, peers in values.items():
                series = self.series.setdefault((prefix.text, via), Series())
                if via != VIA_OTHER:
                    events.extend(self._judge(prefix.text, via, series, peers, now, judging))
                fields: dict[str, FieldValue] = {"peers": peers}
                if via != VIA_OTHER:
                    fields["lost"] = series.lost
                    fields["usual_peers"] = series.lost_from if series.lost else series.usual
                if via == VIA_ANY and own:
                    fields["peers_foreign_origin"] = counts.foreign_origin
                    fields["peers_more_specific"] = counts.more_specific
                points.append(Point("bgp_visibility", {"prefix": prefix.text, "via": via},
                                    fields, time_ns))
        return events + points

    def _judge(self, prefix: str, via: str, series: Series, peers: int, now: float,
               judging: bool) -> list[Point]:
        s = self.settings
        series.last = peers
        history = series.history
        while history and history[0][0] <= now - s.baseline_s:
            history.popleft()
        usual = max((c for _, c in history), default=0)
        events: list[Point] = []
        carrier = via if via != VIA_ANY else ""
        through = f"through {via}" if carrier else "from anywhere"
        if not series.lost:
            series.usual = max(usual, peers)
            if judging and usual >= s.min_usual_peers and peers < s.drop_fraction * usual:
                series.lost, series.lost_from = True, usual
                events.append(self._event(
                    EVENT_RIS_LOST, now, prefix, "", s.local_as, peers,
                    f"{prefix} seen {through} by {peers} RIS vantage points, usually {usual} "
                    f"(below {s.drop_fraction:g} of it)", carrier, via))
            elif judging:
                history.append((now, peers))
        elif judging and peers >= s.drop_fraction * series.lost_from:
            series.lost = False
            events.append(self._event(
                EVENT_RIS_RESTORED, now, prefix, "", s.local_as, peers,
                f"{prefix} seen {through} by {peers} RIS vantage points again (was "
                f"{series.lost_from} before it was lost)", carrier, via))
            history.append((now, peers))
            series.usual = max(series.lost_from, peers)
        return events

    def status(self) -> dict[str, Any]:
        prefixes = []
        for prefix, own in self._mine:
            counts = self.counts(prefix, own)
            entry: dict[str, Any] = {"prefix": prefix.text, "own": own, "any": counts.any}
            if own:
                entry.update({"carriers": counts.carriers, "other": counts.other,
                              "foreign_origin": counts.foreign_origin,
                              "more_specific": counts.more_specific})
            entry["lost"] = sorted(via for (text, via), series in self.series.items()
                                   if text == prefix.text and series.lost)
            prefixes.append(entry)
        return {
            "vantage_points": self.vantage_points(),
            "prefixes": prefixes,
            "hijacks": [{"prefix": own, "seen": seen, "origin_as": origin, "peers": peers}
                        for (own, seen, origin), peers in self.hijacks.items()],
            "unexpected_upstreams": [{"prefix": own, "upstream_as": upstream, "peers": peers}
                                     for (own, upstream), peers in self.upstreams.items()],
            "messages": self.stats.as_dict(),
            "last_events": list(self.events),
        }
