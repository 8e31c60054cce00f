"""Our prefixes and watched destinations, and the index that says which of the routes a
carrier sends touch them.

The index is what keeps the hot path cheap: exact keys of ours, every ancestor of a
watched prefix, and the leading bits of ours at our shortest length (more-specific
candidates), so a route is tested with one or two set probes (a hash LPM), never a scan.
"""

from __future__ import annotations

from dataclasses import dataclass

from collectors.bgp.rib import FAMILY_BITS, V4, V6, format_prefix, parse_prefix


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


class PrefixIndex:
    """Per family: which route keys concern our prefixes or a watched destination.

    Built once per config; read by the hot path (`interest`, `own_shift`, `own_tops`) and by
    the detectors (`own_by_key`, `watch_by_ancestor`)."""

    def __init__(self, own: list[Prefix], watch: list[Prefix]) -> None:
        self.own = own
        self.watch = watch
        # Interest: exact keys of ours, every ancestor of a watched prefix, and the
        # leading bits of ours at our shortest length (more-specific candidates).
        self.own_by_key: dict[int, dict[int, Prefix]] = {V4: {}, V6: {}}
        self.watch_by_ancestor: dict[int, dict[int, list[int]]] = {V4: {}, V6: {}}
        self.interest: dict[int, set[int]] = {V4: set(), V6: set()}
        self.own_shift: dict[int, int] = {}
        self.own_tops: dict[int, set[int]] = {V4: set(), V6: set()}
        for prefix in own:
            self.own_by_key[prefix.family][prefix.key] = prefix
            self.interest[prefix.family].add(prefix.key)
        for family in (V4, V6):
            lengths = [p.length for p in own if p.family == family]
            if lengths:
                shift = FAMILY_BITS[family] - min(lengths)
                self.own_shift[family] = shift
                self.own_tops[family] = {
                    p.network >> shift for p in own if p.family == family
                }
        for index, prefix in enumerate(watch):
            bits = FAMILY_BITS[prefix.family]
            for length in range(prefix.length + 1):
                shift = bits - length
                key = (((prefix.network >> shift) << shift) << 8) | length
                self.watch_by_ancestor[prefix.family].setdefault(key, []).append(index)
                self.interest[prefix.family].add(key)
