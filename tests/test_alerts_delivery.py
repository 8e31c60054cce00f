"""Alerts delivered to a real Prometheus Alertmanager (and a webhook receiver of the test),
through the agent's pipeline, spool and outputs: firing and resolved, an Alertmanager
outage, a killed agent."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from agent.config import load_config
from agent.daemon import Agent
from agent.points import Point
from tests.agentproc import AgentProcess, write_config
from tests.lab.servers import Alertmanager, WebhookReceiver

pytestmark = pytest.mark.servers

CARRIERS = """
[[carriers]]
name = "telecom"
interface = "eth1"
committed_mbps = 1000
"""


def am_output(am: Alertmanager, resend: str = "1s") -> str:
    return f"""
[outputs.alertmanager]
urls = ["{am.url}"]
resend_interval = "{resend}"
max_retry_delay = "1s"
"""


def link_event(state: str, detail: str) -> Point:
    return Point("link_event", {"interface": "eth1", "carrier": "telecom", "state": state},
                 {"up": state == "up", "detail": detail}, time.time_ns())


async def until(check: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = await asyncio.to_thread(check)
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout_s}s: {check}")


def find(receiver: WebhookReceiver, alertname: str, status: str) -> list[dict[str, Any]]:
    return [a for a in receiver.alerts()
            if a["labels"].get("alertname") == alertname and a["status"] == status]


def test_link_down_reaches_alertmanager_and_resolves(
    tmp_path: Path, alertmanager: Alertmanager, webhook_receiver: WebhookReceiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    direct = WebhookReceiver()  # the agent's own [outputs.webhook]
    config = load_config(write_config(
        tmp_path, CARRIERS + am_output(alertmanager)
        + f'[outputs.webhook]\nurl = "{direct.url}"\n', collectors="[]"))

    async def scenario() -> None:
        agent = Agent(config)
        await agent.start()
        try:
            down_at = time.monotonic()
            agent.pipeline.emit([link_event("down", "carrier lost")])
            await until(lambda: any(a["labels"].get("alertname") == "UplinkDown"
                                    for a in alertmanager.alerts(active_only=True)))
            to_api_s = time.monotonic() - down_at
            alert = await asyncio.to_thread(webhook_receiver.wait_for, "UplinkDown", "firing")
            assert alert["labels"]["carrier"] == "telecom"
            assert alert["labels"]["interface"] == "eth1"
            assert alert["labels"]["severity"] == "critical"
            assert alert["labels"]["host"] == "test-host"
            assert alert["annotations"]["summary"] == "uplink eth1 of telecom is down: carrier lost"
            assert to_api_s < 2.0, to_api_s
            assert agent.alerts_list()["alerts"][0]["labels"]["alertname"] == "UplinkDown"
            # the CLI lists it from the running daemon
            socket = str(tmp_path / "run" / "control.sock")
            code = await asyncio.to_thread(main, ["alerts", "--socket", socket, "--json"])
            assert code == 0
            listed = json.loads(capsys.readouterr().out)["alerts"]
            assert [a["labels"]["alertname"] for a in listed] == ["UplinkDown"]
            await asyncio.to_thread(main, ["alerts", "--socket", socket])
            text = capsys.readouterr().out
            assert text.startswith("firing  critical  UplinkDown  carrier=telecom interface=eth1")
            assert "    uplink eth1 of telecom is down: carrier lost" in text
            await asyncio.to_thread(main, ["status", "--socket", socket])
            assert "alerts: 1 firing, 0 pending" in capsys.readouterr().out
            await asyncio.sleep(2.5)  # resends keep it active (endsAt ahead)
            output = agent.workers["alertmanager"][0].output
            assert output.resends >= 2  # type: ignore[attr-defined]
            assert any(a["labels"].get("alertname") == "UplinkDown"
                       for a in alertmanager.alerts(active_only=True))
            agent.pipeline.emit([link_event("up", "up")])
            resolved = await asyncio.to_thread(webhook_receiver.wait_for, "UplinkDown",
                                               "resolved")
            assert resolved["endsAt"] > resolved["startsAt"]
            assert agent.alerts_list()["alerts"] == []
            # the direct webhook: one POST per state change, Alertmanager's payload shape
            await until(lambda: len(direct.bodies) >= 2)
            firing, done = direct.bodies[:2]
            assert firing["version"] == "4" and firing["status"] == "firing"
            assert done["status"] == "resolved"
            [one] = firing["alerts"]
            assert one["labels"]["alertname"] == "UplinkDown"
            assert one["endsAt"] == "0001-01-01T00:00:00Z"
            assert len(one["fingerprint"]) == 16
            assert done["alerts"][0]["fingerprint"] == one["fingerprint"]
            status = agent.status()
            assert status["outputs"]["alertmanager"]["lag_points"] == 0
            assert status["alerts"]["fired_total"] == 1
        finally:
            await agent.stop()
            direct.close()

    asyncio.run(scenario())
    # alert points are in the spool (the `alert` measurement) for InfluxDB and Grafana
    from agent.spool import Spool

    spool = Spool(tmp_path / "data", read_only=True)
    states = [p.tags["state"] for p in spool.iter_points() if p.measurement == "alert"]
    assert states == ["firing", "resolved"]
    assert len(find(webhook_receiver, "UplinkDown", "firing")) >= 1


def test_alertmanager_outage_delays_but_loses_nothing(
    tmp_path: Path, alertmanager: Alertmanager, webhook_receiver: WebhookReceiver
) -> None:
    config = load_config(write_config(tmp_path, CARRIERS + am_output(alertmanager),
                                      collectors="[]"))

    async def scenario() -> None:
        agent = Agent(config)
        await agent.start()
        try:
            await asyncio.to_thread(alertmanager.stop)
            agent.pipeline.emit([link_event("down", "admin down")])
            await until(lambda: agent.status()["outputs"]["alertmanager"]["retries"] >= 2)
            output = agent.status()["outputs"]["alertmanager"]
            assert output["lag_points"] >= 1 and output["last_error"]
            assert find(webhook_receiver, "UplinkDown", "firing") == []
            await asyncio.to_thread(alertmanager.start)
            alert = await asyncio.to_thread(webhook_receiver.wait_for, "UplinkDown", "firing")
            assert "admin down" in alert["annotations"]["summary"]
            await until(lambda: agent.status()["outputs"]["alertmanager"]["lag_points"] == 0)
        finally:
            await agent.stop()

    asyncio.run(scenario())


def test_unreachable_alertmanager_at_start_is_a_warning(tmp_path: Path) -> None:
    config = write_config(tmp_path, CARRIERS + """
[outputs.alertmanager]
urls = ["http://127.0.0.1:9"]
max_retry_delay = "1s"
""", collectors="[]")
    agent = AgentProcess(config, duration_s=3)
    assert agent.wait(30) == 0, agent.log()
    log = agent.log()
    assert "not reachable at start" in log
    assert "Traceback" not in log


def test_killed_agent_keeps_its_firing_alert_and_resolves_it(
    tmp_path: Path, influxdb_v1: Any, webhook_receiver: WebhookReceiver
) -> None:
    """A real condition in a real daemon: an InfluxDB output that cannot deliver makes
    OutputLagging fire; kill -9 the agent; after the restart the alert is still firing,
    not announced again, and resolves when InfluxDB is back."""
    influxdb_v1.stop()
    config = write_config(tmp_path, f"""
[outputs.influxdb_v1]
url = "{influxdb_v1.url}"
database = "egress"
max_retry_delay = "1s"

[outputs.webhook]
url = "{webhook_receiver.url}"

[alerts.output_lagging]
lag = "2s"
""", collectors='["host"]')
    socket = tmp_path / "run" / "control.sock"
    agent = AgentProcess(config)
    try:
        webhook_receiver.wait_for("OutputLagging", "firing", timeout=30, output="influxdb_v1")
        # (the output writes its cursor right after a notification; a kill in the
        # milliseconds between the POST and that write would notify once more: at least
        # once, as every delivery of the spool)
        time.sleep(0.2)
        agent.kill()
        assert json.loads((tmp_path / "data" / "alerts" / "state.json").read_text())["firing"]
        agent = AgentProcess(config)
        from agent.control import call

        deadline = time.monotonic() + 20
        listed: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                listed = call(socket, "alerts", timeout_s=2)["alerts"]
                break
            except Exception:
                time.sleep(0.2)
        assert [a["labels"]["alertname"] for a in listed] == ["OutputLagging"]
        assert listed[0]["state"] == "firing"
        influxdb_v1.start()
        webhook_receiver.wait_for("OutputLagging", "resolved", timeout=40)
        firing = [a for a in webhook_receiver.alerts() if a["status"] == "firing"]
        assert len(firing) == 1, firing  # not announced again after the restart
    finally:
        if agent.proc.poll() is None:
            agent.terminate()
