"""Alerts in the lab: a carrier takes the uplink down -> the agent's link_event -> the alert
engine -> the spool -> [outputs.alertmanager] -> a real Alertmanager -> the test's webhook
receiver, and resolved when the link returns.

The agent runs in this process (host namespace, where Alertmanager and the receiver listen
on loopback); its link-event collector watches the lab's agent namespace."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.config import parse_config
from agent.daemon import Agent
from tests.lab.servers import Alertmanager, WebhookReceiver

pytestmark = pytest.mark.lab


def lab_agent_config(lab: Any, tmp_path: Path, am: Alertmanager) -> Any:
    return parse_config({
        "agent": {"hostname": "lab", "data_dir": str(tmp_path / "data"),
                  "control_socket": str(tmp_path / "control.sock"), "collectors": []},
        "carriers": [
            {"name": c.name, "interface": c.uplink, "source": c.source, "table": c.table,
             "committed_mbps": 40}
            for c in lab.carriers
        ],
        "outputs": {"alertmanager": {"urls": [am.url], "resend_interval": "5s",
                                     "max_retry_delay": "1s"}},
    })


async def start_agent_in_lab(lab: Any, config: Any) -> tuple[Agent, Any]:
    from collectors.links.collector import LinkEventCollector

    agent = Agent(config)
    await agent.start()
    collector = LinkEventCollector(agent.ctx, netns=lab.agent_ns)
    agent.scheduler.start(collector)
    for _ in range(300):  # watching the namespace's links
        if collector._nl is not None and collector.verdicts:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    return agent, collector


async def until(check: Callable[[], Any], timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = await asyncio.to_thread(check)
        if result:
            return result
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within {timeout_s}s")


def am_has(am: Alertmanager, carrier: str) -> bool:
    return any(a["labels"].get("alertname") == "UplinkDown"
               and a["labels"].get("carrier") == carrier
               for a in am.alerts(active_only=True))


def test_uplink_down_alert_reaches_the_receiver_and_resolves(
    lab: Any, tmp_path: Path, alertmanager: Alertmanager, webhook_receiver: WebhookReceiver
) -> None:
    carrier = lab.carriers[0]
    config = lab_agent_config(lab, tmp_path, alertmanager)
    timings: dict[str, float] = {}

    async def scenario() -> None:
        agent, collector = await start_agent_in_lab(lab, config)
        try:
            t0 = time.monotonic()
            await asyncio.to_thread(lab.set_link, carrier.name, False)
            await until(lambda: am_has(alertmanager, carrier.name), 10)
            timings["link_down_to_alertmanager_s"] = time.monotonic() - t0
            alert = await asyncio.to_thread(webhook_receiver.wait_for, "UplinkDown", "firing",
                                            20.0, carrier=carrier.name)
            timings["link_down_to_receiver_s"] = time.monotonic() - t0
            assert alert["labels"]["interface"] == carrier.uplink
            assert alert["labels"]["severity"] == "critical"
            assert "carrier lost" in alert["annotations"]["summary"]
            # only that carrier
            others = [a for a in webhook_receiver.alerts()
                      if a["labels"].get("alertname") == "UplinkDown"
                      and a["labels"].get("carrier") != carrier.name]
            assert others == []
            await asyncio.to_thread(lab.set_link, carrier.name, True)
            await asyncio.to_thread(webhook_receiver.wait_for, "UplinkDown", "resolved", 20.0,
                                    carrier=carrier.name)
            assert not [a for a in agent.alerts.active()
                        if a["labels"]["alertname"] == "UplinkDown"]
        finally:
            await agent.scheduler.stop(collector)
            await agent.stop()

    try:
        asyncio.run(scenario())
    finally:
        lab.set_link(carrier.name, True)
    print("lab alert timings:", {k: round(v, 3) for k, v in timings.items()})
    assert timings["link_down_to_alertmanager_s"] <= 1.0, timings
