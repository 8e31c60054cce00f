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
    from collectors.links.events import LinkEventCollector

    agent = Agent(config)
    await agent.start()
    collector = LinkEventCollector(agent._context(config), netns=lab.agent_ns)
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


def test_bgp_session_and_hijack_alerts(
    lab: Any, tmp_path: Path, alertmanager: Alertmanager, webhook_receiver: WebhookReceiver
) -> None:
    """The daemon's bgp collector (ExaBGP in the lab's agent namespace) against the lab's
    BIRD carriers: a carrier's BIRD stopped -> BgpSessionDown after `for`, resolved when it
    is back; our prefix announced with a foreign origin from a carrier -> a critical
    OwnPrefixOriginMismatch at once, resolved when it is withdrawn."""
    from tests.lab.agent_bgp import EXABGP_50
    from tests.lab.lab import ANNOUNCE, LOCAL_AS, WATCH

    wrapper = tmp_path / "exabgp-in-agent-ns"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {lab.agent_ns} {EXABGP_50} "$@"\n')
    wrapper.chmod(0o755)
    config = parse_config({
        "agent": {"hostname": "lab", "interval": "1s", "data_dir": str(tmp_path / "data"),
                  "control_socket": str(tmp_path / "control.sock"), "collectors": ["bgp"]},
        "carriers": [{"name": c.name, "interface": c.uplink, "bgp": {
            "peer": c.gateway, "peer_as": c.asn, "local_address": c.source,
            "hold_time": 9}} for c in lab.carriers],
        "bgp": {"local_as": LOCAL_AS, "router_id": lab.carriers[0].source,
                "announce": list(ANNOUNCE), "watch": list(WATCH), "exabgp": str(wrapper),
                "interval": "1s"},
        "alerts": {"bgp_session_down": {"for": "3s"}},
        "outputs": {"alertmanager": {"urls": [alertmanager.url], "resend_interval": "5s",
                                     "max_retry_delay": "1s"}},
    })
    victim = lab.carriers[-1].name
    ours = ANNOUNCE[0]
    timings: dict[str, float] = {}

    async def scenario() -> None:
        agent = Agent(config)
        await agent.start()
        try:
            state = agent.groups["bgp"][1].collectors[0].state  # type: ignore[attr-defined]

            def all_up() -> bool:
                return all(p.fields["up"] for p in state.session_points())

            started = time.monotonic()
            await until(all_up, 60)
            timings["start_to_sessions_up_s"] = time.monotonic() - started
            await asyncio.sleep(1.5)
            assert not [a for a in agent.alerts.active()
                        if a["labels"]["alertname"] == "BgpSessionDown"
                        and a["state"] == "firing"]
            # Only what starts from here: sessions that took longer than `for` to come up
            # at start fired (and resolved) already, rightly, for every carrier.
            stopped_s = time.time()
            t0 = time.monotonic()
            await asyncio.to_thread(lab.stop_bird, victim)
            try:
                alert = await asyncio.to_thread(webhook_receiver.wait_for, "BgpSessionDown",
                                                "firing", 30.0, stopped_s, carrier=victim)
                timings["bird_stopped_to_receiver_s"] = time.monotonic() - t0
                assert alert["labels"]["severity"] == "critical"
                others = {a["labels"].get("carrier") for a in webhook_receiver.alerts()
                          if a["labels"].get("alertname") == "BgpSessionDown"
                          and webhook_receiver.started_s(a) >= stopped_s}
                assert others == {victim}
            finally:
                await asyncio.to_thread(lab.start_bird, victim)
            await asyncio.to_thread(webhook_receiver.wait_for, "BgpSessionDown", "resolved",
                                    60.0, stopped_s, carrier=victim)
            t0 = time.monotonic()
            await asyncio.to_thread(lab.announce, "unicom", ours, [65001])
            try:
                alert = await asyncio.to_thread(webhook_receiver.wait_for,
                                                "OwnPrefixOriginMismatch", "firing", 20.0,
                                                carrier="unicom", prefix=ours)
                timings["hijack_to_receiver_s"] = time.monotonic() - t0
                assert alert["labels"]["severity"] == "critical"
                assert "originated by AS65001" in alert["annotations"]["summary"]
            finally:
                await asyncio.to_thread(lab.withdraw, "unicom", ours)
            await asyncio.to_thread(webhook_receiver.wait_for, "OwnPrefixOriginMismatch",
                                    "resolved", 30.0, carrier="unicom", prefix=ours)
        finally:
            await agent.stop()

    asyncio.run(scenario())
    print("lab BGP alert timings:", {k: round(v, 3) for k, v in timings.items()})


def test_carrier_relative_loss_blames_only_the_degraded_carrier(lab: Any, tmp_path: Path) -> None:
    """The daemon runs in the lab's agent namespace with its probes collector (ICMP to the
    lab's target through every carrier, 1 s rounds), Alertmanager and the receiver on that
    namespace's loopback. One carrier loses 40 % -> CarrierLossHigh on it, none on the
    others; resolved when the loss is gone."""
    from tests.lab.netns import in_netns
    from tests.lab.servers import Alertmanager as AlertmanagerServer
    from tests.lab.servers import binary_missing

    reason = binary_missing("prometheus-alertmanager")
    if reason:
        pytest.skip(reason)
    victim = lab.carriers[1].name
    receiver = in_netns(lab.agent_ns, WebhookReceiver)  # its socket in the agent namespace
    am = AlertmanagerServer(data_dir=tmp_path / "am", webhook_url=receiver.url,
                            netns=lab.agent_ns)
    config = parse_config({
        "agent": {"hostname": "lab", "interval": "1s", "data_dir": str(tmp_path / "data"),
                  "control_socket": str(tmp_path / "control.sock"),
                  "collectors": ["probes"]},
        "carriers": [{"name": c.name, "interface": c.uplink, "source": c.source}
                     for c in lab.carriers],
        "probes": [{"name": "target", "target": lab.target, "methods": ["icmp"],
                    "interval": "1s", "count": 20, "timeout": "300ms"}],
        "alerts": {"carrier_loss": {"window": "15s"},
                   "quality_bad": {"enabled": False}},
        "outputs": {"alertmanager": {"urls": [am.url], "resend_interval": "5s",
                                     "max_retry_delay": "1s"}},
    })

    async def scenario() -> None:
        agent = Agent(config)
        await agent.start()
        try:
            await asyncio.sleep(5)  # rounds through every carrier, nothing lost
            assert not [a for a in agent.alerts.active()
                        if a["labels"]["alertname"] == "CarrierLossHigh"]
            await asyncio.to_thread(lab.set_delay, victim, None, None, 40.0)
            try:
                alert = await asyncio.to_thread(receiver.wait_for, "CarrierLossHigh",
                                                "firing", 40.0, carrier=victim)
                assert alert["labels"]["target"] == lab.target
                assert "points worse than the best other carrier" in (
                    alert["annotations"]["summary"])
                blamed = {a["labels"]["carrier"] for a in agent.alerts.active()
                          if a["labels"]["alertname"] == "CarrierLossHigh"}
                assert blamed == {victim}
            finally:
                await asyncio.to_thread(lab.set_delay, victim, None, None, 0.0)
            await asyncio.to_thread(receiver.wait_for, "CarrierLossHigh", "resolved", 40.0,
                                    carrier=victim)
            fired = {a["labels"]["carrier"] for a in receiver.alerts()
                     if a["labels"].get("alertname") == "CarrierLossHigh"}
            assert fired == {victim}
        finally:
            await agent.stop()

    try:
        am.start()
        in_netns(lab.agent_ns, lambda: asyncio.run(scenario()))
    finally:
        am.close()
        receiver.close()
        lab.set_delay(victim, loss_pct=0.0)
