"""The command line's tables (tabulate), exit codes and contributed subcommands.

The probe and traceroute tables are compared with the layout the hand-aligned code printed
before tabulate (captured from it on the same data); status, alerts and rpki lines are
columns now, so a long collector or carrier name no longer shifts a row.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from agent.cli import main, render_alerts, render_status
from agent.config import parse_config
from agent.exitcodes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from agent.tables import table
from collectors.probes.cli import render_table, render_traces
from collectors.probes.quality import assess
from collectors.probes.rounds import ProbeResult, RoundResult
from collectors.probes.stats import compute_stats
from collectors.probes.traceroute import Hop, TraceResult

PROBE_TABLE = """\
example.net (192.0.2.7)  icmp
                telecom  unicom-backup *  mobile
sent                  4                4       4
received              3                4       0
loss %             25.0              0.0   100.0
rtt min ms       10.000           29.500       -
rtt avg ms       10.583           30.250       -
rtt median ms    10.250           30.250       -
rtt p95 ms       11.375           30.925       -
rtt max ms       11.500           31.000       -
jitter ms         1.375            1.167       -
stddev ms         0.804            0.645       -
status         degraded               ok    down
score               0.0             91.5     0.0
* best carrier for this target"""

TRACES = """\
traceroute to example.net (192.0.2.7) (icmp)
ttl  telecom                      unicom-backup
1    100.64.0.1 0.500 ms AS64500  100.64.1.1 0.750 ms AS?
2    *
3    192.0.2.7 12.250 ms AS64496
     reached                      not reached: no reply
telecom: AS path 64500 64496
unicom-backup: AS path -"""


def result(carrier: str, rtts: list[float | None]) -> ProbeResult:
    return ProbeResult("example.net", carrier, "icmp", "192.0.2.7", RoundResult(rtts),
                       compute_stats(rtts))


def test_probe_table_keeps_its_layout() -> None:
    results = [result("telecom", [10.0, 11.5, None, 10.25]),
               result("unicom-backup", [30.0, 31.0, 29.5, 30.5]),
               result("mobile", [None, None, None, None])]
    qualities = assess("example.net", {r.carrier: r.stats for r in results},
                       parse_config({}).quality)
    assert render_table("example.net", "192.0.2.7", "icmp", results, qualities) == PROBE_TABLE


def test_traceroute_table_keeps_its_layout() -> None:
    traces = [
        TraceResult("example.net", "telecom", "icmp", "192.0.2.7",
                    [Hop(1, "100.64.0.1", 0.5, 64500), Hop(2, None),
                     Hop(3, "192.0.2.7", 12.25, 64496)], reached=True, annotated=True),
        TraceResult("example.net", "unicom-backup", "icmp", "192.0.2.7",
                    [Hop(1, "100.64.1.1", 0.75, None)], annotated=True, error="no reply"),
    ]
    assert render_traces(traces) == TRACES


def test_status_and_alert_lines_are_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        status = {
            "host": "edge-1", "config": "/etc/egress-agent/agent.toml", "queue_points": 3,
            "spool": {"bytes": 4096},
            "collectors": [
                {"name": "host", "kind": "polled", "last_run_ns": 1764555240_000_000_000,
                 "runs": 12, "errors": 0, "overruns": 0, "restarts": 0, "last_error": ""},
                {"name": "probes:dns-114", "kind": "polled", "last_run_ns": 0, "runs": 3,
                 "errors": 1, "overruns": 2, "restarts": 0, "last_error": "OSError: boom"},
            ],
            "outputs": {"influxdb_v1": {"points_written": 100, "lag_points": 0,
                                        "write_errors": 0, "retries": 0, "last_error": ""}},
        }
        assert render_status(status).splitlines()[1:5] == [
            "collectors:",
            "  host            polled  last 02:14:00  runs 12  errors 0  overruns 0  restarts 0",
            "  probes:dns-114  polled  last -         runs 3   errors 1  overruns 2  restarts 0"
            "  (OSError: boom)",
            "outputs:",
        ]
        alerts = [
            {"state": "firing", "fired_at": 1764555243,
             "labels": {"alertname": "UplinkDown", "severity": "critical", "host": "h",
                        "carrier": "telecom", "interface": "eth1"},
             "annotations": {"summary": "uplink eth1 of telecom is down: carrier lost"}},
            {"state": "pending", "active_at": 1764555220, "fired_at": 0,
             "labels": {"alertname": "UplinkUtilization", "severity": "warning",
                        "carrier": "unicom", "interface": "eth2"},
             "annotations": {"summary": "unicom uplink eth2 rx at 91.3 %"}},
        ]
        assert render_alerts(alerts) == textwrap.dedent("""\
            firing   critical  UplinkDown         carrier=telecom interface=eth1  since 2025-12-01 02:14:03
                uplink eth1 of telecom is down: carrier lost
            pending  warning   UplinkUtilization  carrier=unicom interface=eth2   since 2025-12-01 02:13:40
                unicom uplink eth2 rx at 91.3 %""")  # noqa: E501
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_table_of_nothing_and_ragged_rows() -> None:
    assert table([]) == []
    assert table([["a", "bb"], ["ccc"]], indent="  ") == ["  a    bb", "  ccc"]


def test_probe_usage_errors_exit_2_through_the_core(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "192.0.2.1", "--count", "0"]) == EXIT_USAGE
    assert capsys.readouterr().err.strip() == (
        "error: egress-agent probe: argument --count: --count must be 1-10000, got 0")
    assert main(["probe", "192.0.2.1", "--count", "10000", "--interval", "1000"]) == EXIT_USAGE
    assert capsys.readouterr().err.strip() == (
        "error: --count x --interval must stay within 600 s")
    assert main(["traceroute", "no-such-host.invalid"]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot resolve target 'no-such-host.invalid': ")
    assert (EXIT_OK, EXIT_FAILURE) == (0, 1)


def test_probe_commands_come_from_the_registry_and_run_never_loads_them() -> None:
    """`probe`/`traceroute` are found through the registry; parsing `run` (the daemon's
    command) imports neither a collector's CLI nor tabulate."""
    code = textwrap.dedent("""
        import sys
        from agent import cli
        cli.cmd_run = lambda args: print("run", args.duration) or 0
        assert cli.main(["run", "--duration", "1"]) == 0
        loaded = [m for m in sys.modules if m.startswith(("collectors.probes.cli",
                                                           "tabulate"))]
        assert not loaded, loaded
        args = cli.build_parser().parse_args(["probe", "192.0.2.1"])
        assert args.func.__module__ == "collectors.probes.cli"
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["run", "1.0", "ok"]
