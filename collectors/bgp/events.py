"""The point a `bgp_event` becomes (its kinds are the `EVENT_*` of collectors/bgp/metrics.py).

The last 20 events are kept for `status`."""

from __future__ import annotations

from collections import deque
from typing import Any

from agent.points import FieldValue, Point
from collectors.bgp.rib import Attrs
from collectors.bgp.session import Session


class EventLog:
    def __init__(self) -> None:
        self.events: deque[dict[str, Any]] = deque(maxlen=20)

    def event(self, session: Session, kind: str, now: float, prefix: str = "",
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
