"""VRPs and routes with known RFC 6811 answers, and the brute-force validator, shared by
every path into the VRP index (the index itself, StayRTR, files, the BGP state)."""

from __future__ import annotations

import ipaddress
from typing import Any

from collectors.bgp.rib import parse_prefix
from collectors.bgp.rpki.rov import INVALID, NOT_FOUND, VALID, VrpIndex

# (prefix, maxLength, asn)
VRPS: list[tuple[str, int, int]] = [
    ("192.0.2.0/24", 24, 64500),  # exact only
    ("198.51.100.0/22", 24, 64501),  # /22 up to /24
    ("198.51.100.0/24", 24, 64502),  # a second AS on a more-specific
    ("203.0.113.0/24", 24, 0),  # AS0: nothing under it is valid
    ("203.0.113.0/25", 25, 64503),  # ... except what another VRP allows
    ("100.64.0.0/10", 10, 64504),  # short, no more-specifics allowed
    ("10.0.0.0/8", 16, 64505),
    ("10.1.0.0/16", 24, 64506),
    ("2001:db8::/32", 48, 64500),
    ("2001:db8:1::/48", 48, 0),
    ("2001:db8:ff00::/40", 40, 64507),
]

# (prefix, origin, expected)
ROUTES: list[tuple[str, int, int]] = [
    ("192.0.2.0/24", 64500, VALID),
    ("192.0.2.0/25", 64500, INVALID),  # longer than maxLength
    ("192.0.2.0/24", 64999, INVALID),  # wrong origin
    ("192.0.2.0/23", 64500, NOT_FOUND),  # less specific: not covered
    ("198.51.100.0/22", 64501, VALID),
    ("198.51.101.0/24", 64501, VALID),  # maxLength edge
    ("198.51.101.0/25", 64501, INVALID),  # one past it
    ("198.51.100.0/24", 64502, VALID),  # matched by the more-specific VRP
    ("198.51.100.0/24", 64501, VALID),  # and by the covering /22
    ("198.51.100.0/24", 64503, INVALID),
    ("203.0.113.0/24", 64503, INVALID),  # AS0 covers, 64503 only for the /25
    ("203.0.113.0/25", 64503, VALID),
    ("203.0.113.128/25", 64503, INVALID),  # AS0 only
    ("203.0.113.0/24", 0, INVALID),  # no origin (AS_SET) never matches, not even AS0
    ("100.64.0.0/10", 64504, VALID),
    ("100.64.0.0/11", 64504, INVALID),
    ("100.128.0.0/10", 64504, NOT_FOUND),
    ("10.2.0.0/16", 64505, VALID),
    ("10.2.0.0/17", 64505, INVALID),
    ("10.1.2.0/24", 64506, VALID),
    ("10.1.2.0/24", 64505, INVALID),  # covered by both, matches neither's maxLength/AS
    ("10.1.0.0/16", 64505, VALID),
    ("11.0.0.0/8", 64505, NOT_FOUND),
    ("0.0.0.0/0", 64505, NOT_FOUND),
    ("2001:db8::/32", 64500, VALID),
    ("2001:db8:2::/48", 64500, VALID),
    ("2001:db8:2::/49", 64500, INVALID),
    ("2001:db8:1::/48", 64500, VALID),  # the /32 VRP allows it; AS0 does not take it away
    ("2001:db8:1::/48", 64999, INVALID),
    ("2001:db8:ff00::/40", 64507, VALID),
    ("2001:db8:ff00::/41", 64507, INVALID),
    ("2001:db9::/32", 64500, NOT_FOUND),
]


def roas_json(vrps: list[tuple[str, int, int]] = VRPS) -> list[dict[str, Any]]:
    """The rpki-client form; ASNs alternate between "AS64500" and 64500."""
    return [{"asn": f"AS{asn}" if i % 2 else asn, "prefix": prefix, "maxLength": max_length,
             "ta": "test", "expires": 1_900_000_000 + i} for i, (prefix, max_length, asn)
            in enumerate(vrps)]


def build(vrps: list[tuple[str, int, int]] = VRPS) -> VrpIndex:
    index = VrpIndex()
    for prefix, max_length, asn in vrps:
        family, network, length = parse_prefix(prefix)
        assert index.family(family).add(network, length, max_length, asn)
    return index


def validate(index: VrpIndex, prefix: str, origin: int) -> int:
    family, network, length = parse_prefix(prefix)
    return index.family(family).validate(network, length, origin)


def brute(vrps: list[tuple[str, int, int]], prefix: str, origin: int) -> int:
    """RFC 6811 section 2, literally."""
    route = ipaddress.ip_network(prefix)
    covered = False
    for vrp_prefix, max_length, asn in vrps:
        net = ipaddress.ip_network(vrp_prefix)
        if net.version != route.version or not route.subnet_of(net):  # type: ignore[arg-type]
            continue
        covered = True
        if origin != 0 and asn == origin and route.prefixlen <= max_length:
            return VALID
    return INVALID if covered else NOT_FOUND
