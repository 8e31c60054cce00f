"""Traceroute hops annotated with origin AS from the running daemon's BGP tables.

The agent runs as a daemon in the lab (real ExaBGP sessions with each carrier's BIRD);
`egress-agent traceroute` then asks it over the control socket (`bgp.lookup`), and the
daemon's own `traceroute` points carry `as_path`. The watched prefix 203.0.113.0/24 comes
from every carrier with AS path [carrier, 64496], so the target hop is AS64496.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[1]
TARGET_AS = 64496


@pytest.fixture
def daemon(lab: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    candidates = [Path("/usr/sbin/exabgp"), Path(sys.executable).parent / "exabgp"]
    if shutil.which("exabgp") is None and not any(p.exists() for p in candidates):
        pytest.skip("exabgp not installed (scripts/setup installs it)")
    config = lab.agent_config(tmp_path / "agent.toml")
    text = config.read_text()
    text = text.replace('[traceroute]\ninterval = "30s"', '[traceroute]\ninterval = "2s"')
    assert 'interval = "2s"' in text
    config.write_text(text)
    socket_path = str(lab.workdir / "agent-control.sock")
    log = (tmp_path / "agent.log").open("w")
    proc = lab.popen_in_agent_ns(
        [sys.executable, "-m", "agent.cli", "run", "-c", str(config), "--duration", "120"],
        stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        yield {"config": config, "socket": socket_path, "proc": proc,
               "log": tmp_path / "agent.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def wait_for_route(socket_path: str, address: str, timeout_s: float = 60.0) -> dict[str, Any]:
    from agent.control import ControlError, call

    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = call(socket_path, "bgp.lookup", {"address": address}, 2.0)
            if isinstance(last, dict) and last and all(v for v in last.values()):
                return last
        except ControlError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise AssertionError(f"no route to {address} in the daemon's tables: {last}")


def test_traceroute_annotated_by_the_running_daemon(lab: Any, daemon: dict[str, Any]) -> None:
    routes = wait_for_route(daemon["socket"], lab.target)
    assert {r["origin_as"] for r in routes.values()} == {TARGET_AS}, routes

    proc = subprocess.run(
        ["ip", "netns", "exec", lab.agent_ns, sys.executable, "-m", "agent.cli", "traceroute",
         lab.target, "--json", "-c", str(daemon["config"])],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert [r["carrier"] for r in results] == [c.name for c in lab.carriers]
    for r in results:
        c = lab.carrier(r["carrier"])
        assert [h["address"] for h in r["hops"]] == [c.gateway, "100.66.0.254", lab.target]
        assert r["hops"][-1]["origin_as"] == TARGET_AS
        assert r["as_path"].split()[-1] == str(TARGET_AS)
        assert all("origin_as" in h for h in r["hops"])

    table = subprocess.run(
        ["ip", "netns", "exec", lab.agent_ns, sys.executable, "-m", "agent.cli", "traceroute",
         lab.target, "-c", str(daemon["config"]), "--carrier", "unicom"],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert table.returncode == 0, table.stderr
    assert f"{lab.target}" in table.stdout and f"AS{TARGET_AS}" in table.stdout


def test_daemon_writes_annotated_traceroute_points(lab: Any, daemon: dict[str, Any]) -> None:
    wait_for_route(daemon["socket"], lab.target)
    deadline = time.monotonic() + 40
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = [r for r in lab.influxdb.query(
            "SELECT * FROM traceroute WHERE target = '203.0.113.10'", db="egress")
            if r.get("as_path")]
        if {r["carrier"] for r in rows} == {c.name for c in lab.carriers}:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"no annotated traceroute points: {rows}\n"
                             + daemon["log"].read_text()[-3000:])
    for row in rows:
        c = lab.carrier(row["carrier"])
        assert row["hops"] == 3 and row["reached"] is True
        assert row["path"] == f"{c.gateway} 100.66.0.254 {lab.target}"
        assert row["as_path"].split()[-1] == str(TARGET_AS)
        assert row["time"] % 2_000_000_000 == 0  # aligned to [traceroute].interval
