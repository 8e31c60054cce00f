"""The alert engine on a fake clock: life cycle, and every built-in condition on synthetic
point streams (agent/alerts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.alerts.conditions.billing import p95
from agent.alerts.engine import LagTracker, fingerprint
from agent.config import ConfigError, parse_config
from agent.points import Point
from tests.alerts_support import BASE, T0, Harness


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def link(h: Harness, carrier: str, iface: str, **fields: Any) -> None:
    h.point("link", {"interface": iface, "carrier": carrier}, fields)


# ---------------------------------------------------------------- life cycle


def test_fingerprint_matches_alertmanager() -> None:
    # Alertmanager (prometheus/common model.LabelSet.Fingerprint) of {alertname="Test"}
    # and of the empty set: FNV-1a 64 offset basis.
    assert fingerprint({}) == "cbf29ce484222325"
    assert fingerprint({"a": "1", "b": "2"}) == fingerprint({"b": "2", "a": "1"})
    assert fingerprint({"a": "1"}) != fingerprint({"a": "2"})


def test_pending_then_firing_after_for_then_resolved(h: Harness) -> None:
    for _ in range(9):  # 90 % for 4m30s: pending, nothing sent
        link(h, "telecom", "eth1", rx_util=0.9, tx_util=0.1)
        h.step(30)
    assert h.pending("UplinkUtilization") and not h.firing()
    assert h.changes() == []
    link(h, "telecom", "eth1", rx_util=0.9, tx_util=0.1)
    h.step(30)  # 5 m since it started
    [alert] = h.firing("UplinkUtilization")
    assert alert["labels"] == {"alertname": "UplinkUtilization", "severity": "warning",
                               "host": "edge-1", "carrier": "telecom", "interface": "eth1"}
    assert "rx at 90.0 %" in alert["annotations"]["summary"]
    assert alert["active_at"] == T0
    [(state, tags)] = h.changes()
    assert state == "firing" and tags["carrier"] == "telecom"
    point = h.emitted[0]
    assert point.measurement == "alert" and point.fields["firing"] is True
    assert point.fields["starts_at_ns"] == int(T0 * 1e9)
    # hysteresis: 78 % (above 80 - 5) keeps it firing; 74 % resolves it
    link(h, "telecom", "eth1", rx_util=0.78)
    h.step(10)
    assert h.firing("UplinkUtilization")
    link(h, "telecom", "eth1", rx_util=0.74)
    assert not h.firing()
    assert [s for s, _ in h.changes()] == ["firing", "resolved"]
    assert h.emitted[-1].fields["ends_at_ns"] == int(h.clock.now * 1e9)


def test_pending_that_clears_sends_nothing(h: Harness) -> None:
    link(h, "telecom", "eth1", rx_util=0.9)
    h.step(60)
    link(h, "telecom", "eth1", rx_util=0.5)
    h.step(600)
    assert h.engine.active() == [] and h.changes() == []


def test_hovering_at_the_threshold_does_not_flap(h: Harness) -> None:
    link(h, "telecom", "eth1", rx_util=0.81)
    h.step(300)
    assert h.firing("UplinkUtilization")
    for value in (0.79, 0.81, 0.78, 0.80, 0.77) * 4:
        link(h, "telecom", "eth1", rx_util=value)
        h.step(10)
    assert [s for s, _ in h.changes()] == ["firing"]


def test_critical_level_is_its_own_alert(h: Harness) -> None:
    link(h, "telecom", "eth1", rx_util=0.2, tx_util=0.97)
    h.step(300)
    severities = sorted(a["labels"]["severity"] for a in h.firing("UplinkUtilization"))
    assert severities == ["critical", "warning"]


def test_firing_survives_a_restart_and_is_not_sent_again(tmp_path: Path) -> None:
    first = Harness(tmp_path)
    link(first, "telecom", "eth1", oper_up=True)
    first.point("link_event", {"interface": "eth1", "carrier": "telecom", "state": "down"},
                {"up": False, "detail": "carrier lost"})
    assert len(first.firing("UplinkDown")) == 1
    state = json.loads((tmp_path / "alerts" / "state.json").read_text())
    assert len(state["firing"]) == 1

    second = Harness(tmp_path)  # a restart (or kill -9 and start)
    second.clock.advance(120)
    [alert] = second.firing("UplinkDown")
    assert alert["active_at"] == T0
    link(second, "telecom", "eth1", oper_up=False, carrier_up=False)
    assert second.changes() == []  # still down: no second "firing"
    link(second, "telecom", "eth1", oper_up=True, carrier_up=True)
    assert [s for s, _ in second.changes()] == ["resolved"]
    assert json.loads((tmp_path / "alerts" / "state.json").read_text())["firing"] == []
    third = Harness(tmp_path)
    assert third.engine.active() == []


def test_disabled_condition_and_reload(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.point("link_event", {"interface": "eth1", "carrier": "telecom", "state": "down"},
            {"up": False, "detail": "admin down"})
    assert h.firing("UplinkDown")
    import tomllib

    new = parse_config(tomllib.loads(BASE.format(data_dir=tmp_path)
                                     + "[alerts.uplink_down]\nenabled = false\n"))
    h.engine.reconfigure(new)
    assert not h.firing() and [s for s, _ in h.changes()] == ["firing", "resolved"]


def test_observer_ignores_unwatched_measurements(h: Harness) -> None:
    h.engine.observe([Point("host", {}, {"cpu_percent": 1.0}, 1)] * 1000)
    assert h.engine.stats.points_seen == 0


# ---------------------------------------------------------------- links


def test_uplink_down_from_event_and_stale_poll_ignored(h: Harness) -> None:
    poll_time = h.clock.now
    h.clock.advance(0.005)
    h.point("link_event", {"interface": "eth1", "carrier": "telecom", "state": "down"},
            {"up": False, "detail": "carrier lost"})
    [alert] = h.firing("UplinkDown")
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["summary"] == "uplink eth1 of telecom is down: carrier lost"
    # a poll read just before the event must not resolve it
    h.point("link", {"interface": "eth1", "carrier": "telecom"}, {"oper_up": True},
            at=poll_time)
    assert h.firing("UplinkDown")
    h.clock.advance(3)
    h.point("link_event", {"interface": "eth1", "carrier": "telecom", "state": "up"},
            {"up": True, "detail": "up"})
    assert not h.firing("UplinkDown")
    # interfaces that are not uplinks are never judged
    link(h, "", "eth9", oper_up=False)
    h.point("link", {"interface": "eth9"}, {"oper_up": False})
    assert not h.firing()


def test_routing_failed_event_and_level(h: Harness) -> None:
    h.point("link_event", {"interface": "eth1", "carrier": "telecom", "state": "routing_failed"},
            {"up": False, "detail": "no default route in table 101"})
    [alert] = h.firing("RoutingCheckFailed")
    assert "no default route in table 101" in alert["annotations"]["summary"]
    h.clock.advance(10)
    link(h, "telecom", "eth1", route_ok=True, gateway_ok=True, egress_ok=True)
    assert not h.firing()
    link(h, "telecom", "eth1", route_ok=True, gateway6_ok=False)
    assert "gateway6_ok false" in h.firing("RoutingCheckFailed")[0]["annotations"]["summary"]


# ---------------------------------------------------------------- billing


def billing(h: Harness, p95_bps: float, committed: float = 1e9) -> None:
    h.point("billing", {"carrier": "telecom", "interface": "eth1"},
            {"p95_bps": p95_bps, "committed_bps": committed, "samples": 100})


def test_commit_exceeded_with_hysteresis(h: Harness) -> None:
    billing(h, 0.99e9)
    assert not h.firing("CommitExceeded")
    billing(h, 1.05e9)
    [alert] = h.firing("CommitExceeded")
    assert "1,050 Mbit/s is above the commit of 1,000 Mbit/s" in alert["annotations"]["summary"]
    billing(h, 0.99e9)
    assert h.firing("CommitExceeded")
    billing(h, 0.97e9)
    assert not h.firing("CommitExceeded")
    # the closed month's final figure (stamped long ago) is not this month's
    h.point("billing", {"carrier": "telecom", "interface": "eth1"},
            {"p95_bps": 5e9, "committed_bps": 1e9}, at=h.clock.now - 86400)
    assert not h.firing()


def test_commit_projected(tmp_path: Path) -> None:
    calls = []

    def reader(carrier: str, now: float, window_s: float
               ) -> tuple[list[float], list[float], int]:
        calls.append((carrier, window_s))
        # 10 days at 500 Mbit/s so far, the last 7 days at 1.2 Gbit/s, 20 days to go
        month = [5e8] * 2880 + [1.2e9] * 100
        return month, [1.2e9] * 2016, 5760

    h = Harness(tmp_path, billing_reader=reader)
    billing(h, 5e8)
    [alert] = h.firing("CommitProjected")
    assert alert["labels"]["severity"] == "warning"
    assert alert["annotations"]["summary"].startswith(
        "telecom: projected p95 1,200 Mbit/s of 1,000 Mbit/s committed")
    assert calls == [("telecom", 7 * 86400.0)]
    assert p95([1.0] * 95 + [9.0] * 5) == 1.0


def test_commit_projection_reads_the_billing_files(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from agent.alerts.conditions.billing import read_billing_rates

    now = datetime(2026, 12, 20, tzinfo=UTC).timestamp()
    directory = tmp_path / "billing" / "telecom"
    directory.mkdir(parents=True)
    start = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    with open(directory / "2026-12.samples", "w") as handle:
        for i in range(int((now - start) // 300)):
            slot = start + i * 300
            rate = 2e9 if slot >= now - 7 * 86400 else 1e8
            handle.write(f"{int(slot)} 100 {rate}\n")
    month, window, left = read_billing_rates(tmp_path, "telecom", "max", now, 7 * 86400)
    assert len(window) == 7 * 288 and set(window) == {2e9}
    assert left == 12 * 288 - 1 or left == 12 * 288
    assert len(month) == 19 * 288


# ---------------------------------------------------------------- BGP


def session(h: Harness, carrier: str = "telecom", state: str = "up", flaps: int = 0,
            v4: int = 0, v6: int = 0) -> None:
    peer = {"telecom": "203.0.113.1", "unicom": "203.0.113.5", "mobile": "203.0.113.9"}[carrier]
    h.point("bgp_session", {"carrier": carrier, "peer": peer, "peer_as": "4134"},
            {"state": state, "up": state == "up", "flaps": flaps, "prefixes_v4": v4,
             "prefixes_v6": v6})


def test_bgp_session_down_after_for(h: Harness) -> None:
    session(h, state="up")
    for _ in range(3):
        h.step(10)
        session(h, state="down")
    assert h.pending("BgpSessionDown") and not h.firing()
    h.step(10)
    session(h, state="down")
    [alert] = h.firing("BgpSessionDown")
    assert alert["labels"]["peer"] == "203.0.113.1"
    assert alert["annotations"]["summary"] == (
        "BGP session with telecom (203.0.113.1, AS4134) is down")
    h.step(10)
    session(h, state="up")
    assert not h.firing()


def test_exabgp_not_running(h: Harness) -> None:
    for _ in range(4):
        session(h, state="exabgp_down")
        session(h, "unicom", state="exabgp_down")
        h.step(10)
    [alert] = h.firing("ExabgpNotRunning")
    assert "carrier" not in alert["labels"]
    assert not h.firing("BgpSessionDown")  # the cause is ExaBGP, said once
    session(h, state="up")
    assert not h.firing("ExabgpNotRunning")


def test_bgp_flapping(h: Harness) -> None:
    for flaps in (0, 1, 2):
        session(h, flaps=flaps)
        h.step(60)
    assert not h.firing("BgpSessionFlapping")
    session(h, flaps=3)
    [alert] = h.firing("BgpSessionFlapping")
    assert "flapped 3 times in the last 10m" in alert["annotations"]["summary"]
    for _ in range(12):  # quiet for 12 minutes: the flaps leave the window
        h.step(60)
        session(h, flaps=3)
    assert not h.firing("BgpSessionFlapping")


def test_prefixes_collapsed(h: Harness) -> None:
    for _ in range(3):
        session(h, v4=900_000, v6=200_000)
        h.step(10)
    session(h, v4=300_000, v6=200_000)
    [alert] = h.firing("BgpPrefixesCollapsed")
    assert alert["labels"]["family"] == "ipv4"
    assert "fell from 900000 to 300000" in alert["annotations"]["summary"]
    for _ in range(10):  # stays low: still firing (the window forgot the old level)
        h.step(10)
        session(h, v4=300_000, v6=200_000)
    assert h.firing("BgpPrefixesCollapsed")
    session(h, v4=899_000, v6=200_000)
    assert not h.firing()
    # a session going down is not a collapse
    session(h, state="down", v4=0, v6=0)
    assert not h.firing("BgpPrefixesCollapsed")
    # small tables are not judged
    for count in (50, 50, 1):
        session(h, "unicom", v4=count)
        h.step(5)
    assert not h.firing("BgpPrefixesCollapsed")


def test_own_prefix_not_announced(h: Harness) -> None:
    session(h)
    h.point("bgp_prefix", {"carrier": "telecom", "prefix": "198.51.100.0/24"},
            {"visible": False, "announced": False, "origin_as": 0, "as_path": ""})
    assert h.pending("OwnPrefixNotAnnounced")
    h.step(30)
    [alert] = h.firing("OwnPrefixNotAnnounced")
    assert alert["labels"]["prefix"] == "198.51.100.0/24"
    h.point("bgp_prefix", {"carrier": "telecom", "prefix": "198.51.100.0/24"},
            {"visible": False, "announced": True, "origin_as": 0, "as_path": ""})
    assert not h.firing()
    # not announced because the session is down: the session's alert, not this one
    session(h, state="down")
    h.point("bgp_prefix", {"carrier": "telecom", "prefix": "198.51.100.0/24"},
            {"visible": False, "announced": False})
    assert not h.pending("OwnPrefixNotAnnounced")


def test_origin_mismatch_critical_at_once(h: Harness) -> None:
    h.point("bgp_event", {"carrier": "unicom", "kind": "origin_mismatch"},
            {"prefix": "198.51.100.0/24", "as_path": "4837 65002", "origin_as": 65002,
             "detail": ""})
    [alert] = h.firing("OwnPrefixOriginMismatch")
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["summary"] == (
        "our prefix 198.51.100.0/24 is seen from unicom originated by AS65002 "
        "(path 4837 65002; ours is AS64512)")
    h.clock.advance(10)
    h.point("bgp_prefix", {"carrier": "unicom", "prefix": "198.51.100.0/24"},
            {"visible": True, "origin_as": 65002, "as_path": "4837 65002"})
    assert h.firing("OwnPrefixOriginMismatch")
    h.point("bgp_prefix", {"carrier": "unicom", "prefix": "198.51.100.0/24"},
            {"visible": True, "origin_as": 64512, "as_path": "4837 4134 64512"})
    assert not h.firing()


def test_more_specific_resolves_when_the_table_no_longer_has_it(tmp_path: Path) -> None:
    table: dict[str, Any] = {"unicom": {"prefix": "198.51.100.128/25"}}
    h = Harness(tmp_path, lookup=lambda args: dict(table))
    h.point("bgp_event", {"carrier": "unicom", "kind": "more_specific"},
            {"prefix": "198.51.100.128/25", "as_path": "4837 65002", "origin_as": 65002,
             "detail": "more-specific of our 198.51.100.0/24 originated by AS65002"})
    [alert] = h.firing("OwnPrefixMoreSpecific")
    assert alert["labels"]["prefix"] == "198.51.100.128/25"
    h.step(11)
    assert h.firing()
    table["unicom"] = {"prefix": "198.51.100.0/24"}
    h.step(11)
    assert not h.firing()


def test_more_specific_without_a_table_resolves_after_a_while(h: Harness) -> None:
    h.point("bgp_event", {"carrier": "unicom", "kind": "more_specific"},
            {"prefix": "198.51.100.128/25", "as_path": "", "origin_as": 0, "detail": ""})
    h.step(1800)
    assert h.firing()
    h.step(1900)
    assert not h.firing()


def test_unexpected_path(h: Harness) -> None:
    h.point("bgp_prefix", {"carrier": "telecom", "prefix": "198.51.100.0/24"},
            {"visible": True, "origin_as": 64512, "as_path": "4134 4837 64512"})
    assert not h.firing()
    h.point("bgp_prefix", {"carrier": "telecom", "prefix": "198.51.100.0/24"},
            {"visible": True, "origin_as": 64512, "as_path": "3356 4837 64512"})
    [alert] = h.firing("UnexpectedAsPath")
    assert "does not start with telecom's AS4134" in alert["annotations"]["summary"]
    h.point("bgp_event", {"carrier": "unicom", "kind": "path_change"},
            {"prefix": "114.114.114.0/24", "as_path": "174 4837", "origin_as": 4837,
             "detail": ""})
    assert len(h.firing("UnexpectedAsPath")) == 2
    h.point("bgp_event", {"carrier": "unicom", "kind": "path_change"},
            {"prefix": "114.114.114.0/24", "as_path": "4837 4808", "origin_as": 4808,
             "detail": ""})
    assert len(h.firing("UnexpectedAsPath")) == 1


# ---------------------------------------------------------------- access quality


def quality(h: Harness, status: str, carrier: str = "telecom") -> None:
    h.point("quality", {"carrier": carrier, "target": "114.114.114.114"},
            {"status": status, "score": 0.0 if status == "down" else 80.0, "best": False})


def test_quality_bad_for_rounds_with_clear_rounds(h: Harness) -> None:
    quality(h, "degraded")
    quality(h, "down")
    assert not h.firing()
    quality(h, "degraded")
    [alert] = h.firing("AccessQualityBad")
    assert alert["labels"]["target"] == "114.114.114.114"
    quality(h, "ok")
    assert h.firing()  # one good round is not enough (clear_rounds 2)
    quality(h, "degraded")
    quality(h, "ok")
    quality(h, "ok")
    assert not h.firing()


def probe(h: Harness, carrier: str, loss: float | None = None, rtt: float | None = None,
          at: float | None = None) -> None:
    fields: dict[str, Any] = {"sent": 10}
    if loss is not None:
        fields["loss_pct"] = loss
    if rtt is not None:
        fields["rtt_median_ms"] = rtt
    h.point("probe", {"carrier": carrier, "target": "114.114.114.114", "method": "icmp"},
            fields, at)


def test_carrier_relative_loss_blames_one_carrier_only(h: Harness) -> None:
    for _ in range(30):  # 5 minutes of rounds
        probe(h, "telecom", loss=20.0)
        probe(h, "unicom", loss=2.0)
        probe(h, "mobile", loss=5.0)
        h.step(10)
    firing = h.firing("CarrierLossHigh")
    assert [a["labels"]["carrier"] for a in firing] == ["telecom"]
    assert "18.0 points worse than the best other carrier (2.0 %)" in (
        firing[0]["annotations"]["summary"])
    # a target down everywhere blames no carrier
    h2 = Harness(h.tmp_path / "b")
    for _ in range(30):
        for carrier in ("telecom", "unicom", "mobile"):
            probe(h2, carrier, loss=100.0)
        h2.step(10)
    assert not h2.firing()
    # hysteresis: 7 points worse keeps it (resolves below 10 - 5)
    for _ in range(31):
        probe(h, "telecom", loss=9.0)
        probe(h, "unicom", loss=2.0)
        probe(h, "mobile", loss=5.0)
        h.step(10)
    assert h.firing("CarrierLossHigh")
    for _ in range(31):
        probe(h, "telecom", loss=4.0)
        probe(h, "unicom", loss=2.0)
        probe(h, "mobile", loss=5.0)
        h.step(10)
    assert not h.firing("CarrierLossHigh")


def test_latency_shift(h: Harness) -> None:
    for _ in range(162):  # 27 minutes at 30 ms
        probe(h, "telecom", rtt=30.0)
        h.step(10)
    assert not h.firing()
    for _ in range(10):  # then 34 ms: within max(5 ms, 20 %)
        probe(h, "telecom", rtt=34.0)
        h.step(10)
    assert not h.firing()
    for _ in range(18):  # 3 minutes at 45 ms
        probe(h, "telecom", rtt=45.0)
        h.step(10)
    [alert] = h.firing("LatencyShift")
    summary = alert["annotations"]["summary"]
    # fired as soon as the recent median moved past the tolerance
    assert "over the last 3m, was 30.0 ms" in summary and "tolerance 6.0 ms" in summary
    assert [s for s, _ in h.changes()] == ["firing"]


# ---------------------------------------------------------------- the agent itself


def test_output_lagging_points_dropped_and_overruns(h: Harness) -> None:
    stats: dict[str, Any] = {
        "outputs": {"influxdb": {"lag_s": 100.0, "lag_points": 5000, "last_error": "HTTP 503"}},
        "points_dropped": 0,
        "collectors": {"links": 0},
    }
    h.step(5, stats)
    assert not h.firing()
    stats["outputs"]["influxdb"]["lag_s"] = 301.0
    stats["points_dropped"] = 10
    stats["collectors"]["links"] = 2
    h.step(5, stats)
    names = sorted(a["labels"]["alertname"] for a in h.firing())
    assert names == ["CollectorOverrun", "OutputLagging", "PointsDropped"]
    lag = h.firing("OutputLagging")[0]
    assert lag["labels"]["output"] == "influxdb"
    assert "last error: HTTP 503" in lag["annotations"]["summary"]
    stats["outputs"]["influxdb"]["lag_s"] = 0.0
    for _ in range(121):
        h.step(5, stats)
    assert not h.firing()


def test_lag_tracker() -> None:
    tracker = LagTracker()
    tracker.sample(100.0, 10)
    tracker.sample(101.0, 12)
    tracker.sample(105.0, 20)
    assert tracker.lag_s(106.0, 20) == 0.0
    assert tracker.lag_s(106.0, 15) == 1.0  # record 15 first seen at 105
    assert tracker.lag_s(106.0, 11) == 5.0  # record 11 first seen at 101


# ---------------------------------------------------------------- config


def test_config_errors_have_key_paths(tmp_path: Path) -> None:
    import tomllib

    bad = BASE.format(data_dir=tmp_path) + """
[alerts]
bogus = 1
[alerts.utilization]
warning_pct = 0
for = "soon"
[alerts.quality_bad]
rounds = 0
status = "bad"
[alerts.carrier_loss]
window = "1s"
extra = 1
"""
    with pytest.raises(ConfigError) as info:
        parse_config(tomllib.loads(bad), "agent.toml")
    text = str(info.value)
    for key in ("alerts.bogus: unknown condition", "alerts.utilization.warning_pct",
                "alerts.utilization.for", "alerts.quality_bad.rounds",
                "alerts.quality_bad.status", "alerts.carrier_loss.window",
                "alerts.carrier_loss.extra: unknown key"):
        assert f"agent.toml: {key}" in text, (key, text)


def test_config_tuned_values(tmp_path: Path) -> None:
    import tomllib

    config = parse_config(tomllib.loads(BASE.format(data_dir=tmp_path) + """
[alerts.utilization]
warning_pct = 70
for = "1m"
[alerts.bgp_session_down]
for = "0s"
[outputs.alertmanager]
urls = ["http://127.0.0.1:9093/"]
resend_interval = "30s"
[outputs.webhook]
url = "http://127.0.0.1:8080/hook"
"""))
    rule = config.alerts.rule("utilization")
    assert rule.get("warning_pct") == 70.0 and rule.for_s == 60.0
    assert rule.get("critical_pct") == 95.0
    assert config.alerts.rule("bgp_session_down").for_s == 0.0
    assert config.alerts.rule("latency_shift").get("baseline") == 27 * 60.0
    assert config.outputs.alertmanager is not None
    assert config.outputs.alertmanager.urls == ("http://127.0.0.1:9093",)
    assert config.outputs.alertmanager.resend_interval_s == 30.0
    assert config.outputs.webhook is not None


# ---------------------------------------------------------------- documentation


def test_every_condition_and_key_is_documented_and_in_the_example() -> None:
    import re
    import tomllib

    from agent.alerts.schema import CONDITIONS

    root = Path(__file__).resolve().parent.parent
    doc = (root / "docs" / "configuration.md").read_text()
    example = (root / "config" / "egress-agent.example.toml").read_text()
    for name, spec in CONDITIONS.items():
        assert f"| `{name}` | {spec.alertnames[0]} |" in doc, name
        assert f"# [alerts.{name}]\n" in example, name
        for key in spec.params:
            assert f"| `{name}` | `{key}` |" in doc, (name, key)
    # uncommented, the example's [alerts] section is valid and gives the defaults
    section = example[example.index("[alerts]"):example.index("# [outputs.alertmanager]")]
    uncommented = re.sub(r"^# (\[alerts\.|\w+ = )", r"\1", section, flags=re.M)
    uncommented = re.sub(r"^# .*$", "", uncommented, flags=re.M)
    text = BASE.format(data_dir="/tmp/x") + uncommented
    assert parse_config(tomllib.loads(text)).alerts == parse_config(
        tomllib.loads(BASE.format(data_dir="/tmp/x"))).alerts


# ---------------------------------------------------------------- alert outputs


def test_alert_lines_are_found_and_parsed_back(h: Harness) -> None:
    from agent.outputs.alerts import alert_lines, state_changes
    from agent.points import LineEncoder

    h.point("link_event", {"interface": "eth 1,x", "carrier": "tele=com", "state": "down"},
            {"up": False, "detail": 'said "no"\\ and left'})
    h.clock.advance(2)
    h.point("link_event", {"interface": "eth 1,x", "carrier": "tele=com", "state": "up"},
            {"up": True, "detail": "up"})
    encoder = LineEncoder(version=2)
    other = [Point("host", {"host": "edge-1"}, {"cpu_percent": 1.0}, 1)]
    body, _ = encoder.encode_body([*h.emitted[:1], *other, h.emitted[1]])
    assert len(alert_lines(body)) == 2
    body_first_last, _ = encoder.encode_body(h.emitted)
    assert len(alert_lines(body_first_last)) == 2
    assert alert_lines(encoder.encode_body(other)[0]) == []
    firing, resolved = state_changes(body)
    assert firing["firing"] and not resolved["firing"]
    assert firing["labels"]["carrier"] == "tele=com"
    assert firing["labels"]["interface"] == "eth 1,x"
    assert "state" not in firing["labels"]
    assert firing["annotations"]["summary"].endswith('said "no"\\ and left')
    assert firing["fingerprint"] == fingerprint(firing["labels"])
    assert firing["endsAt"] == "0001-01-01T00:00:00Z"
    assert resolved["startsAt"] == firing["startsAt"]
    assert resolved["endsAt"] > resolved["startsAt"]


def test_pending_without_confirmation_is_dropped_and_removed_carrier_resolves(
        tmp_path: Path) -> None:
    import tomllib

    h = Harness(tmp_path)
    session(h, state="down")  # pending (for 30s), then the collector stops
    h.clock.advance(301)
    h.engine.tick(None)
    assert h.engine.active() == [] and h.changes() == []
    h.point("link_event", {"interface": "eth2", "carrier": "unicom", "state": "down"},
            {"up": False, "detail": "admin down"})
    assert h.firing("UplinkDown")
    text = BASE.format(data_dir=tmp_path).replace('name = "unicom"', 'name = "cmcc"')
    h.engine.reconfigure(parse_config(tomllib.loads(text)))
    assert not h.firing() and [s for s, _ in h.changes()] == ["firing", "resolved"]


def test_webhook_retry_does_not_post_again_what_was_taken(h: Harness) -> None:
    import http.server
    import threading

    from agent.config import WebhookConfig
    from agent.outputs.alerts import WebhookOutput
    from agent.outputs.base import RetryableWriteError
    from agent.points import LineEncoder

    got: list[dict[str, Any]] = []
    answers = [200, 503, 200, 200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status = answers.pop(0)
            if status == 200:
                got.append(body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for state in ("down", "up", "down"):
            h.point("link_event", {"interface": "eth1", "carrier": "telecom", "state": state},
                    {"up": state == "up", "detail": state})
            h.clock.advance(1)
        body, _ = LineEncoder(version=2).encode_body(h.emitted)
        output = WebhookOutput(WebhookConfig(url=f"http://127.0.0.1:{server.server_port}/x"))
        with pytest.raises(RetryableWriteError):
            output.send(body)  # the first state change taken, the second refused
        output.send(body)  # the retry of the batch
        assert [b["status"] for b in got] == ["firing", "resolved", "firing"]
        assert got[0]["version"] == "4" and got[0]["receiver"] == "egress-agent"
        assert got[0]["groupLabels"] == {"alertname": "UplinkDown"}
    finally:
        server.shutdown()
        server.server_close()


def test_report_lists_alert_state_changes_as_events(h: Harness) -> None:
    from agent.report import summarize

    h.point("link_event", {"interface": "eth1", "carrier": "telecom", "state": "down"},
            {"up": False, "detail": "carrier lost"})
    summary = summarize(iter(h.emitted))
    [event] = summary["events"]
    assert event["measurement"] == "alert" and event["alertname"] == "UplinkDown"
    assert event["state"] == "firing"
    assert event["summary"] == "uplink eth1 of telecom is down: carrier lost"
    assert summary["carriers"] == {}


def test_c_select_agrees_with_python() -> None:
    import random

    from agent.alerts import engine

    if engine._c_select is None:
        pytest.skip("agent._lineproto not built")
    rng = random.Random(7)
    names = ["link", "link_event", "host", "probe", "bgp_session", "alert", "linkx", ""]
    interfaces = ["eth0", "eth1", "eth2", "eth 3", "", None]
    points = []
    for i in range(5000):
        tags: dict[str, str] = {"host": "h"}
        interface = rng.choice(interfaces)
        if interface is not None:
            tags["interface"] = interface
        points.append(Point(rng.choice(names), tags, {"v": i}, i))
    wanted = frozenset({"link_event", "probe", "bgp_session"})
    uplinks = frozenset({"eth1", "eth 3"})
    for values in (uplinks, frozenset()):
        expected = engine.select_points(points, wanted, "link", "interface", values)
        got = engine._c_select(points, wanted, "link", "interface", values)
        assert [p.time_ns for p in got] == [p.time_ns for p in expected]
        assert all(a is b for a, b in zip(got, expected, strict=True))
    assert engine._c_select([], wanted, "link", "interface", uplinks) == []
