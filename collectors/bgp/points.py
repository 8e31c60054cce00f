"""The polled BGP points: `bgp_session` per carrier and `bgp_prefix` per carrier and
prefix of ours, read from the sessions (and the RPKI counts when `[bgp.rpki]` is set)."""

from __future__ import annotations

from collections.abc import Iterable

from agent.points import FieldValue, Point
from collectors.bgp.prefixes import Prefix
from collectors.bgp.rib import V4, V6
from collectors.bgp.rpki.validation import RovState
from collectors.bgp.session import Session


def session_points(sessions: Iterable[Session], rov: RovState | None,
                   now: float) -> list[Point]:
    points = []
    for session in sessions:
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
        if rov is not None:
            fields.update(rov.session_fields(session.carrier))
        points.append(Point("bgp_session", {"carrier": session.carrier,
                                            "peer": session.peer,
                                            "peer_as": str(session.peer_as)}, fields))
    return points


def prefix_points(sessions: Iterable[Session], own: list[Prefix],
                  rov: RovState | None) -> list[Point]:
    points = []
    for session in sessions:
        for prefix in own:
            attrs = session.rib.table(prefix.family).routes.get(prefix.key)
            fields: dict[str, FieldValue] = {
                "visible": attrs is not None,
                "announced": session.up and not session.announceable(prefix),
                "origin_as": attrs.origin_as if attrs else 0,
                "as_path": attrs.as_path if attrs else "",
                "as_path_len": attrs.path_len if attrs else 0,
                "next_hop": attrs.next_hop if attrs else "",
            }
            if rov is not None:
                fields.update(rov.prefix_fields(prefix.text))
            points.append(Point("bgp_prefix", {"carrier": session.carrier,
                                               "prefix": prefix.text}, fields))
    return points
