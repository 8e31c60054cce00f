"""Zero loss against real servers: outages, a killed agent, a full spool, a rejected batch."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.agentproc import (
    AgentProcess,
    influx_times,
    spool_points,
    timestamps,
    vm_times,
    write_config,
)

pytestmark = pytest.mark.servers
SECOND_NS = 1_000_000_000


def v1_output(server: Any, extra: str = "") -> str:
    return f"""
[outputs.influxdb_v1]
url = "{server.url}"
database = "egress"
max_retry_delay = "1s"
{extra}
"""


def v2_output(server: Any) -> str:
    return f"""
[outputs.influxdb]
url = "{server.url}"
org = "ops"
bucket = "egress"
max_retry_delay = "1s"
gzip = true
"""


def wait_for_delivery(check: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)


def assert_every_interval_once(got: list[int], expected: list[int]) -> None:
    missing = sorted(set(expected) - set(got))[:5]
    extra = sorted(set(got) - set(expected))[:5]
    assert got == expected, f"missing {missing}, extra {extra}"
    assert len(set(got)) == len(got)
    gaps = [b - a for a, b in itertools.pairwise(got)]
    assert set(gaps) <= {SECOND_NS}, f"gaps {sorted(set(gaps))}"


def test_outage_of_each_server_loses_nothing(
    tmp_path: Path, influxdb_v1: Any, victoria_metrics: Any
) -> None:
    config = write_config(tmp_path, v1_output(influxdb_v1) + v2_output(victoria_metrics))
    agent = AgentProcess(config, duration_s=32, env={"INFLUX_TOKEN": "not-a-real-token"})
    time.sleep(3)
    influxdb_v1.stop()  # InfluxDB down for 10 s
    time.sleep(5)
    victoria_metrics.stop()  # overlapping outage of VictoriaMetrics, 10 s
    time.sleep(5)
    influxdb_v1.start()
    time.sleep(5)
    victoria_metrics.start()
    assert agent.wait(60) == 0, agent.log()
    expected = timestamps(spool_points(tmp_path / "data", "host"))
    assert len(expected) >= 28
    assert_every_interval_once(influx_times(influxdb_v1, "egress", "host", "cpu_percent"), expected)
    assert_every_interval_once(vm_times(victoria_metrics, "host_cpu_percent"), expected)
    log = agent.log()
    assert "retry in" in log  # the outages were seen and ridden out
    assert "not-a-real-token" not in log


def test_killed_agent_resumes_from_its_cursor(tmp_path: Path, influxdb_v1: Any) -> None:
    config = write_config(tmp_path, v1_output(influxdb_v1))
    influxdb_v1.stop()  # everything collected before the kill is only in the spool
    first = AgentProcess(config)
    time.sleep(5)
    first.kill()
    before_kill = timestamps(spool_points(tmp_path / "data", "host"))
    assert len(before_kill) >= 3
    influxdb_v1.start()
    second = AgentProcess(config, duration_s=5)
    assert second.wait(30) == 0, second.log()
    expected = timestamps(spool_points(tmp_path / "data", "host"))
    got = influx_times(influxdb_v1, "egress", "host", "cpu_percent")
    assert got == expected  # every collected interval, once
    assert set(before_kill) <= set(got)
    gaps = [b - a for a, b in itertools.pairwise(got)]
    # the only gap is the restart itself (the agent does not run while it is dead)
    assert sum(1 for g in gaps if g != SECOND_NS) <= 1
    assert max(gaps) <= 3 * SECOND_NS


def test_full_spool_drops_oldest_counts_and_keeps_running(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        '[outputs.influxdb_v1]\nurl = "http://127.0.0.1:9"\ndatabase = "egress"\n'
        'max_retry_delay = "1s"\n',
        interval="100ms",
        collectors='["host", "disk", "agent"]',
        extra_agent='spool_max_bytes = 24000',
    )
    agent = AgentProcess(config, duration_s=12)
    assert agent.wait(40) == 0, agent.log()
    spool_dir = tmp_path / "data" / "spool"
    assert sum(p.stat().st_size for p in spool_dir.glob("*.seg")) <= 24000
    agents = sorted(spool_points(tmp_path / "data", "agent"), key=lambda p: p.time_ns)
    assert agents, "the agent kept collecting"
    assert agents[-1].fields["points_dropped"] > 0
    assert "dropped segment" in agent.log()


def test_rejected_batch_is_kept_and_counted_not_retried(
    tmp_path: Path, influxdb_v1: Any
) -> None:
    # A real 400 from the real server: the field already exists with another type
    # (1.x checks field types per shard, so the conflicting point is of today).
    influxdb_v1.write("egress", f"host,host=test-host cpu_percent=1i {time.time_ns()}\n",
                      precision="ns")
    password_file = tmp_path / "pw"
    password_file.write_text("hunter2-secret\n")
    password_file.chmod(0o600)
    config = write_config(
        tmp_path,
        v1_output(influxdb_v1, f'username = "egress"\npassword_file = "{password_file}"'),
        collectors='["host", "agent"]',
    )
    agent = AgentProcess(config, duration_s=6)
    assert agent.wait(30) == 0, agent.log()
    rejected = list((tmp_path / "data" / "rejected").glob("influxdb_v1-*.lp"))
    assert rejected
    text = rejected[0].read_text()
    assert "field type conflict" in text and "host,host=test-host" in text
    assert "hunter2-secret" not in text and "hunter2-secret" not in agent.log()
    agents = sorted(spool_points(tmp_path / "data", "agent"), key=lambda p: p.time_ns)
    assert agents[-1].fields["write_errors"] >= 1
    # the agent's own points were not rejected and did arrive (not retried forever)
    assert influx_times(influxdb_v1, "egress", "agent", "rss_bytes")


def test_status_over_the_control_socket(tmp_path: Path) -> None:
    config = write_config(tmp_path, "", collectors='["host", "agent"]')
    agent = AgentProcess(config)
    try:
        socket_path = tmp_path / "run" / "control.sock"
        wait_for_delivery(socket_path.exists, 10)
        assert (socket_path.stat().st_mode & 0o777) == 0o660
        assert (socket_path.parent.stat().st_mode & 0o777) == 0o750
        time.sleep(2.5)
        import contextlib
        import io

        from agent.cli import main

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["status", "--json", "-c", str(config)]) == 0
        status = json.loads(out.getvalue())
        names = {c["name"] for c in status["collectors"]}
        assert names == {"host", "agent"}
        host = next(c for c in status["collectors"] if c["name"] == "host")
        assert host["runs"] >= 1 and host["errors"] == 0
        assert status["spool"]["bytes"] > 0
    finally:
        assert agent.terminate() == 0
