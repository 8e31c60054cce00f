"""BGP state of the agent: sessions, per-carrier RIBs, our prefixes, watched destinations.

Pure: lines (or parsed messages) and a clock in, `bgp_event` points out. No I/O, so every
detector is tested without ExaBGP; the supervisor feeds it from the bridge.

Hot path: each announced or withdrawn prefix costs one parse, one dict write and one or
two set probes ("does it touch one of ours or a watched destination?"); only prefixes that
do touch them reach the detectors. Our prefixes' more-specifics are found by probing the
prefix's leading bits against the shortest of our lengths (a hash LPM), never by scanning.
"""

from __future__ import annotations

import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.config import Config
from agent.points import FieldValue, Point
from collectors.bgp.parser import (
    FAMILIES,
    KIND_ACK,
    KIND_BAD,
    KIND_EOR,
    KIND_NOTIFICATION,
    KIND_STATE,
    KIND_UPDATE,
    Message,
    as_path_of,
    communities_of,
    int_attr,
    loads,
    parse_line,
)
from collectors.bgp.rib import (
    FAMILY_BITS,
    V4,
    V6,
    Attrs,
    CarrierRib,
    Interner,
    format_prefix,
    parse_address,
    parse_prefix,
)
from collectors.bgp.rpki.validation import RovState

_MASKS4 = {n: ((1 << n) - 1) << (32 - n) for n in range(33)}
_MASKS6 = {n: ((1 << n) - 1) << (128 - n) for n in range(129)}
_PTON = {V4: (socket.AF_INET, _MASKS4), V6: (socket.AF_INET6, _MASKS6)}
inet_pton = socket.inet_pton
_NO_ATTRIBUTES: dict[str, Any] = {}

EVENT_SESSION_UP = "session_up"
EVENT_SESSION_DOWN = "session_down"
EVENT_OWN_MISSING = "own_prefix_missing"
EVENT_ORIGIN_MISMATCH = "origin_mismatch"
EVENT_MORE_SPECIFIC = "more_specific"
EVENT_PATH_CHANGE = "path_change"


@dataclass(frozen=True)
class Prefix:
    """One of ours or a watched destination."""

    text: str
    family: int
    network: int
    length: int

    @property
    def key(self) -> int:
        return (self.network << 8) | self.length

    @classmethod
    def parse(cls, text: str) -> Prefix:
        family, network, length = parse_prefix(text)
        return cls(format_prefix(family, (network << 8) | length), family, network, length)

    def contains(self, family: int, network: int, length: int) -> bool:
        if family != self.family or length < self.length:
            return False
        shift = FAMILY_BITS[family] - self.length
        return (network >> shift) == (self.network >> shift)


@dataclass
class Session:
    carrier: str
    peer: str
    peer_as: int
    local_address: str
    state: str = "idle"
    up: bool = False
    up_since_s: float = 0.0
    down_since_s: float = 0.0
    flaps: int = 0
    updates: int = 0
    withdrawals: int = 0
    last_reason: str = ""
    last_notification: str = ""
    converge_s: dict[int, float] = field(default_factory=dict)  # family → End-of-RIB delay
    rib: CarrierRib = field(default_factory=CarrierRib)
    withdrawn_by_operator: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)  # ExaBGP answered `error`
    watch_best: dict[int, tuple[int, Attrs] | None] = field(default_factory=dict)

    def announceable(self, prefix: Prefix) -> str:
        """'' when ExaBGP can send `prefix` on this session, else why not."""
        session_family = V6 if ":" in self.local_address else V4
        if prefix.family != session_family:
            names = {V4: "IPv4", V6: "IPv6"}
            return (f"{names[prefix.family]} prefix on an {names[session_family]} session: "
                    "no next hop to announce it with")
        if prefix.text in self.withdrawn_by_operator:
            return "withdrawn by operator (bgp.withdraw)"
        if prefix.text in self.refused:
            return "ExaBGP refused to announce it"
        return ""


@dataclass
class ReaderStats:
    lines: int = 0
    bad_lines: int = 0
    bad_prefixes: int = 0
    unknown_family: int = 0
    unknown_peer: int = 0
    acks: int = 0
    ack_errors: int = 0
    last_bad: deque[str] = field(default_factory=lambda: deque(maxlen=5))

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "bad_lines": self.bad_lines,
            "bad_prefixes": self.bad_prefixes,
            "unknown_family": self.unknown_family,
            "unknown_peer": self.unknown_peer,
            "acks": self.acks,
            "ack_errors": self.ack_errors,
            "last_bad": list(self.last_bad),
        }


class BgpState:
    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.stats = ReaderStats()
        self.interner = Interner()
        self.sessions: dict[str, Session] = {}
        self.by_peer: dict[str, Session] = {}
        self.own: list[Prefix] = []
        self.watch: list[Prefix] = []
        self.events: deque[dict[str, Any]] = deque(maxlen=20)
        self.pending: deque[tuple[str, str, str]] = deque()  # (action, carrier, prefix)
        self.exabgp_version = ""
        self.rov: RovState | None = None  # RPKI validation, when [bgp.rpki] is set
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> list[Point]:
        """Take a (new) config: sessions whose peer is unchanged keep their state and
        routes; a removed or re-addressed one goes (session_down if it was up); our and
        watched prefixes and their indexes are rebuilt, and a watched destination whose
        best route differs from before gets its path_change."""
        if config.bgp is None:
            raise ValueError("no [bgp] table")
        self.local_as = config.bgp.local_as
        now = self.clock()
        points: list[Point] = []
        sessions: dict[str, Session] = {}
        for carrier in config.carriers:
            if carrier.bgp is None:
                continue
            peer, local = str(carrier.bgp.peer), str(carrier.bgp.local_address)
            old = self.sessions.get(carrier.name)
            if old is not None and (old.peer, old.peer_as, old.local_address) == (
                    peer, carrier.bgp.peer_as, local):
                sessions[carrier.name] = old
            else:
                sessions[carrier.name] = Session(carrier.name, peer, carrier.bgp.peer_as, local)
        for name, old in self.sessions.items():
            if sessions.get(name) is not old and old.up:
                points.append(self._event(old, EVENT_SESSION_DOWN, now,
                                          detail="session removed or changed in the config"))
        fresh = {name for name, s in sessions.items() if self.sessions.get(name) is not s}
        self.sessions = sessions
        self.by_peer = {s.peer: s for s in sessions.values()}
        old_watch = self.watch
        self.own = [Prefix.parse(str(p)) for p in config.bgp.announce]
        self.watch = [Prefix.parse(str(p)) for p in config.bgp.watch]
        own_texts = {p.text for p in self.own}
        for session in sessions.values():
            session.withdrawn_by_operator &= own_texts
            session.refused &= own_texts
            by_text = {old_watch[i].text: best for i, best in session.watch_best.items()
                       if i < len(old_watch)}
            session.watch_best = {i: by_text[w.text] for i, w in enumerate(self.watch)
                                  if w.text in by_text}
        # Interest: exact keys of ours, every ancestor of a watched prefix, and the
        # leading bits of ours at our shortest length (more-specific candidates).
        self._own_by_key: dict[int, dict[int, Prefix]] = {V4: {}, V6: {}}
        self._watch_by_ancestor: dict[int, dict[int, list[int]]] = {V4: {}, V6: {}}
        self._interest: dict[int, set[int]] = {V4: set(), V6: set()}
        self._own_shift: dict[int, int] = {}
        self._own_tops: dict[int, set[int]] = {V4: set(), V6: set()}
        for prefix in self.own:
            self._own_by_key[prefix.family][prefix.key] = prefix
            self._interest[prefix.family].add(prefix.key)
        for family in (V4, V6):
            lengths = [p.length for p in self.own if p.family == family]
            if lengths:
                shift = FAMILY_BITS[family] - min(lengths)
                self._own_shift[family] = shift
                self._own_tops[family] = {
                    p.network >> shift for p in self.own if p.family == family
                }
        for index, prefix in enumerate(self.watch):
            bits = FAMILY_BITS[prefix.family]
            for length in range(prefix.length + 1):
                shift = bits - length
                key = (((prefix.network >> shift) << shift) << 8) | length
                self._watch_by_ancestor[prefix.family].setdefault(key, []).append(index)
                self._interest[prefix.family].add(key)
        for session in sessions.values():
            if session.up:
                points.extend(self._recheck_watches(session, now))
        points.extend(self._rov_reconfigure(fresh))
        return points

    def _rov_reconfigure(self, fresh: set[str]) -> list[Point]:
        # RPKI (collectors/bgp/rpki): new or replaced sessions start from no routes, a
        # removed one's counts go; our prefixes may have changed
        if self.rov is None:
            return []
        self.rov.local_as = self.local_as
        self.rov.sessions_changed(set(self.sessions), fresh)
        return self.rov.check_own(self.own)

    # ------------------------------------------------------------ input

    def handle_line(self, line: bytes | str) -> list[Point]:
        """One line of ExaBGP's stream. The usual UPDATE takes a direct path (no Message);
        anything else, or anything unusual in an UPDATE, goes through the parser."""
        self.stats.lines += 1
        try:
            data = loads(line)
        except (ValueError, RecursionError):
            return self.handle(parse_line(line))
        if type(data) is dict and data.get("type") == "update":
            points = self._fast_update(data)
            if points is not None:
                return points
        return self.handle(parse_line(line, data))

    def _fast_update(self, data: dict[str, Any]) -> list[Point] | None:
        """An UPDATE of IPv4/IPv6 unicast from a known peer, in the shapes ExaBGP writes;
        None sends the line to the general path (which counts what is wrong)."""
        try:
            neighbor = data["neighbor"]
            session = self.by_peer.get(neighbor["address"]["peer"])
            update = neighbor["message"]["update"]
        except (KeyError, TypeError):
            return None
        if session is None or type(update) is not dict:
            return None
        attributes = update.get("attribute", _NO_ATTRIBUTES)
        if type(attributes) is not dict:
            return None
        announce: list[tuple[int, str, list[Any]]] = []
        announce_in = update.get("announce")
        if announce_in is not None:
            if type(announce_in) is not dict:
                return None
            for family_name, by_next_hop in announce_in.items():
                family = FAMILIES.get(family_name)
                if family is None or type(by_next_hop) is not dict or (
                        family == V6 and len(by_next_hop) > 1):
                    return None
                for next_hop, items in by_next_hop.items():
                    if type(items) is not list:
                        return None
                    announce.append((family, next_hop, items))
        withdraw: list[tuple[int, list[Any]]] = []
        withdraw_in = update.get("withdraw")
        if withdraw_in is not None:
            if type(withdraw_in) is not dict:
                return None
            for family_name, items in withdraw_in.items():
                family = FAMILIES.get(family_name)
                if family is None or type(items) is not list:
                    return None
                withdraw.append((family, items))
        version = data.get("exabgp")
        if type(version) is str and version:
            self.exabgp_version = version
        try:
            return self._apply(session, attributes, announce, withdraw, self.clock())
        except (KeyError, TypeError, ValueError) as exc:
            self._bad(f"{type(exc).__name__}: {exc}"[:200])
            return []

    def handle(self, message: Message) -> list[Point]:
        kind = message.kind
        if kind == KIND_BAD:
            self._bad(message.reason)
            return []
        if message.unknown_families:
            self.stats.unknown_family += len(message.unknown_families)
        if message.version:
            self.exabgp_version = message.version
        if kind == KIND_ACK:
            return self._ack(message.ack_ok)
        if kind not in (KIND_UPDATE, KIND_STATE, KIND_EOR, KIND_NOTIFICATION):
            return []
        session = self.by_peer.get(message.peer)
        if session is None:
            self.stats.unknown_peer += 1
            return []
        now = self.clock()
        if kind == KIND_UPDATE:
            try:
                return self._update(session, message, now)
            except (KeyError, TypeError, ValueError) as exc:
                self._bad(f"{type(exc).__name__}: {exc}"[:200])
                return []
        if kind == KIND_STATE:
            return self._state(session, message.state, message.reason, now)
        if kind == KIND_EOR:
            if message.family and session.up and message.family not in session.converge_s:
                session.converge_s[message.family] = max(0.0, now - session.up_since_s)
            return []
        session.last_notification = message.reason
        return []

    def _bad(self, reason: str) -> None:
        self.stats.bad_lines += 1
        self.stats.last_bad.append(reason)

    # ------------------------------------------------------------ sessions

    def _state(self, session: Session, state: str, reason: str, now: float) -> list[Point]:
        if state == "up":
            session.state = "up"
            if session.up:
                return []
            session.up = True
            session.up_since_s = now
            session.converge_s = {}
            points = [self._event(session, EVENT_SESSION_UP, now, detail=f"peer {session.peer}")]
            for prefix in self.own:
                why = session.announceable(prefix)
                if why:
                    points.append(self._event(session, EVENT_OWN_MISSING, now,
                                              prefix=prefix.text, detail=why))
            return points
        if state == "down":
            session.state = "down"
            session.last_reason = reason or session.last_notification or "down"
            if not session.up:
                return []  # a connection attempt that failed, not an established session
            return self._session_lost(session, session.last_reason, now)
        if not session.up:
            session.state = state
        return []

    def _session_lost(self, session: Session, reason: str, now: float) -> list[Point]:
        session.up = False
        session.down_since_s = now
        session.flaps += 1
        session.last_notification = ""
        session.rib.clear()  # ExaBGP sends no withdraws for a session that went down
        if self.rov is not None:
            self.rov.dropped(session.carrier)
        points = [self._event(session, EVENT_SESSION_DOWN, now, detail=reason)]
        points.extend(self._recheck_watches(session, now))
        self.interner.sweep()
        return points

    def exabgp_lost(self, reason: str) -> list[Point]:
        """ExaBGP stopped: every session is down and its routes gone."""
        now = self.clock()
        points: list[Point] = []
        self.pending.clear()
        for session in self.sessions.values():
            session.last_reason = reason
            if session.up:
                points.extend(self._session_lost(session, reason, now))
            session.state = "exabgp_down"
        return points

    # ------------------------------------------------------------ routes

    def _update(self, session: Session, message: Message, now: float) -> list[Point]:
        return self._apply(session, message.attributes, message.announce, message.withdraw,
                           now)

    def _apply(self, session: Session, raw: dict[str, Any],
               announce: list[tuple[int, str, list[Any]]],
               withdraw: list[tuple[int, list[Any]]], now: float) -> list[Point]:
        """Apply one UPDATE. The per-prefix loops are the agent's hot path (a full table is
        ~600k prefixes per carrier): parsing, the dict write and the interest probe are
        inlined; anything unusual about one prefix counts it bad and moves on."""
        points: list[Point] = []
        rib = session.rib
        stats = self.stats
        rov = self.rov if self.rov is not None and self.rov.index is not None else None
        if announce:
            path, origin_as, path_len = as_path_of(raw)
            communities = communities_of(raw, "community")
            large = communities_of(raw, "large-community")
            med = int_attr(raw, "med")
            local_pref = int_attr(raw, "local-preference")
            origin = raw.get("origin", "")
            if not isinstance(origin, str):
                raise TypeError("origin is not a string")
            intern = self.interner.attrs
            for family, next_hop, items in announce:
                attrs = intern((path, origin_as, path_len, next_hop, communities, large,
                                med, local_pref, origin))
                table = rib.v4 if family == V4 else rib.v6
                routes = table.routes
                length_counts = table.length_counts
                count16 = table.count16
                af, masks = _PTON[family]
                interest = self._interest[family]
                shift = self._own_shift.get(family, -1)
                tops = self._own_tops[family]
                count = 0
                # RPKI: routes new here (or with a new origin) and the ones they replace
                rov_new: list[int] | None = [] if rov is not None else None
                rov_gone: list[tuple[int, int]] = []
                for item in items:
                    try:
                        text = item["nlri"] if type(item) is dict else item
                        addr, _, length_text = text.partition("/")
                        length = int(length_text)
                        network = int.from_bytes(inet_pton(af, addr), "big") & masks[length]
                    except (KeyError, TypeError, ValueError, OSError, AttributeError):
                        stats.bad_prefixes += 1
                        continue
                    key = (network << 8) | length
                    old = routes.get(key)
                    routes[key] = attrs
                    if old is None:  # table.added(), inlined for the common cases
                        if length_counts[length] and (count16 is None or length <= 16):
                            length_counts[length] += 1
                        elif count16 is not None and length <= 24 and length_counts[length]:
                            length_counts[length] += 1
                            count16[network >> 16] += 1
                        else:
                            table.added(network, length)
                        if rov_new is not None:
                            rov_new.append(key)
                    elif rov_new is not None and old.origin_as != origin_as:
                        rov_new.append(key)
                        rov_gone.append((key, old.origin_as))
                    count += 1
                    if key in interest or (shift >= 0 and (network >> shift) in tops):
                        points.extend(self._changed(session, family, network, length,
                                                    old, attrs, now))
                session.updates += count
                if rov_new:
                    assert rov is not None
                    if rov_gone:
                        rov.removed(session.carrier, family, rov_gone)
                    rov.announced(session.carrier, family, rov_new, origin_as)
        for family, items in withdraw:
            table = rib.v4 if family == V4 else rib.v6
            af, masks = _PTON[family]
            interest = self._interest[family]
            shift = self._own_shift.get(family, -1)
            tops = self._own_tops[family]
            count = 0
            rov_withdrawn: list[tuple[int, int]] | None = [] if rov is not None else None
            for item in items:
                try:
                    text = item["nlri"] if type(item) is dict else item
                    addr, _, length_text = text.partition("/")
                    length = int(length_text)
                    network = int.from_bytes(inet_pton(af, addr), "big") & masks[length]
                except (KeyError, TypeError, ValueError, OSError, AttributeError):
                    stats.bad_prefixes += 1
                    continue
                key = (network << 8) | length
                old = table.remove(key)
                count += 1
                if old is not None and rov_withdrawn is not None:
                    rov_withdrawn.append((key, old.origin_as))
                if old is not None and (
                    key in interest or (shift >= 0 and (network >> shift) in tops)
                ):
                    points.extend(self._changed(session, family, network, length,
                                                old, None, now))
            session.withdrawals += count
            if rov_withdrawn:
                assert rov is not None
                rov.removed(session.carrier, family, rov_withdrawn)
        return points

    def _changed(self, session: Session, family: int, network: int, length: int,
                 old: Attrs | None, new: Attrs | None, now: float) -> list[Point]:
        """A prefix touching ours or a watched destination changed in one carrier."""
        points: list[Point] = []
        key = (network << 8) | length
        text = format_prefix(family, key)
        own = self._own_by_key[family].get(key)
        if own is not None:
            if new is not None and new.origin_as != self.local_as and (
                old is None or old.origin_as != new.origin_as
            ):
                points.append(self._event(
                    session, EVENT_ORIGIN_MISMATCH, now, prefix=text, attrs=new,
                    detail=f"our prefix originated by AS{new.origin_as}, expected "
                           f"AS{self.local_as}"))
        elif new is not None and (old is None or old.origin_as != new.origin_as):
            for mine in self.own:
                if mine.length < length and mine.contains(family, network, length):
                    points.append(self._event(
                        session, EVENT_MORE_SPECIFIC, now, prefix=text, attrs=new,
                        detail=f"more-specific of our {mine.text} originated by "
                               f"AS{new.origin_as}"))
                    break
        watchers = self._watch_by_ancestor[family].get(key)
        if watchers:
            points.extend(self._recheck_watches(session, now, watchers))
        return points

    def _recheck_watches(self, session: Session, now: float,
                         indexes: list[int] | None = None) -> list[Point]:
        points: list[Point] = []
        for index in indexes if indexes is not None else range(len(self.watch)):
            watch = self.watch[index]
            best = session.rib.table(watch.family).lookup(watch.network, watch.length)
            before = session.watch_best.get(index)
            session.watch_best[index] = best
            if _same_path(before, best):
                continue
            was = f"{format_prefix(watch.family, before[0])} [{before[1].as_path}]" \
                if before else "no route"
            now_text = f"{format_prefix(watch.family, best[0])} [{best[1].as_path}]" \
                if best else "no route"
            points.append(self._event(session, EVENT_PATH_CHANGE, now, prefix=watch.text,
                                      attrs=best[1] if best else None,
                                      detail=f"{was} -> {now_text}"))
        return points

    # ------------------------------------------------------------ operator commands

    def command_for(self, action: str, carrier: str, prefix_text: str) -> tuple[str, list[Point]]:
        """`bgp.withdraw` / `bgp.announce` of one of ours toward one carrier.

        Returns the ExaBGP API command to send (its ack is matched in order) and events.
        Raises ValueError for an unknown carrier or a prefix that is not ours.
        """
        session = self.sessions.get(carrier)
        if session is None:
            raise ValueError(f"unknown carrier {carrier!r}")
        prefix = Prefix.parse(prefix_text)
        if prefix not in self.own:
            raise ValueError(f"{prefix.text} is not in bgp.announce")
        now = self.clock()
        points: list[Point] = []
        if action == "withdraw":
            session.withdrawn_by_operator.add(prefix.text)
            command = f"neighbor {session.peer} withdraw route {prefix.text} next-hop self"
            if session.up:
                points.append(self._event(session, EVENT_OWN_MISSING, now, prefix=prefix.text,
                                          detail=session.announceable(prefix)))
        elif action == "announce":
            session.withdrawn_by_operator.discard(prefix.text)
            session.refused.discard(prefix.text)
            command = f"neighbor {session.peer} announce route {prefix.text} next-hop self"
        else:
            raise ValueError(f"unknown action {action!r}")
        self.pending.append((action, carrier, prefix.text))
        return command, points

    def _ack(self, ok: bool) -> list[Point]:
        self.stats.acks += 1
        if not self.pending:
            return []
        action, carrier, prefix = self.pending.popleft()
        if ok:
            return []
        self.stats.ack_errors += 1
        session = self.sessions[carrier]
        if action == "announce":
            session.refused.add(prefix)
            if session.up:
                return [self._event(session, EVENT_OWN_MISSING, self.clock(), prefix=prefix,
                                    detail="ExaBGP refused to announce it")]
        return []

    # ------------------------------------------------------------ output

    def _event(self, session: Session, kind: str, now: float, prefix: str = "",
               attrs: Attrs | None = None, detail: str = "") -> Point:
        fields: dict[str, FieldValue] = {
            "prefix": prefix,
            "as_path": attrs.as_path if attrs else "",
            "origin_as": attrs.origin_as if attrs else 0,
            "detail": detail,
        }
        self.events.append({"time": now, "carrier": session.carrier, "kind": kind, **fields})
        return Point("bgp_event", {"carrier": session.carrier, "kind": kind}, fields,
                     int(now * 1e9))

    def session_points(self) -> list[Point]:
        now = self.clock()
        points = []
        for session in self.sessions.values():
            fields: dict[str, FieldValue] = {
                "state": session.state,
                "up": session.up,
                "uptime_s": round(now - session.up_since_s, 3) if session.up else 0.0,
                "flaps": session.flaps,
                "prefixes_v4": len(session.rib.v4),
                "prefixes_v6": len(session.rib.v6),
                "updates": session.updates,
                "withdrawals": session.withdrawals,
            }
            for family, name in ((V4, "converge_v4_s"), (V6, "converge_v6_s")):
                if family in session.converge_s:
                    fields[name] = round(session.converge_s[family], 3)
            if self.rov is not None:
                fields.update(self.rov.session_fields(session.carrier))
            points.append(Point("bgp_session", {"carrier": session.carrier,
                                                "peer": session.peer,
                                                "peer_as": str(session.peer_as)}, fields))
        return points

    def prefix_points(self) -> list[Point]:
        points = []
        for session in self.sessions.values():
            for prefix in self.own:
                attrs = session.rib.table(prefix.family).routes.get(prefix.key)
                fields: dict[str, FieldValue] = {
                    "visible": attrs is not None,
                    "announced": session.up and not session.announceable(prefix),
                    "origin_as": attrs.origin_as if attrs else 0,
                    "as_path": attrs.as_path if attrs else "",
                    "as_path_len": attrs.path_len if attrs else 0,
                    "next_hop": attrs.next_hop if attrs else "",
                }
                if self.rov is not None:
                    fields.update(self.rov.prefix_fields(prefix.text))
                points.append(Point("bgp_prefix", {"carrier": session.carrier,
                                                   "prefix": prefix.text}, fields))
        return points

    def lookup(self, address_text: str) -> dict[str, Any]:
        """Per carrier: the longest-prefix route for an address (traceroute annotation)."""
        family, address = parse_address(address_text)
        result: dict[str, Any] = {}
        for session in self.sessions.values():
            found = session.rib.table(family).lookup(address)
            if found is None:
                result[session.carrier] = None
                continue
            key, attrs = found
            result[session.carrier] = route_dict(family, key, attrs)
        return result

    def status(self) -> dict[str, Any]:
        now = self.clock()
        sessions = []
        for session in self.sessions.values():
            sessions.append({
                "carrier": session.carrier,
                "peer": session.peer,
                "peer_as": session.peer_as,
                "state": session.state,
                "up": session.up,
                "uptime_s": round(now - session.up_since_s, 1) if session.up else 0.0,
                "flaps": session.flaps,
                "prefixes_v4": len(session.rib.v4),
                "prefixes_v6": len(session.rib.v6),
                "updates": session.updates,
                "withdrawals": session.withdrawals,
                "converge_s": {("v4" if f == V4 else "v6"): round(s, 3)
                               for f, s in session.converge_s.items()},
                "last_reason": session.last_reason,
                "withdrawn_by_operator": sorted(session.withdrawn_by_operator),
            })
        return {
            "exabgp_version": self.exabgp_version,
            "sessions": sessions,
            "attribute_sets": len(self.interner),
            "reader": self.stats.as_dict(),
            "last_events": list(self.events),
        }


def route_dict(family: int, key: int, attrs: Attrs) -> dict[str, Any]:
    return {
        "prefix": format_prefix(family, key),
        "origin_as": attrs.origin_as,
        "as_path": attrs.as_path,
        "next_hop": attrs.next_hop,
        "communities": attrs.communities,
        "large_communities": attrs.large_communities,
        "med": attrs.med if attrs.med >= 0 else None,
        "local_pref": attrs.local_pref if attrs.local_pref >= 0 else None,
    }


def _same_path(a: tuple[int, Attrs] | None, b: tuple[int, Attrs] | None) -> bool:
    if a is None or b is None:
        return a is b
    return a[0] == b[0] and a[1].as_path == b[1].as_path
