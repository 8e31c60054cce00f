"""Tests of the lab: real servers (InfluxDB 1.6.7, VictoriaMetrics) and the namespace lab."""

from __future__ import annotations

import time

import pytest

from tests.lab.servers import InfluxDBv1, VictoriaMetrics

# ---------------------------------------------------------------- servers


@pytest.mark.servers
def test_influxdb_v1_write_query_and_restart_keeps_data(influxdb_v1: InfluxDBv1) -> None:
    db = influxdb_v1.db  # type: ignore[attr-defined]
    influxdb_v1.write(db, "probe,carrier=telecom,target=t rtt_avg_ms=12.5 1700000000000000000\n"
                          "probe,carrier=unicom,target=t rtt_avg_ms=25 1700000000000000000\n")
    rows = influxdb_v1.query('SELECT rtt_avg_ms, carrier FROM probe ORDER BY time', db=db)
    assert sorted((r["carrier"], r["rtt_avg_ms"]) for r in rows) == [
        ("telecom", 12.5), ("unicom", 25)]
    assert rows[0]["time"] == 1700000000000000000
    port = influxdb_v1.port
    influxdb_v1.stop()
    assert not influxdb_v1.running()
    influxdb_v1.start()
    assert influxdb_v1.port == port
    assert influxdb_v1.count(db, "probe", "rtt_avg_ms") == 2


@pytest.mark.servers
def test_influxdb_v1_query_error_is_raised(influxdb_v1: InfluxDBv1) -> None:
    with pytest.raises(Exception, match="error"):
        influxdb_v1.query("SELECT * FROM", db=influxdb_v1.db)  # type: ignore[attr-defined]


@pytest.mark.servers
def test_victoria_metrics_v2_write_export_and_restart(victoria_metrics: VictoriaMetrics) -> None:
    from influxdb_client import InfluxDBClient
    from influxdb_client.client.write_api import SYNCHRONOUS

    now_ns = time.time_ns()
    with InfluxDBClient(url=victoria_metrics.url, token="any", org="ops") as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            bucket="egress", record=f"probe,carrier=mobile rtt_avg_ms=40.5,sent=10i {now_ns}")
    series = victoria_metrics.export('{__name__=~"probe_.*"}', min_samples=2)
    got = {s["metric"]["__name__"]: s["values"] for s in series}
    assert got == {"probe_rtt_avg_ms": [40.5], "probe_sent": [10]}
    assert series[0]["metric"]["carrier"] == "mobile"
    assert abs(series[0]["timestamps"][0] - now_ns // 1_000_000) <= 1
    victoria_metrics.stop()
    victoria_metrics.start()
    assert len(victoria_metrics.export("probe_rtt_avg_ms")) == 1


@pytest.mark.servers
def test_shared_influxdb_fresh_db_is_empty(influxdb_v1_shared: InfluxDBv1, fresh_db: str) -> None:
    assert influxdb_v1_shared.query("SHOW MEASUREMENTS", db=fresh_db) == []
    influxdb_v1_shared.write(fresh_db, "m v=1 1\n")
    assert influxdb_v1_shared.count(fresh_db, "m", "v") == 1
