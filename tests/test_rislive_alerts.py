"""The alert engine's RIS Live conditions, fed the points the RIS Live collectors write
(made by the view itself, so the kinds and fields are the real ones)."""

from __future__ import annotations

from pathlib import Path

from agent.points import Point
from collectors.bgp.rislive.settings import ViewSettings
from collectors.bgp.rislive.view import RisView
from tests.alerts_support import Harness
from tests.rislive.config import make_config
from tests.rislive.replay import LOCAL_AS, OWN4, ris_update


def feed(h: Harness, points: list[Point]) -> None:
    for point in points:
        point.tags["host"] = "edge-1"
        if not point.time_ns:
            point.time_ns = int(h.clock.now * 1e9)
    h.engine.observe(points)
    h.step(0.1)


def test_hijack_seen_from_outside_fires_and_resolves(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    view = RisView(ViewSettings.from_config(make_config(hijack_min_peers=2)))
    for i in (1, 2):
        feed(h, view.handle_text(ris_update(f"192.0.2.{i}", 65001, [65001, 64666],
                                            ["198.51.100.0/25"]), h.clock.now))
    [alert] = h.firing("OwnPrefixHijackSeenFromOutside")
    assert alert["labels"]["prefix"] == "198.51.100.0/25"
    assert "AS64666 by 2 vantage points" in alert["annotations"]["summary"]
    feed(h, view.handle_text(ris_update("192.0.2.1", 65001, withdraw=["198.51.100.0/25"]),
                             h.clock.now))
    assert h.firing("OwnPrefixHijackSeenFromOutside") == []


def test_hijack_alert_resolves_from_the_visibility_point(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    view = RisView(ViewSettings.from_config(make_config(hijack_min_peers=1)))
    feed(h, view.handle_text(ris_update("192.0.2.1", 65001, [65001, 64666], [OWN4]),
                             h.clock.now))
    assert len(h.firing("OwnPrefixHijackSeenFromOutside")) == 1
    view.seen.clear()  # e.g. the agent restarted: no end event will come
    feed(h, view.evaluate(h.clock.now, judging=False))
    assert h.firing("OwnPrefixHijackSeenFromOutside") == []


def test_visibility_lost_via_carrier_fires_and_restores(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    view = RisView(ViewSettings.from_config(make_config(min_usual_peers=2)))

    def via(carrier_as: int, peers: range) -> None:
        for i in peers:
            view.handle_text(ris_update(f"192.0.2.{i}", 65000 + i,
                                        [65000 + i, carrier_as, LOCAL_AS], [OWN4]), h.clock.now)

    via(4134, range(1, 5))
    via(4837, range(5, 9))
    feed(h, view.evaluate(h.clock.now, judging=True))
    h.step(10)
    via(4837, range(1, 5))
    feed(h, view.evaluate(h.clock.now, judging=True))
    [alert] = h.firing("VisibilityLostViaCarrier")
    assert alert["labels"]["carrier"] == "telecom" and alert["labels"]["prefix"] == OWN4
    h.step(10)
    via(4134, range(1, 5))
    feed(h, view.evaluate(h.clock.now, judging=True))
    assert h.firing("VisibilityLostViaCarrier") == []


def test_unexpected_upstream_and_silent_feed(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    view = RisView(ViewSettings.from_config(make_config(hijack_min_peers=1)))
    feed(h, view.handle_text(ris_update("192.0.2.1", 65001, [65001, 64499, LOCAL_AS], [OWN4]),
                             h.clock.now))
    [alert] = h.firing("UnexpectedUpstreamSeenFromOutside")
    assert "AS64499" in alert["annotations"]["summary"]
    feed(h, view.handle_text(ris_update("192.0.2.1", 65001, [65001, 4134, LOCAL_AS], [OWN4]),
                             h.clock.now))
    assert h.firing("UnexpectedUpstreamSeenFromOutside") == []
    silent = Point("bgp_event", {"kind": "ris_feed_silent"},
                   {"prefix": "", "as_path": "", "origin_as": 0, "detail": "no message",
                    "peers": 0, "via": ""})
    feed(h, [silent])
    assert len(h.firing("RisLiveFeedSilent")) == 1
    feed(h, [Point("bgp_feed", {"feed": "ris_live"}, {"connected": True, "silent": False})])
    assert h.firing("RisLiveFeedSilent") == []
