"""Prometheus exporter over real HTTP, read back with prometheus-client's own parser."""

from __future__ import annotations

import math
import threading
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.outputs.prometheus import (
    PrometheusExporter,
    label_name,
    metric_name,
    parse_listen,
)
from agent.points import Point


@pytest.fixture
def exporter() -> Iterator[PrometheusExporter]:
    exp = PrometheusExporter("127.0.0.1:0")
    exp.start()
    yield exp
    exp.close()


def scrape(exp: PrometheusExporter) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """GET /metrics and parse it: {sample name: {sorted labels: value}}; types checked."""
    host, port = exp.address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("egress_exporter_"):
            assert family.type == "gauge", family
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def link_point(interface: str, rx_bytes: int, up: bool) -> Point:
    return Point(
        "link",
        {"host": "edge-1", "interface": interface, "carrier": "telecom"},
        {"rx_bytes": rx_bytes, "rx_bps": 812.5, "oper_up": up, "detail": "text is skipped"},
        1_700_000_000_000_000_000,
    )


def test_names_labels_values_over_http(exporter: PrometheusExporter) -> None:
    exporter.observe([link_point("eth1", 1000, True)])
    exporter.observe(
        [
            link_point("eth1", 2500, False),  # later value of the same series wins
            Point("host", {"host": "edge-1"}, {"cpu_percent": 12.5, "load1": 0}),
            Point(
                "quality",
                {"host": "edge-1", "carrier": "unicom", "target": "114.114.114.114"},
                {"status": "degraded", "score": 71.0, "best": True},
            ),
        ]
    )
    metrics = scrape(exporter)
    eth1 = (("carrier", "telecom"), ("host", "edge-1"), ("interface", "eth1"))
    assert metrics["egress_link_rx_bytes"] == {eth1: 2500.0}
    assert metrics["egress_link_rx_bps"] == {eth1: 812.5}
    assert metrics["egress_link_oper_up"] == {eth1: 0.0}
    assert "egress_link_detail" not in metrics
    assert metrics["egress_host_cpu_percent"] == {(("host", "edge-1"),): 12.5}
    assert metrics["egress_host_load1"] == {(("host", "edge-1"),): 0.0}
    quality = (("carrier", "unicom"), ("host", "edge-1"), ("target", "114.114.114.114"))
    assert metrics["egress_quality_best"] == {quality: 1.0}
    assert metrics["egress_quality_score"] == {quality: 71.0}
    assert "egress_quality_status" not in metrics
    assert metrics["egress_exporter_series"] == {(): 7.0}
    assert metrics["egress_exporter_samples_dropped_total"] == {(): 0.0}


def test_hostile_names_and_values_stay_parseable(exporter: PrometheusExporter) -> None:
    exporter.observe(
        [
            Point(
                "bgp-session",
                {
                    "peer as": "4134",
                    "1st": "a",
                    "__name__": "spoof",
                    "community": 'x"y\\z\nnext, line=1',
                    "empty": "",
                },
                {"rx.bytes/s": 1, "nan": math.nan, "inf": math.inf},
            )
        ]
    )
    metrics = scrape(exporter)
    labels = (
        ("community", 'x"y\\z\nnext, line=1'),
        ("peer_as", "4134"),
        ("tag_1st", "a"),
        ("tag___name__", "spoof"),
    )
    assert metrics["egress_bgp_session_rx_bytes_s"] == {labels: 1.0}
    assert math.isnan(metrics["egress_bgp_session_nan"][labels])
    assert metrics["egress_bgp_session_inf"][labels] == math.inf


def test_series_bound_counts_what_was_left_out() -> None:
    exp = PrometheusExporter("127.0.0.1:0", max_series=3)
    exp.start()
    try:
        exp.observe(
            [Point("probe", {"target": f"192.0.2.{i}"}, {"loss_pct": float(i)}) for i in range(5)]
        )
        exp.observe([Point("probe", {"target": "192.0.2.0"}, {"loss_pct": 50.0})])  # known
        metrics = scrape(exp)
        assert len(metrics["egress_probe_loss_pct"]) == 3
        assert metrics["egress_probe_loss_pct"][(("target", "192.0.2.0"),)] == 50.0
        assert metrics["egress_exporter_series"] == {(): 3.0}
        assert metrics["egress_exporter_series_limit"] == {(): 3.0}
        assert metrics["egress_exporter_samples_dropped_total"] == {(): 2.0}
    finally:
        exp.close()


def test_stale_series_are_forgotten() -> None:
    exp = PrometheusExporter("127.0.0.1:0", stale_after_s=0.2)
    exp.start()
    try:
        exp.observe([Point("disk", {"mount": "/old"}, {"free_bytes": 1})])
        assert (("mount", "/old"),) in scrape(exp)["egress_disk_free_bytes"]
        threading.Event().wait(0.4)
        exp.observe([Point("disk", {"mount": "/new"}, {"free_bytes": 2})])
        assert scrape(exp)["egress_disk_free_bytes"] == {(("mount", "/new"),): 2.0}
    finally:
        exp.close()


def test_concurrent_observe_and_scrape(exporter: PrometheusExporter) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(300):
                exporter.observe([Point("agent", {"host": f"h{n}"}, {"queue_points": i})])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for _ in range(10):
        scrape(exporter)
    for t in threads:
        t.join()
    assert errors == []
    final = scrape(exporter)["egress_agent_queue_points"]
    assert final == {(("host", f"h{n}"),): 299.0 for n in range(4)}


def test_close_releases_the_port() -> None:
    exp = PrometheusExporter("127.0.0.1:0")
    exp.start()
    host, port = exp.address
    exp.close()
    again = PrometheusExporter(f"{host}:{port}")
    again.start()  # would raise "address in use" if the socket were still bound
    again.close()


def test_ipv6_listen() -> None:
    exp = PrometheusExporter("[::1]:0")
    try:
        exp.start()
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        exp.observe([Point("host", {"host": "h"}, {"load1": 1.5})])
        with urllib.request.urlopen(f"http://[::1]:{exp.address[1]}/metrics", timeout=5) as r:
            assert 'egress_host_load1{host="h"} 1.5' in r.read().decode()
    finally:
        exp.close()


def test_naming_and_listen_parsing() -> None:
    assert metric_name("link", "rx_bytes") == "egress_link_rx_bytes"
    assert metric_name("bgp-event", "as path") == "egress_bgp_event_as_path"
    assert label_name("peer_as") == "peer_as"
    assert label_name("9x") == "tag_9x"
    assert label_name("") == "tag_"
    assert parse_listen("127.0.0.1:9273") == ("127.0.0.1", 9273)
    assert parse_listen("[::1]:9273") == ("::1", 9273)
    assert parse_listen(":9273") == ("0.0.0.0", 9273)
    for bad in ("127.0.0.1", "host:port", "::1:9273", "1.2.3.4:70000", "[zz]:1"):
        with pytest.raises(ValueError):
            parse_listen(bad)


def test_help_and_type_come_from_the_schema(exporter: PrometheusExporter) -> None:
    exporter.observe([link_point("eth1", 1000, True),
                      Point("undeclared", {"host": "edge-1"}, {"n": 1})])
    host, port = exporter.address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert ("# HELP egress_link_rx_bytes link.rx_bytes: cumulative bytes (64-bit kernel "
            "counters, RTM_GETSTATS) [bytes] (a counter, exposed as a gauge)\n") in text
    assert "# TYPE egress_link_rx_bytes gauge\n" in text
    assert ("# HELP egress_link_oper_up link.oper_up: admin up, carrier on, and not "
            "dormant/testing/notpresent\n") in text
    assert "# HELP egress_undeclared_n Latest value of field 'n' of 'undeclared'.\n" in text
    assert "# TYPE egress_undeclared_n gauge\n" in text
