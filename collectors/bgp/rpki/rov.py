"""RFC 6811 route origin validation: a compact VRP index and the validation itself. Pure.

A VRP (validated ROA payload) is (prefix, maxLength, origin AS). A route (prefix P, origin
AS O) is *covered* by a VRP whose prefix contains P (VRP length <= P's length); it is
*valid* if a covering VRP has AS O (O not 0: AS0 and a path ending in an AS_SET match
nothing) and P's length <= its maxLength, *invalid* if covered but no VRP matches, and
*not found* if nothing covers it.

Shape, chosen for memory and for the speed of validating every route of three full
tables: per family and prefix length one dict from the VRP's network (an int) to its
payload, `asn << 8 | maxLength` as one int, or a sorted tuple of such ints when a prefix
has several VRPs (one dict per length: the dicts of short lengths are small and stay in
the CPU's cache, where one big dict costs a cache miss per probe). Finding the VRPs
covering a route probes the dict of each VRP prefix length that can cover it, longest
first. Which lengths can is kept per bucket (the route's first 16 bits for IPv4, 32 for
IPv6) as a bit mask of lengths: a VRP longer than the bucket sets its length's bit in its
own bucket (a withdrawal leaves the bit: a wasted probe, until the masks are rebuilt once
such bits pile up), one as long or shorter sets it in every bucket it covers (up to
65,536 of them, cleared exactly; shorter still is probed for every route). A typical
route then costs one bucket lookup and a few dict probes. Equal payloads of a full load
are one object. Memory per VRP: bench/bgp.py.

One file (~420 lines): FamilyIndex is most of it, and its counting loops are written out
inline, each in one function, for speed (a full re-validation is ~1.7 M routes).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

try:  # the C loop of count_memo for IPv4 (collectors/bgp/rpki/_rov.c): same answers
    from collectors.bgp.rpki import _rov  # type: ignore[attr-defined]
except ImportError:  # not built (no compiler): the Python loop below
    _rov = None
if os.environ.get("EGRESS_AGENT_PURE_PYTHON"):
    _rov = None

NOT_FOUND = 0
VALID = 1
INVALID = 2
STATE_NAMES = ("not_found", "valid", "invalid")

_MAX_EXPAND_BITS = 16  # a short VRP is spread over at most 2**16 buckets


class FamilyIndex:
    """The VRPs of one address family."""

    __slots__ = ("_global_mask", "_payloads", "_probe_cache", "_stale_bits", "bits",
                 "bucket_bits", "buckets", "by_length", "count", "length_counts")

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.bucket_bits = 16 if bits == 32 else 32
        # by_length[n]: network of a VRP prefix of length n → payload(s)
        self.by_length: list[dict[int, int | tuple[int, ...]]] = [{} for _ in range(bits + 1)]
        self.count = 0  # VRPs (a prefix with two ASes counts two)
        self.length_counts = [0] * (bits + 1)  # VRP prefixes per length
        self.buckets: dict[int, int] = {}  # bucket → bit mask of lengths that may cover
        # a long prefix withdrawn leaves its length's bit in its bucket (another prefix of
        # that length may still be there): a wasted probe, never a wrong answer; the
        # masks are rebuilt once these pile up
        self._stale_bits = 0
        self._payloads: dict[int, int] | None = None  # shares equal payloads while loading
        self._global_mask = 0  # lengths too short to spread: probed for every route
        self._probe_cache: dict[int, tuple[tuple[int, int, Any], ...]] = {}

    def __len__(self) -> int:
        return self.count

    # ---------------------------------------------------------------- changes

    def add(self, network: int, length: int, max_length: int, asn: int) -> bool:
        """Add one VRP; False when it is already there (nothing changes)."""
        key = network
        payload = (asn << 8) | max_length
        if self._payloads is not None:
            payload = self._payloads.setdefault(payload, payload)
        vrps = self.by_length[length]
        old = vrps.get(key)
        if old is None:
            vrps[key] = payload
            self._prefix_added(network, length)
        elif type(old) is int:
            if old == payload:
                return False
            vrps[key] = (old, payload) if old < payload else (payload, old)
        else:
            assert isinstance(old, tuple)
            if payload in old:
                return False
            vrps[key] = tuple(sorted((*old, payload)))
        self.count += 1
        return True

    def remove(self, network: int, length: int, max_length: int, asn: int) -> bool:
        """Remove one VRP; False when it is not there."""
        key = network
        payload = (asn << 8) | max_length
        vrps = self.by_length[length]
        old = vrps.get(key)
        if old is None:
            return False
        if type(old) is int:
            if old != payload:
                return False
            del vrps[key]
            self._prefix_removed(network, length)
        else:
            assert isinstance(old, tuple)
            if payload not in old:
                return False
            rest = tuple(p for p in old if p != payload)
            vrps[key] = rest[0] if len(rest) == 1 else rest
        self.count -= 1
        if not self.count and self._stale_bits:
            self.rebuild_buckets()
        return True

    def _span(self, network: int, length: int) -> tuple[int, int]:
        """First bucket and how many a prefix of `length` <= bucket_bits covers."""
        return network >> (self.bits - self.bucket_bits), 1 << (self.bucket_bits - length)

    def _prefix_added(self, network: int, length: int) -> None:
        self.length_counts[length] += 1
        bit = 1 << length
        buckets = self.buckets
        if length > self.bucket_bits:
            bucket = network >> (self.bits - self.bucket_bits)
            buckets[bucket] = buckets.get(bucket, 0) | bit
        elif self.bucket_bits - length <= _MAX_EXPAND_BITS:
            first, n = self._span(network, length)
            get = buckets.get
            for bucket in range(first, first + n):
                buckets[bucket] = get(bucket, 0) | bit
        else:
            if self.length_counts[length] == 1:
                self._global_mask |= bit
                self._probe_cache.clear()

    def _prefix_removed(self, network: int, length: int) -> None:
        self.length_counts[length] -= 1
        clear = ~(1 << length)
        buckets = self.buckets
        if length > self.bucket_bits:
            self._stale_bits += 1
            if self._stale_bits > max(1000, sum(self.length_counts) // 10):
                self.rebuild_buckets()
            return
        if self.bucket_bits - length <= _MAX_EXPAND_BITS:
            # prefixes of one length are disjoint: no other one of it shares these buckets
            first, n = self._span(network, length)
            for bucket in range(first, first + n):
                mask = buckets[bucket] & clear
                if mask:
                    buckets[bucket] = mask
                else:
                    del buckets[bucket]
        elif not self.length_counts[length]:
            self._global_mask &= clear
            self._probe_cache.clear()

    def rebuild_buckets(self) -> None:
        """The bucket masks from the prefixes held (drops the bits of withdrawn ones)."""
        self.buckets = {}
        self._stale_bits = 0
        self._global_mask = 0
        self._probe_cache.clear()
        counts = self.length_counts
        self.length_counts = [0] * (self.bits + 1)
        for length, vrps in enumerate(self.by_length):
            for network in vrps:
                self._prefix_added(network, length)
        assert self.length_counts == counts

    def start_bulk(self) -> None:
        """Equal payloads added from now on are one object (a full load: about 85 % of
        the payloads repeat), until end_bulk()."""
        self._payloads = {}

    def end_bulk(self) -> None:
        self._payloads = None

    def _probes(self, mask_length: int) -> tuple[tuple[int, int, Any], ...]:
        """(length, netmask, that length's dict.get) for each bit of `mask | global` up
        to the route's length, longest first: a route with a VRP of its own prefix (most
        valid ones) is decided by the first probe. Cached by `mask << 8 | route length`."""
        probes = self._probe_cache.get(mask_length)
        if probes is None:
            full = (mask_length >> 8) | self._global_mask
            route_length = mask_length & 0xFF
            bits = self.bits
            all_ones = (1 << bits) - 1
            probes = tuple((n, (all_ones >> (bits - n)) << (bits - n) if n else 0,
                            self.by_length[n].get)
                           for n in range(route_length, -1, -1) if full >> n & 1)
            if len(self._probe_cache) > 200_000:
                self._probe_cache.clear()
            self._probe_cache[mask_length] = probes
        return probes

    # ---------------------------------------------------------------- queries

    def covering(self, network: int, length: int) -> Iterator[tuple[int, int, int, int]]:
        """Every VRP covering a prefix: (network, length, max_length, asn)."""
        shift = self.bits - self.bucket_bits
        for n, netmask, get in reversed(self._probes(
                (self.buckets.get(network >> shift, 0) << 8) | length)):
            payload = get(network & netmask)
            if payload is None:
                continue
            for p in (payload,) if type(payload) is int else payload:
                yield network & netmask, n, p & 0xFF, p >> 8

    def validate(self, network: int, length: int, origin: int) -> int:
        """VALID, INVALID or NOT_FOUND for one route (origin 0: no origin AS)."""
        shift = self.bits - self.bucket_bits
        mask_length = (self.buckets.get(network >> shift, 0) << 8) | length
        probes = self._probe_cache.get(mask_length) or self._probes(mask_length)
        covered = False
        for _n, netmask, get in probes:
            payload = get(network & netmask)
            if payload is None:
                continue
            covered = True
            if origin:
                if type(payload) is int:
                    if payload >> 8 == origin and length <= payload & 0xFF:
                        return VALID
                else:
                    for p in payload:
                        if p >> 8 == origin and length <= p & 0xFF:
                            return VALID
        return INVALID if covered else NOT_FOUND

    def count_routes(self, items: Iterable[tuple[int, Any]]) -> list[int]:
        """[not_found, valid, invalid] over (key, attrs with .origin_as) pairs: the whole
        table's re-validation, with validate() inlined (it is the hot loop)."""
        counts = [0, 0, 0]
        shift = self.bits - self.bucket_bits
        buckets_get = self.buckets.get
        cache_get = self._probe_cache.get
        probes_of = self._probes
        for key, attrs in items:
            network = key >> 8
            mask_length = (buckets_get(network >> shift, 0) << 8) | (key & 0xFF)
            probes = cache_get(mask_length) or probes_of(mask_length)
            origin = attrs.origin_as
            length = key & 0xFF
            state = NOT_FOUND
            for _n, netmask, get in probes:
                payload = get(network & netmask)
                if payload is None:
                    continue
                state = INVALID
                if origin:
                    if type(payload) is int:
                        if payload >> 8 == origin and length <= payload & 0xFF:
                            state = VALID
                            break
                    elif any(p >> 8 == origin and length <= p & 0xFF
                             for p in payload):
                        state = VALID
                        break
            counts[state] += 1
        return counts

    def count_keys(self, keys: Iterable[int], origin: int) -> list[int]:
        """[not_found, valid, invalid] of routes `keys` that share one origin AS (one
        UPDATE's prefixes)."""
        counts = [0, 0, 0]
        shift = self.bits - self.bucket_bits
        buckets_get = self.buckets.get
        cache_get = self._probe_cache.get
        probes_of = self._probes
        for key in keys:
            network = key >> 8
            mask_length = (buckets_get(network >> shift, 0) << 8) | (key & 0xFF)
            probes = cache_get(mask_length) or probes_of(mask_length)
            length = key & 0xFF
            state = NOT_FOUND
            for _n, netmask, get in probes:
                payload = get(network & netmask)
                if payload is None:
                    continue
                state = INVALID
                if origin:
                    if type(payload) is int:
                        if payload >> 8 == origin and length <= payload & 0xFF:
                            state = VALID
                            break
                    elif any(p >> 8 == origin and length <= p & 0xFF
                             for p in payload):
                        state = VALID
                        break
            counts[state] += 1
        return counts

    def count_memo(self, items: Iterable[Any], memo: dict[int, int],
                   origin: int = -1, lookup: bool = True) -> list[int]:
        """[not_found, valid, invalid] of routes, through a memo of answers per route key
        (`origin << 2 | state`; `lookup` False when the memo is known to hold none of
        them: only written): items are (key, attrs
        with .origin_as) pairs, or keys that all have `origin` when it is given. The
        validation is inlined: this is the loop of every UPDATE and of a re-validation."""
        if _rov is not None and self.bits == 32:
            return _rov.count(items, memo, origin, lookup,  # type: ignore[no-any-return]
                              self.by_length, self.buckets, self.bits - self.bucket_bits,
                              self._probe_cache, self._probes)
        return self.count_memo_python(items, memo, origin, lookup)

    def count_memo_python(self, items: Iterable[Any], memo: dict[int, int],
                          origin: int = -1, lookup: bool = True) -> list[int]:
        """count_memo() in Python: the reference, the fallback, and IPv6."""
        counts = [0, 0, 0]
        shift = self.bits - self.bucket_bits
        buckets_get = self.buckets.get
        cache_get = self._probe_cache.get
        probes_of = self._probes
        memo_get = memo.get
        fixed = origin >= 0
        for item in items:
            if fixed:
                key = item
            else:
                key, attrs = item
                origin = attrs.origin_as
            if lookup:
                known = memo_get(key)
                if known is not None and known >> 2 == origin:
                    counts[known & 3] += 1
                    continue
            network = key >> 8
            length = key & 0xFF
            mask_length = (buckets_get(network >> shift, 0) << 8) | length
            state = NOT_FOUND
            for _n, netmask, get in cache_get(mask_length) or probes_of(mask_length):
                payload = get(network & netmask)
                if payload is None:
                    continue
                state = INVALID
                if origin:
                    if type(payload) is int:
                        if payload >> 8 == origin and length <= payload & 0xFF:
                            state = VALID
                            break
                    elif any(p >> 8 == origin and length <= p & 0xFF
                             for p in payload):
                        state = VALID
                        break
            counts[state] += 1
            memo[key] = (origin << 2) | state
        return counts

    def touched_buckets(self, prefixes: Iterable[tuple[int, int]]) -> set[int] | None:
        """The buckets whose routes a change of VRPs at these (network, length) prefixes
        can affect; None when one is too short to spread (every route may be)."""
        touched: set[int] = set()
        shift = self.bits - self.bucket_bits
        for network, length in prefixes:
            if length > self.bucket_bits:
                touched.add(network >> shift)
            elif self.bucket_bits - length <= _MAX_EXPAND_BITS:
                first, n = self._span(network, length)
                touched.update(range(first, first + n))
            else:
                return None
        return touched

    def differences(self, other: FamilyIndex) -> set[int] | None:
        """touched_buckets() of every VRP prefix whose VRPs differ between the two
        indexes (the comparison runs in C: dict item views)."""
        changed: list[tuple[int, int]] = []
        for length, (mine, theirs) in enumerate(zip(self.by_length, other.by_length,
                                                    strict=True)):
            if mine is theirs or mine == theirs:
                continue
            changed.extend((network, length) for network in
                           {network for network, _ in mine.items() ^ theirs.items()})
        return self.touched_buckets(changed)

    def select(self, table: dict[int, Any], buckets: set[int], pairs: bool = True) -> list[Any]:
        """The (key, value) pairs (or keys) of a dict keyed by route keys whose bucket is
        in `buckets`: the routes a change of VRPs there may affect."""
        kshift = 8 + self.bits - self.bucket_bits
        if _rov is not None and self.bits == 32:
            return _rov.select(  # type: ignore[no-any-return]
                table, kshift, buckets, pairs)
        if pairs:
            return [(k, v) for k, v in table.items() if k >> kshift in buckets]
        return [k for k in table if k >> kshift in buckets]

    def items(self) -> Iterator[tuple[int, int, int, int]]:
        """Every VRP: (network, length, max_length, asn)."""
        for length, vrps in enumerate(self.by_length):
            for network, payload in vrps.items():
                for p in (payload,) if type(payload) is int else payload:  # type: ignore
                    yield network, length, p & 0xFF, p >> 8


class VrpIndex:
    """Both families; `serial` says which version of the set this is."""

    __slots__ = ("serial", "v4", "v6")

    def __init__(self) -> None:
        self.v4 = FamilyIndex(32)
        self.v6 = FamilyIndex(128)
        self.serial = 0

    def family(self, family: int) -> FamilyIndex:
        return self.v4 if family == 4 else self.v6

    def start_bulk(self) -> None:
        self.v4.start_bulk()
        self.v6.start_bulk()

    def end_bulk(self) -> None:
        self.v4.end_bulk()
        self.v6.end_bulk()

    def __len__(self) -> int:
        return self.v4.count + self.v6.count
