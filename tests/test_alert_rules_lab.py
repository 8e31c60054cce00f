"""The rules file in a real vmalert, on real agent data in the lab's VictoriaMetrics.

The daemon runs in the lab's agent namespace (links, BGP with the three BIRD carriers,
icmp probes every second) and writes to the lab's VictoriaMetrics; vmalert (Debian's
victoria-metrics package) runs next to it with config/alerts/egress-agent-rules.yml
(every `for` cut to 3 s, evaluation every second) and is asked for its alerts
(/api/v1/alerts). Then, one after the other:

- one carrier's loss degraded → EgressAccessQualityBad and EgressCarrierLossAboveBest fire
  for that carrier, never for the others;
- another carrier's BIRD stopped → EgressBGPSessionDown fires for it;
- a third carrier's uplink down → EgressUplinkDown fires for it alone, and resolves once
  the link is back;
- a more-specific of our prefix injected at the first carrier → EgressOwnPrefixMoreSpecific.

And no rule of the file reports an evaluation error against VictoriaMetrics.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.servers import free_port, http
from tests.lab.wait import NotYet, wait_until

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "config" / "alerts" / "egress-agent-rules.yml"
TARGET = "203.0.113.10"
HIJACK, HIJACK_AS = "198.51.100.0/25", 65001  # a more-specific of the lab's 198.51.100.0/24
FOR_S = 3


def agent_config(lab: Any, tmp_path: Path, hostname: str) -> Path:
    """config/lab.toml: own host name, data and socket under tmp_path, everything at 1 s,
    one icmp probe entry (all carriers), VictoriaMetrics as the only output."""
    path = lab.agent_config(tmp_path / "agent.toml")
    text = path.read_text()
    head = '[agent]\nhostname = "lab-agent"\ninterval = "5s"'
    assert head in text, "config/lab.toml [agent] changed"
    text = text.replace(head, f'[agent]\nhostname = "{hostname}"\ninterval = "1s"', 1)
    text = text.replace(str(lab.workdir / "agent-data"), str(tmp_path / "data"))
    text = text.replace(str(lab.workdir / "agent-control.sock"), str(tmp_path / "ctl.sock"))
    probes = text[text.index("[[probes]]"):text.index("[quality]")]
    text = text.replace(probes, f"""[[probes]]
name = "target"
target = "{TARGET}"
methods = ["icmp"]
interval = "1s"
count = 10
timeout = "500ms"
carriers = ["*"]

""")
    v1 = text[text.index("[outputs.influxdb_v1]"):text.index("[outputs.influxdb]")]
    text = text.replace(v1, "")
    path.write_text(text)
    return path


def rules_for_test(tmp_path: Path) -> Path:
    """The rules with every `for` cut to FOR_S (the conditions themselves unchanged)."""
    text, n = re.subn(r"(?m)^(\s+)for: \S+$", rf"\1for: {FOR_S}s", RULES.read_text())
    assert n >= 5
    path = tmp_path / "rules.yml"
    path.write_text(text)
    return path


class VmAlert:
    def __init__(self, lab: Any, rules: Path, log: Path) -> None:
        self.lab = lab
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("wb")
        self.proc = lab.popen_in_agent_ns(
            ["vmalert", f"-rule={rules}", f"-datasource.url={lab.victoria_metrics_url}",
             f"-notifier.url=http://127.0.0.1:{free_port()}",  # nobody: alerts read by API
             "-evaluationInterval=1s", f"-httpListenAddr=127.0.0.1:{self.port}",
             "-loggerLevel=ERROR"],
            stdout=self._log, stderr=subprocess.STDOUT)

    def get(self, path: str) -> Any:
        status, body = http("GET", self.url + path, netns=self.lab.agent_ns, timeout=5)
        if status != 200:
            raise NotYet(f"{path}: HTTP {status}")
        return json.loads(body)["data"]

    def alerts(self, host: str) -> list[dict[str, Any]]:
        return [a for a in self.get("/api/v1/alerts")["alerts"] or []
                if a["labels"].get("host") == host]

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


@pytest.fixture
def running(lab: Any, tmp_path: Path) -> Iterator[tuple[str, VmAlert, subprocess.Popen[Any]]]:
    if lab.victoria_metrics is None or shutil.which("vmalert") is None:
        pytest.skip("victoria-metrics / vmalert not installed (scripts/setup installs them)")
    candidates = [Path("/usr/sbin/exabgp"), Path(sys.executable).parent / "exabgp"]
    if shutil.which("exabgp") is None and not any(p.exists() for p in candidates):
        pytest.skip("exabgp not installed (scripts/setup installs it)")
    host = f"rules-lab-{os.getpid()}-{time.time_ns() % 10**6}"
    config = agent_config(lab, tmp_path, host)
    log = (tmp_path / "agent.log").open("wb")
    agent = lab.popen_in_agent_ns(
        [sys.executable, "-m", "agent.cli", "run", "-c", str(config), "--duration", "180"],
        stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
        env={**os.environ, "INFLUX_TOKEN": "any"})
    vmalert = VmAlert(lab, rules_for_test(tmp_path), tmp_path / "vmalert.log")
    try:
        yield host, vmalert, agent
    finally:
        vmalert.close()
        agent.terminate()
        try:
            agent.wait(20)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait(5)
        log.close()


def firing(alerts: list[dict[str, Any]], name: str) -> dict[str, dict[str, Any]]:
    """carrier → alert, of the firing alerts named `name`."""
    return {a["labels"].get("carrier", ""): a for a in alerts
            if a["name"] == name and a["state"] == "firing"}


def test_vmalert_fires_link_session_and_quality_rules_on_agent_data(
        lab: Any, running: tuple[str, VmAlert, subprocess.Popen[Any]], tmp_path: Path) -> None:
    host, vmalert, agent = running
    vm = lab.victoria_metrics
    lossy, no_bgp, no_link = (c.name for c in lab.carriers[:3])
    others = {c.name for c in lab.carriers} - {lossy}
    saved_loss = lab.carrier(lossy).loss_pct
    t0 = time.monotonic()
    timings: dict[str, float] = {}

    def agent_log() -> str:
        return (tmp_path / "agent.log").read_text(errors="replace")[-3000:]

    def data_in(query: str, n: int) -> Any:
        def check(left: float) -> Any:
            if agent.poll() is not None:
                raise AssertionError(f"agent exited {agent.returncode}:\n{agent_log()}")
            got = vm.query(query)
            if len(got) < n:
                raise NotYet(f"{len(got)} series for {query}")
            return got
        return wait_until(check, 60, query, interval_s=0.3)

    def wait_alert(name: str, carrier: str, timeout_s: float = 40,
                   query: str = "") -> dict[str, Any]:
        """Waits for the alert; with `query`, notes when VictoriaMetrics first answers it
        (timings[name + " in vm"]): the agent-to-storage part of the delay."""
        t = time.monotonic()

        def check(left: float) -> dict[str, Any]:
            if query and f"{name} in vm" not in timings and vm.query(query):
                timings[f"{name} in vm"] = time.monotonic() - t
            alerts = vmalert.alerts(host)
            alert = firing(alerts, name).get(carrier)
            if alert is None:
                active = [(a["name"], a["labels"].get("carrier"), a["state"]) for a in alerts]
                raise NotYet(f"active: {active}")
            return alert
        return wait_until(check, timeout_s, f"{name} firing for {carrier}", interval_s=0.3)

    try:
        # the agent's data arrives, and vmalert evaluates every rule without error
        data_in(f'bgp_session_up{{host="{host}"}} == 1', len(lab.carriers))
        data_in(f'probe_loss_pct{{host="{host}",target="{TARGET}"}}', len(lab.carriers))
        data_in(f'link_oper_up{{host="{host}",carrier!=""}} == 1', len(lab.carriers))
        timings["data"] = time.monotonic() - t0
        groups = vmalert.get("/api/v1/rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert len(rules) == RULES.read_text().count("- alert:")
        errors = {r["name"]: r["lastError"] for r in rules if r.get("lastError")}
        assert not errors, errors
        # Evaluations from before the sessions were up may have left EgressBGPSessionDown
        # pending (seen once): it must clear, and nothing may fire, before anything breaks.
        def quiet(_left: float) -> bool:
            active = vmalert.alerts(host)
            firing_now = [a for a in active if a.get("state") == "firing"]
            assert not firing_now, f"alerts firing before anything was broken: {firing_now}"
            if active:
                raise NotYet(f"pending: {active}")
            return True

        wait_until(quiet, 30, "no alert pending before anything was broken", interval_s=0.3)

        # 1. quality: loss on one carrier only
        lab.set_delay(lossy, loss_pct=40)
        t = time.monotonic()
        bad = wait_alert("EgressAccessQualityBad", lossy)
        relative = wait_alert("EgressCarrierLossAboveBest", lossy)
        timings["quality"] = time.monotonic() - t
        alerts = vmalert.alerts(host)
        for name in ("EgressAccessQualityBad", "EgressCarrierLossAboveBest"):
            wrong = {a["labels"].get("carrier") for a in alerts if a["name"] == name} & others
            assert not wrong, f"{name} for {wrong}: {alerts}"
        assert bad["labels"]["target"] == TARGET and bad["labels"]["severity"] == "warning"
        assert relative["labels"]["method"] == "icmp"
        assert f"via {lossy} is bad on {host}" in bad["annotations"]["summary"]
        assert "loss" in bad["annotations"]["summary"]
        lab.set_delay(lossy, loss_pct=saved_loss)

        # 2. BGP session: stop one carrier's BIRD
        lab.stop_bird(no_bgp)
        t = time.monotonic()
        session = wait_alert("EgressBGPSessionDown", no_bgp)
        timings["session"] = time.monotonic() - t
        assert session["labels"]["peer_as"] == str(lab.carrier(no_bgp).asn)
        assert session["labels"]["severity"] == "critical"

        # 3. uplink down on a third carrier: fires for it alone, resolves when it is back
        lab.set_link(no_link, up=False)
        t = time.monotonic()
        down = wait_alert("EgressUplinkDown", no_link, query=(
            f'link_oper_up{{host="{host}",carrier="{no_link}"}} == 0'))
        timings["link"] = time.monotonic() - t
        assert set(firing(vmalert.alerts(host), "EgressUplinkDown")) == {no_link}
        assert down["labels"]["interface"] == lab.carrier(no_link).uplink
        assert down["annotations"]["summary"] == (
            f"Uplink {lab.carrier(no_link).uplink} of carrier {no_link} on {host} is down")
        lab.set_link(no_link, up=True)
        t = time.monotonic()
        wait_until(lambda left: not firing(vmalert.alerts(host), "EgressUplinkDown"), 20,
                   "EgressUplinkDown resolved", interval_s=0.3)
        timings["link_resolved"] = time.monotonic() - t

        # 4. a more-specific of our prefix injected at the first carrier: an event-based rule
        lab.announce(lossy, HIJACK, as_path=[HIJACK_AS])
        t = time.monotonic()
        specific = wait_alert("EgressOwnPrefixMoreSpecific", lossy)
        timings["more_specific"] = time.monotonic() - t
        assert specific["labels"]["kind"] == "more_specific"
        assert specific["labels"]["severity"] == "critical"
        assert f"originated by AS{HIJACK_AS}, at {lossy}" in specific["annotations"]["summary"]
        lab.withdraw(lossy, HIJACK)

        for alert in (bad, relative, session, down, specific):
            print(f"{alert['name']} {json.dumps(alert['labels'], sort_keys=True)}\n"
                  f"  summary: {alert['annotations']['summary']}\n"
                  f"  description: {alert['annotations']['description']}")
        print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    finally:
        lab.withdraw(lossy, HIJACK)
        lab.set_delay(lossy, loss_pct=saved_loss)
        lab.set_link(no_link, up=True)
        if not lab.birds[no_bgp].running():
            lab.start_bird(no_bgp)
