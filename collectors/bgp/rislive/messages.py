"""RIS Live's message format, checked: AS paths, peers, prefixes. Anything that does not
follow the documented format raises BadMessage (the view counts it and applies nothing)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from collectors.bgp.rib import parse_prefix

UPSTREAM_NONE = 0  # the vantage point is in our own AS
UPSTREAM_SET = -1  # an AS_SET just before our AS

_MAX_ASN = 4294967295


class BadMessage(ValueError):
    """A frame or a part of it that does not follow RIS Live's documented format."""


@dataclass(frozen=True, slots=True)
class Route:
    origin_as: int  # 0 when the path ends in an AS_SET without our AS, or is empty
    ours: bool  # originated by bgp.local_as
    upstream: int  # AS just before ours (ours only); UPSTREAM_NONE / UPSTREAM_SET
    path: str  # "3356 4134 64512", an AS_SET as "{1,2}"



def _asn(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= _MAX_ASN:
        raise BadMessage(f"not an AS number: {value!r}"[:120])
    return value


def parse_path(path: Any, local_as: int) -> Route:
    """RIS Live's `path` (ASNs, an AS_SET as a list of ASNs) → Route. BadMessage else."""
    if not isinstance(path, list) or not path or len(path) > 1000:
        raise BadMessage("path: expected a non-empty list of AS numbers")
    elements: list[int | frozenset[int]] = []
    for item in path:
        if isinstance(item, list):
            if not item or len(item) > 1000:
                raise BadMessage("path: an empty or huge AS_SET")
            elements.append(frozenset(_asn(a) for a in item))
        else:
            elements.append(_asn(item))
    text = " ".join(str(e) if isinstance(e, int) else
                    "{" + ",".join(map(str, sorted(e))) + "}" for e in elements)
    last = elements[-1]
    ours = last == local_as if isinstance(last, int) else local_as in last
    origin = last if isinstance(last, int) else (local_as if ours else 0)
    upstream = UPSTREAM_NONE
    if ours:
        i = len(elements) - 1
        if not isinstance(elements[i], int):
            i -= 1  # the origin AS_SET that holds our AS
        while i >= 0 and elements[i] == local_as:
            i -= 1  # our prepends
        if i >= 0:
            before = elements[i]
            upstream = before if isinstance(before, int) else UPSTREAM_SET
    return Route(origin, ours, upstream, text)


def _peer(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 64:
        raise BadMessage("peer: expected an IP address")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise BadMessage(f"peer: not an IP address: {value[:64]!r}") from None


def _prefix(value: Any) -> tuple[int, int, int]:
    if not isinstance(value, str) or len(value) > 64:
        raise BadMessage("prefix: expected a string")
    try:
        return parse_prefix(value)
    except ValueError:
        raise BadMessage(f"not a prefix: {value[:64]!r}") from None
