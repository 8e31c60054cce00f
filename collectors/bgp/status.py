"""What the BGP state shows through the control socket: the `bgp` status section and
`bgp.lookup` (the route per carrier for an address, for traceroute annotation)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from collectors.bgp.rib import V4, Attrs, format_prefix, parse_address
from collectors.bgp.session import Session


def lookup(sessions: Iterable[Session], address_text: str) -> dict[str, Any]:
    """Per carrier: the longest-prefix route for an address (traceroute annotation)."""
    family, address = parse_address(address_text)
    result: dict[str, Any] = {}
    for session in sessions:
        found = session.rib.table(family).lookup(address)
        if found is None:
            result[session.carrier] = None
            continue
        key, attrs = found
        result[session.carrier] = route_dict(family, key, attrs)
    return result


def session_status(session: Session, now: float) -> dict[str, Any]:
    return {
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
