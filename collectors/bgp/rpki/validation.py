"""What RPKI says about the routes each carrier sends and about our own announcements.

BgpState calls the hooks here as routes come and go (its hot path hands over whole
UPDATEs: the keys of one UPDATE share one origin AS), so the per-carrier counts of valid,
invalid and not-found routes are always current without keeping a state per route: a
route's state is a function of (prefix, origin, VRP set), so the state to take off when a
route goes is computed again. Carriers mostly send the same prefixes with the same
origins, so the answer is remembered per prefix (`origin << 2 | state`, one dict per
family keyed by the RIB's own key objects): the second and third
carrier cost one dict probe per route instead of a validation. The memo is emptied with
each new VRP set. When the VRP set changes every route of every carrier is validated
again (`revalidate`), and our own prefixes (origin `bgp.local_as`) with them.
Pure: no I/O; events are `bgp_event` points without a `carrier` tag (they concern what
every carrier's customers see alike).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from agent.points import FieldValue, Point
from collectors.bgp.metrics import (
    EVENT_RPKI_OWN_INVALID,
    EVENT_RPKI_OWN_NOT_FOUND,
    EVENT_RPKI_OWN_VALID,
    EVENT_RPKI_ROA_EXPIRING,
    EVENT_RPKI_STALE,
)
from collectors.bgp.rib import V4, V6, format_prefix
from collectors.bgp.rpki.rov import INVALID, NOT_FOUND, STATE_NAMES, VALID, VrpIndex
from collectors.bgp.rpki.vrp import ExpiryKey

EXPIRY_WARNING_S = 24 * 3600.0

# Answers remembered per family at most (about 60 bytes each); the memo is emptied past it.
MEMO_MAX = 2_000_000

# Past this share of the routes, two validations per affected route (before and after)
# plus the scans cost more than validating everything once (bench/bgp.py: 0.05 % of
# 600k VRPs changed touched 2.5 % of the routes, 0.8 s; 1 % touched 36 %, where a full
# re-validation, 3.3 s on a loaded machine, is cheaper).
INCREMENTAL_MAX_SHARE = 0.25

# one applied RTR change: (announce, family, network, length, max_length, asn)
Change = tuple[bool, int, int, int, int, int]


def _undo(index: VrpIndex, changes: list[Change]) -> None:
    """Take applied changes back, last first (to see the set as it was)."""
    for announce, family, network, length, max_length, asn in reversed(changes):
        table = index.family(family)
        if announce:
            table.remove(network, length, max_length, asn)
        else:
            table.add(network, length, max_length, asn)


def _redo(index: VrpIndex, changes: list[Change]) -> None:
    for announce, family, network, length, max_length, asn in changes:
        table = index.family(family)
        if announce:
            table.add(network, length, max_length, asn)
        else:
            table.remove(network, length, max_length, asn)


class _Prefix(Protocol):
    @property
    def text(self) -> str: ...
    @property
    def family(self) -> int: ...
    @property
    def network(self) -> int: ...
    @property
    def length(self) -> int: ...


class _Session(Protocol):
    carrier: str
    rib: Any


class RovState:
    def __init__(self, local_as: int, clock: Callable[[], float] = time.time) -> None:
        self.local_as = local_as
        self.clock = clock
        self.index: VrpIndex | None = None
        self.expires: dict[ExpiryKey, int] = {}
        self.source = ""  # name of the source whose set is in force
        self.stale = False
        # carrier → [not_found, valid, invalid] for IPv4, then the same for IPv6
        self.counts: dict[str, list[int]] = {}
        self.own: Sequence[_Prefix] = []
        self.own_state: dict[str, int] = {}
        self.own_expiry: dict[str, int | None] = {}
        self._warned_expiry: set[tuple[str, int]] = set()
        self._memo: dict[int, dict[int, int]] = {V4: {}, V6: {}}
        self.revalidations = 0
        self.last_revalidation_s = 0.0
        self.last_revalidated_routes = 0
        self.events: deque[dict[str, Any]] = deque(maxlen=20)

    # ---------------------------------------------------------------- hooks (hot)

    def announced(self, carrier: str, family: int, keys: list[int], origin: int) -> None:
        if self.index is None:
            return
        memo = self._memo[family]
        if len(memo) > MEMO_MAX:  # prefixes long gone pile up between VRP changes
            memo.clear()
        got = self.index.family(family).count_memo(keys, memo, origin)
        counts = self.counts.setdefault(carrier, [0] * 6)
        base = 0 if family == V4 else 3
        counts[base] += got[0]
        counts[base + 1] += got[1]
        counts[base + 2] += got[2]

    def removed(self, carrier: str, family: int, pairs: list[tuple[int, int]]) -> None:
        """Routes gone (withdrawn, or replaced by one with another origin): (key, origin)."""
        if self.index is None:
            return
        validate = self.index.family(family).validate
        memo_get = self._memo[family].get
        counts = self.counts.setdefault(carrier, [0] * 6)
        base = 0 if family == V4 else 3
        for key, origin in pairs:
            known = memo_get(key)
            if known is not None and known >> 2 == origin:
                counts[base + (known & 3)] -= 1
            else:
                counts[base + validate(key >> 8, key & 0xFF, origin)] -= 1

    def dropped(self, carrier: str) -> None:
        """The carrier's routes are all gone (session down)."""
        self.counts[carrier] = [0] * 6

    def sessions_changed(self, carriers: set[str], fresh: set[str]) -> None:
        """Reload: `fresh` sessions start empty, carriers no longer configured go."""
        self.counts = {c: ([0] * 6 if c in fresh else counts)
                       for c, counts in self.counts.items() if c in carriers}

    # ---------------------------------------------------------------- VRP changes

    def set_vrps(self, index: VrpIndex | None, expires: dict[ExpiryKey, int], source: str,
                 sessions: Iterable[_Session], own: Sequence[_Prefix],
                 changes: list[Change] | None = None) -> list[Point]:
        """A new (or changed) VRP set: the counts brought up to date, our prefixes too.

        Only routes that a changed VRP can cover are validated again (incremental()):
        the changed VRPs come from comparing the old and the new index, or, for an index
        changed in place (RTR), from `changes` (what was applied, in order). When that
        cannot be told, or touches most routes, every route is validated again."""
        sessions = list(sessions)
        old = self.index
        self.expires = expires
        self.source = source
        done = False
        if old is not None and index is not None and (index is not old or changes is not None):
            done = self.incremental(sessions, index, old if index is not old else None,
                                    changes)
        self.index = index
        if not done:
            self.revalidate(sessions)
        return self.check_own(own)

    def incremental(self, sessions: list[_Session], new: VrpIndex, old: VrpIndex | None,
                    changes: list[Change] | None) -> bool:
        """Counts moved by the routes in buckets a VRP change touches; False (nothing
        done) when a change is too short to place or touches more than
        INCREMENTAL_MAX_SHARE of the routes."""
        started = time.perf_counter()
        dirty: dict[int, set[int]] = {}
        for family in (V4, V6):
            table = new.family(family)
            if old is not None:
                touched = table.differences(old.family(family))
            else:
                assert changes is not None
                touched = table.touched_buckets((c[2], c[3]) for c in changes
                                                if c[1] == family)
            if touched is None:
                return False
            dirty[family] = touched
        affected: list[tuple[str, int, list[tuple[int, Any]]]] = []
        total = count = 0
        for session in sessions:
            for family, table in ((V4, session.rib.v4), (V6, session.rib.v6)):
                routes = table.routes
                total += len(routes)
                buckets = dirty[family]
                if not buckets or not routes:
                    continue
                items = new.family(family).select(routes, buckets)
                count += len(items)
                affected.append((session.carrier, family, items))
        if count > total * INCREMENTAL_MAX_SHARE:
            return False
        for family in (V4, V6):  # answers the change may have made wrong: forgotten (a
            if dirty[family]:      # scan of the memo would cost more than answering again)
                self._memo[family] = {}
        if old is None:
            _undo(new, changes or [])
        before = self._states(old or new, affected, {V4: {}, V6: {}})
        if old is None:
            _redo(new, changes or [])
        after = self._states(new, affected, self._memo)
        for (carrier, family, _), was, now in zip(affected, before, after, strict=True):
            counts = self.counts.setdefault(carrier, [0] * 6)
            base = 0 if family == V4 else 3
            for state in (0, 1, 2):
                counts[base + state] += now[state] - was[state]
        self.revalidations += 1
        self.last_revalidation_s = time.perf_counter() - started
        self.last_revalidated_routes = count
        return True

    @staticmethod
    def _states(index: VrpIndex, affected: list[tuple[str, int, list[tuple[int, Any]]]],
                memo: dict[int, dict[int, int]]) -> list[list[int]]:
        return [index.family(family).count_memo(items, memo[family])
                for _, family, items in affected]

    def revalidate(self, sessions: Iterable[_Session]) -> None:
        """Every route of every carrier validated again, from scratch."""
        started = time.perf_counter()
        self.counts = {}
        self._memo = {V4: {}, V6: {}}
        index = self.index
        count = 0
        for session in sessions:
            if index is None:
                continue
            # the first carrier's keys are all new to the empty memo: no lookups
            v4 = self._count_table(V4, session.rib.v4.routes, lookup=count > 0)
            v6 = self._count_table(V6, session.rib.v6.routes, lookup=count > 0)
            self.counts[session.carrier] = v4 + v6
            count += len(session.rib.v4.routes) + len(session.rib.v6.routes)
        self.revalidations += 1
        self.last_revalidation_s = time.perf_counter() - started
        self.last_revalidated_routes = count

    def _count_table(self, family: int, routes: dict[int, Any], lookup: bool) -> list[int]:
        """[not_found, valid, invalid] of one carrier's table, through the memo."""
        assert self.index is not None
        return self.index.family(family).count_memo(routes.items(), self._memo[family],
                                                    lookup=lookup)

    def check_own(self, own: Sequence[_Prefix]) -> list[Point]:
        """States and ROA expiries of our prefixes; events for what changed."""
        self.own = own
        now = self.clock()
        points: list[Point] = []
        index = self.index
        if index is None:
            return points
        for prefix in own:
            table = index.family(prefix.family)
            state = table.validate(prefix.network, prefix.length, self.local_as)
            covering = list(table.covering(prefix.network, prefix.length))
            expiry: int | None = None
            for network, length, max_length, asn in covering:
                if asn == self.local_as and prefix.length <= max_length:
                    got = self.expires.get((prefix.family, network, length, max_length, asn))
                    if got is not None and (expiry is None or got > expiry):
                        expiry = got
            self.own_expiry[prefix.text] = expiry
            before = self.own_state.get(prefix.text)
            self.own_state[prefix.text] = state
            text = ", ".join(f"{format_prefix(prefix.family, (n << 8) | ln)}-{m} AS{a}"
                             for n, ln, m, a in covering[:5])
            if state != before:
                if state == INVALID:
                    points.append(self._event(EVENT_RPKI_OWN_INVALID, now, prefix.text,
                                              f"a validating network drops our announcement "
                                              f"(origin AS{self.local_as}): covered by {text}"))
                elif state == NOT_FOUND:
                    points.append(self._event(EVENT_RPKI_OWN_NOT_FOUND, now, prefix.text,
                                              "no ROA covers our prefix"))
                elif before is not None:
                    points.append(self._event(EVENT_RPKI_OWN_VALID, now, prefix.text,
                                              f"valid again: {text}"))
            if state == VALID and expiry is not None and expiry - now < EXPIRY_WARNING_S \
                    and (prefix.text, expiry) not in self._warned_expiry:
                self._warned_expiry.add((prefix.text, expiry))
                left_h = (expiry - now) / 3600
                points.append(self._event(
                    EVENT_RPKI_ROA_EXPIRING, now, prefix.text,
                    f"the ROA that makes it valid expires at "
                    f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(expiry))} "
                    f"({left_h:.1f} h)"))
        return points

    def stale_event(self, source: str, detail: str) -> Point:
        return self._event(EVENT_RPKI_STALE, self.clock(), "", f"{source}: {detail}")

    def _event(self, kind: str, now: float, prefix: str, detail: str) -> Point:
        fields: dict[str, FieldValue] = {
            "prefix": prefix, "as_path": "", "origin_as": self.local_as if prefix else 0,
            "detail": detail,
        }
        self.events.append({"time": now, "kind": kind, **fields})
        return Point("bgp_event", {"kind": kind}, fields, int(now * 1e9))

    # ---------------------------------------------------------------- output

    def session_fields(self, carrier: str) -> dict[str, FieldValue]:
        """rpki_* fields of one carrier's bgp_session point (none before a VRP set)."""
        if self.index is None:
            return {}
        c = self.counts.get(carrier, [0] * 6)
        return {
            "rpki_valid": c[1] + c[4], "rpki_invalid": c[2] + c[5],
            "rpki_not_found": c[0] + c[3],
            "rpki_valid_v4": c[1], "rpki_invalid_v4": c[2], "rpki_not_found_v4": c[0],
            "rpki_valid_v6": c[4], "rpki_invalid_v6": c[5], "rpki_not_found_v6": c[3],
        }

    def prefix_fields(self, prefix_text: str) -> dict[str, FieldValue]:
        """`rpki` (and `rpki_expires`) of one of our prefixes."""
        state = self.own_state.get(prefix_text)
        if self.index is None or state is None:
            return {}
        fields: dict[str, FieldValue] = {"rpki": STATE_NAMES[state]}
        expiry = self.own_expiry.get(prefix_text)
        if expiry is not None:
            fields["rpki_expires"] = expiry
        return fields

    def status(self) -> dict[str, Any]:
        return {
            "source_in_force": self.source,
            "vrps": len(self.index) if self.index is not None else 0,
            "vrps_v4": len(self.index.v4) if self.index is not None else 0,
            "vrps_v6": len(self.index.v6) if self.index is not None else 0,
            "serial": self.index.serial if self.index is not None else None,
            "stale": self.stale,
            "carriers": {carrier: {"valid": c[1] + c[4], "invalid": c[2] + c[5],
                                   "not_found": c[0] + c[3]}
                         for carrier, c in self.counts.items()},
            "own": {text: {"state": STATE_NAMES[s], "roa_expires": self.own_expiry.get(text)}
                    for text, s in self.own_state.items()},
            "revalidations": self.revalidations,
            "last_revalidation_ms": round(self.last_revalidation_s * 1000, 1),
            "last_revalidated_routes": self.last_revalidated_routes,
            "last_events": list(self.events),
        }
