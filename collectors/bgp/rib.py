"""Per-carrier RIB: prefixes as integers, attribute sets interned, hash-based LPM.

Why this shape: a full table is ~600k routes per carrier and three carriers are held at
once, so a route must cost well under 150 bytes. A route is one dict slot keyed by one int
(`network << 8 | length`, per family) pointing at a shared, interned `Attrs` tuple; a real
table has about one attribute set per six prefixes. Longest-prefix match walks only the
prefix lengths present in that table (a hash probe per length, longest first), so an
address lookup costs a handful of dict probes with no trie to keep in memory.
"""

from __future__ import annotations

import socket
import sys
from array import array
from collections.abc import Iterator
from typing import NamedTuple

V4 = 4
V6 = 6
FAMILY_BITS = {V4: 32, V6: 128}


class Attrs(NamedTuple):
    """The attributes of a route; interned, so equal sets are one object."""

    as_path: str  # "4134 3356 64600"; an AS_SET is "{1,2}"
    origin_as: int  # last AS of the path; 0 when the path is empty or ends in a set
    path_len: int  # AS_SEQUENCE hops, a set counts one (RFC 4271 path length)
    next_hop: str
    communities: str  # "4134:100 4134:200", "" when none
    large_communities: str  # "4134:1:2", "" when none
    med: int  # -1 when absent
    local_pref: int  # -1 when absent
    origin: str  # igp | egp | incomplete


class Interner:
    """Shares equal attribute sets (and their strings) between routes and carriers.

    Entries nobody references any more are dropped by `sweep()` (refcount check), which
    runs after a session is dropped and every `sweep_every` new entries.
    """

    def __init__(self, sweep_every: int = 200_000) -> None:
        self._attrs: dict[Attrs, Attrs] = {}
        self._strings: dict[str, str] = {}
        self._sweep_every = sweep_every
        self._added = 0

    def __len__(self) -> int:
        return len(self._attrs)

    def string(self, value: str) -> str:
        got = self._strings.get(value)
        if got is None:
            self._strings[value] = got = value
        return got

    def attrs(self, value: tuple[str, int, int, str, str, str, int, int, str]) -> Attrs:
        """The shared Attrs equal to `value` (a plain tuple in Attrs field order: a tuple
        and a NamedTuple with equal items hash and compare equal, so a hit costs no
        object construction)."""
        got: Attrs | None = self._attrs.get(value)  # type: ignore[call-overload]
        if got is None:
            path, origin_as, path_len, next_hop, communities, large, med, pref, origin = value
            string = self.string
            got = Attrs(string(path), origin_as, path_len, string(next_hop),
                        string(communities), string(large), med, pref, string(origin))
            self._attrs[got] = got
            self._added += 1
            if self._added >= self._sweep_every:
                self.sweep()
        return got

    def sweep(self) -> int:
        """Drop entries referenced only by this table; returns how many went."""
        self._added = 0
        # refcount of an unused entry: key + value in the dict + the getrefcount argument
        # + the loop variable = 4.
        dead = [a for a in self._attrs if sys.getrefcount(a) <= 4]
        for attrs in dead:
            del self._attrs[attrs]
        dead_strings = [s for s in self._strings if sys.getrefcount(s) <= 4]
        for text in dead_strings:
            del self._strings[text]
        return len(dead)


def parse_prefix(text: str) -> tuple[int, int, int]:
    """'198.51.100.0/24' → (family, network int, length); ValueError when not a prefix.

    Host bits are cleared, as a router would (the key must be canonical).
    """
    addr, sep, length_text = text.partition("/")
    if not sep or not length_text.isdigit() or len(length_text) > 3:
        raise ValueError(f"not a prefix: {text!r}")
    length = int(length_text)
    try:
        if ":" in addr:
            family, bits = V6, 128
            network = int.from_bytes(socket.inet_pton(socket.AF_INET6, addr), "big")
        else:
            family, bits = V4, 32
            network = int.from_bytes(socket.inet_pton(socket.AF_INET, addr), "big")
    except OSError:
        raise ValueError(f"not a prefix: {text!r}") from None
    if length > bits:
        raise ValueError(f"prefix length out of range: {text!r}")
    shift = bits - length
    return family, (network >> shift) << shift, length


def parse_address(text: str) -> tuple[int, int]:
    """'192.0.2.1' → (family, address int); ValueError when not an address."""
    try:
        if ":" in text:
            return V6, int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
        return V4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except OSError:
        raise ValueError(f"not an IP address: {text!r}") from None


def prefix_key(network: int, length: int) -> int:
    return (network << 8) | length


def key_parts(key: int) -> tuple[int, int]:
    return key >> 8, key & 0xFF


def format_prefix(family: int, key: int) -> str:
    network, length = key >> 8, key & 0xFF
    if family == V4:
        text = socket.inet_ntop(socket.AF_INET, network.to_bytes(4, "big"))
    else:
        text = socket.inet_ntop(socket.AF_INET6, network.to_bytes(16, "big"))
    return f"{text}/{length}"


class FamilyTable:
    """One family of one carrier: key → Attrs, plus what makes lookups cheap.

    Longest-prefix match probes the dict once per prefix length present, longest first.
    IPv4 skips most probes: `count16` counts routes longer than /16 in each /16 and
    `long24` routes longer than /24 in each /24, so an address whose /16 holds no longer
    route goes straight to /16 and shorter (an unrouted address: a handful of probes),
    and /25-/32 are probed only in the few /24s that have them. Both are updated with
    each route added or removed (a 256 KiB array and a small dict).
    """

    __slots__ = ("bits", "count16", "length_counts", "lengths", "long24", "probes",
                 "probes_long", "probes_mid", "probes_short", "routes")

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.routes: dict[int, Attrs] = {}
        self.length_counts = [0] * (bits + 1)
        self.lengths: tuple[int, ...] = ()  # present lengths, longest first
        self.probes: tuple[tuple[int, int], ...] = ()  # (length, mask), longest first
        self.probes_long: tuple[tuple[int, int], ...] = ()  # IPv4 /25-/32
        self.probes_mid: tuple[tuple[int, int], ...] = ()  # IPv4 /17-/24
        self.probes_short: tuple[tuple[int, int], ...] = ()  # IPv4 /0-/16
        self.count16 = array("I", bytes(4 << 16)) if bits == 32 else None
        self.long24: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.routes)

    def recount(self) -> None:
        bits = self.bits
        self.lengths = tuple(i for i in range(bits, -1, -1) if self.length_counts[i])
        self.probes = tuple((n, ((1 << n) - 1) << (bits - n)) for n in self.lengths)
        self.probes_long = tuple(p for p in self.probes if p[0] > 24)
        self.probes_mid = tuple(p for p in self.probes if 16 < p[0] <= 24)
        self.probes_short = tuple(p for p in self.probes if p[0] <= 16)

    def added(self, network: int, length: int) -> None:
        """Bookkeeping for a new key (the caller has stored it in `routes`)."""
        count = self.length_counts[length]
        self.length_counts[length] = count + 1
        if not count:
            self.recount()
        if self.count16 is not None and length > 16:
            self.count16[network >> 16] += 1
            if length > 24:
                bucket = network >> 8
                self.long24[bucket] = self.long24.get(bucket, 0) + 1

    def removed(self, network: int, length: int) -> None:
        count = self.length_counts[length] - 1
        self.length_counts[length] = count
        if not count:
            self.recount()
        if self.count16 is not None and length > 16:
            self.count16[network >> 16] -= 1
            if length > 24:
                bucket = network >> 8
                left = self.long24[bucket] - 1
                if left:
                    self.long24[bucket] = left
                else:
                    del self.long24[bucket]

    def set(self, key: int, attrs: Attrs) -> Attrs | None:
        """Insert or replace; returns the previous attributes (None when new)."""
        routes = self.routes
        old = routes.get(key)
        routes[key] = attrs
        if old is None:
            self.added(key >> 8, key & 0xFF)
        return old

    def remove(self, key: int) -> Attrs | None:
        old = self.routes.pop(key, None)
        if old is not None:
            self.removed(key >> 8, key & 0xFF)
        return old

    def clear(self) -> None:
        self.routes = {}
        self.length_counts = [0] * (self.bits + 1)
        if self.count16 is not None:
            self.count16 = array("I", bytes(4 << 16))
        self.long24 = {}
        self.recount()

    def lookup(self, address: int, max_length: int | None = None) -> tuple[int, Attrs] | None:
        """Longest prefix covering `address` (of length ≤ max_length): (key, attrs)."""
        get = self.routes.get
        if self.count16 is not None and max_length is None:
            if self.count16[address >> 16]:
                if self.long24 and (address >> 8) in self.long24:
                    for length, mask in self.probes_long:
                        key = ((address & mask) << 8) | length
                        attrs = get(key)
                        if attrs is not None:
                            return key, attrs
                for length, mask in self.probes_mid:
                    key = ((address & mask) << 8) | length
                    attrs = get(key)
                    if attrs is not None:
                        return key, attrs
            probes = self.probes_short
        else:
            probes = self.probes
        for length, mask in probes:
            if max_length is not None and length > max_length:
                continue
            key = ((address & mask) << 8) | length
            attrs = get(key)
            if attrs is not None:
                return key, attrs
        return None

    def items(self) -> Iterator[tuple[int, Attrs]]:
        return iter(self.routes.items())


class CarrierRib:
    """Both families of one carrier."""

    __slots__ = ("v4", "v6")

    def __init__(self) -> None:
        self.v4 = FamilyTable(32)
        self.v6 = FamilyTable(128)

    def table(self, family: int) -> FamilyTable:
        return self.v4 if family == V4 else self.v6

    def clear(self) -> None:
        self.v4.clear()
        self.v6.clear()

    def __len__(self) -> int:
        return len(self.v4) + len(self.v6)
