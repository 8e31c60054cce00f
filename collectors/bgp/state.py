"""BGP state of the agent: sessions, per-carrier RIBs, our prefixes, watched destinations.

Pure: lines (or parsed messages) and a clock in, `bgp_event` points out. No I/O, so every
detector is tested without ExaBGP; the supervisor feeds it from the bridge.

Hot path: each announced or withdrawn prefix costs one parse, one dict write and one or
two set probes ("does it touch one of ours or a watched destination?"); only prefixes that
do touch them reach the detectors. Our prefixes' more-specifics are found by probing the
prefix's leading bits against the shortest of our lengths (a hash LPM), never by scanning.

This module reads the stream, keeps the sessions' life cycle and applies UPDATEs (the hot
path). The rest lives beside it: prefixes.py (our prefixes, watched destinations and the
index of which routes touch them), session.py, detectors.py, events.py (`bgp_event`),
commands.py (`bgp.withdraw`/`bgp.announce`), points.py (`bgp_session`, `bgp_prefix`),
status.py (`status`, `bgp.lookup`), reader_stats.py. What stays (~430 lines) is the input
side: the stream, the sessions' life cycle and `_apply`, whose per-prefix loops inline the
parse and the index probe because they are the agent's hot path.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from agent.config import Config
from agent.points import Point
from collectors.bgp import points as bgp_points
from collectors.bgp import status as bgp_status
from collectors.bgp.commands import OperatorCommands
from collectors.bgp.detectors import Detectors
from collectors.bgp.events import EventLog
from collectors.bgp.metrics import EVENT_OWN_MISSING, EVENT_SESSION_DOWN, EVENT_SESSION_UP
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
from collectors.bgp.prefixes import Prefix, PrefixIndex
from collectors.bgp.reader_stats import ReaderStats
from collectors.bgp.rib import V4, V6, Interner
from collectors.bgp.rpki.validation import RovState
from collectors.bgp.session import Session

_MASKS4 = {n: ((1 << n) - 1) << (32 - n) for n in range(33)}
_MASKS6 = {n: ((1 << n) - 1) << (128 - n) for n in range(129)}
_PTON = {V4: (socket.AF_INET, _MASKS4), V6: (socket.AF_INET6, _MASKS6)}
inet_pton = socket.inet_pton
_NO_ATTRIBUTES: dict[str, Any] = {}


class BgpState:
    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.stats = ReaderStats()
        self.interner = Interner()
        self.sessions: dict[str, Session] = {}
        self.by_peer: dict[str, Session] = {}
        self.own: list[Prefix] = []
        self.watch: list[Prefix] = []
        self.log = EventLog()
        self.events = self.log.events
        self.commands = OperatorCommands(self.log, self.stats, clock)
        self.pending = self.commands.pending
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
                points.append(self.log.event(
                    old, EVENT_SESSION_DOWN, now,
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
        self.index = PrefixIndex(self.own, self.watch)
        self.detectors = Detectors(self.index, self.local_as, self.log)
        for session in sessions.values():
            if session.up:
                points.extend(self.detectors.recheck_watches(session, now))
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
            return self.commands.ack(self.sessions, message.ack_ok)
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
            points = [self.log.event(session, EVENT_SESSION_UP, now,
                                     detail=f"peer {session.peer}")]
            for prefix in self.own:
                why = session.announceable(prefix)
                if why:
                    points.append(self.log.event(session, EVENT_OWN_MISSING, now,
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
        points = [self.log.event(session, EVENT_SESSION_DOWN, now, detail=reason)]
        points.extend(self.detectors.recheck_watches(session, now))
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
        index = self.index
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
                interest = index.interest[family]
                shift = index.own_shift.get(family, -1)
                tops = index.own_tops[family]
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
                        points.extend(self.detectors.changed(session, family, network, length,
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
            interest = index.interest[family]
            shift = index.own_shift.get(family, -1)
            tops = index.own_tops[family]
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
                    points.extend(self.detectors.changed(session, family, network, length,
                                                old, None, now))
            session.withdrawals += count
            if rov_withdrawn:
                assert rov is not None
                rov.removed(session.carrier, family, rov_withdrawn)
        return points

    # ------------------------------------------------------------ operator commands

    def command_for(self, action: str, carrier: str, prefix_text: str) -> tuple[str, list[Point]]:
        """`bgp.withdraw` / `bgp.announce` (collectors/bgp/commands.py)."""
        return self.commands.command_for(self.sessions, self.own, action, carrier, prefix_text)

    # ------------------------------------------------------------ output

    def session_points(self) -> list[Point]:
        return bgp_points.session_points(self.sessions.values(), self.rov, self.clock())

    def prefix_points(self) -> list[Point]:
        return bgp_points.prefix_points(self.sessions.values(), self.own, self.rov)

    def lookup(self, address_text: str) -> dict[str, Any]:
        """Per carrier: the longest-prefix route for an address (traceroute annotation)."""
        return bgp_status.lookup(self.sessions.values(), address_text)

    def status(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "exabgp_version": self.exabgp_version,
            "sessions": [bgp_status.session_status(s, now) for s in self.sessions.values()],
            "attribute_sets": len(self.interner),
            "reader": self.stats.as_dict(),
            "last_events": list(self.events),
        }
