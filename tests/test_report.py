"""report: summary of stored points, per carrier, from the embedded store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import main
from agent.pipeline import Pipeline
from agent.points import Point
from agent.report import render_text, summarize
from agent.spool import Spool


def sample() -> list[Point]:
    return [
        Point("host", {"host": "h"}, {"cpu_percent": 10.0}, 1),
        Point("host", {"host": "h"}, {"cpu_percent": 30.0}, 2),
        Point("link", {"host": "h", "interface": "eth1", "carrier": "telecom"},
              {"rx_bps": 1000.0, "rx_util": 0.000125, "oper_up": True}, 1),
        Point("link", {"host": "h", "interface": "eth1", "carrier": "telecom"},
              {"rx_bps": 3000.0, "rx_util": 0.000375, "oper_up": False}, 2),
        Point("bgp_event", {"host": "h", "carrier": "telecom", "kind": "origin_mismatch"},
              {"prefix": "198.51.100.0/24", "origin_as": 65001}, 3),
    ]


def test_summarize_groups_by_carrier_and_keeps_last_mean_max() -> None:
    summary = summarize(sample())
    link = summary["carriers"]["telecom"]["link"]
    assert link["rx_bps"] == {"last": 3000.0, "mean": 2000.0, "max": 3000.0}
    assert link["oper_up"]["last"] is False
    assert summary["host"]["host"]["cpu_percent"]["mean"] == 20.0
    assert summary["events"][0]["kind"] == "origin_mismatch"
    text = render_text(summary, "15m")
    assert "rx_util=0.000375 (mean 0.00025, max 0.000375)" in text
    assert "bgp_event: carrier=telecom, kind=origin_mismatch" in text


def test_report_command_reads_the_spool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import time

    now = time.time_ns()
    points = sample()
    for point in points:
        point.time_ns = now - 1_000_000_000 + point.time_ns
    spool = Spool(tmp_path / "data")
    record = Pipeline(spool, "h").encode(points)
    assert record is not None
    spool.append(record)
    spool.close()
    config = tmp_path / "agent.toml"
    config.write_text(f'[agent]\ndata_dir = "{tmp_path / "data"}"\n')
    assert main(["report", "-c", str(config), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["points"] == 5
    assert summary["carriers"]["telecom"]["link"]["rx_bps"]["max"] == 3000.0
    assert main(["report", "-c", str(config), "--since", "soon"]) == 2
    assert "--since: bad duration" in capsys.readouterr().err
