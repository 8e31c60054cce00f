"""The agent under a real systemd (252, Debian 12) in a container, as the lab's provider host.

Installed the way an operator installs it (a wheelhouse and its `install` script), booted
in the lab's agent namespace, and checked against the real systemd: start after READY,
journal lines, delivery and probes as the unprivileged user, the sandbox seen from inside
the service, reload, the watchdog, crash and config-error restarts, a bounded stop with
the database down and nothing lost across an upgrade, the exposure score, uninstall.

The tests of this module are steps of one story and run in file order on one container.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.lab.lab import Lab
from tests.lab.wait import wait_until
from tests.systemd.container import Container
from tests.systemd.rootfs import ensure_rootfs, missing_tools

pytestmark = [pytest.mark.lab, pytest.mark.systemd]

REPO = Path(__file__).resolve().parents[2]
UNIT = "egress-agent.service"
CONFIG = "/etc/egress-agent/agent.toml"
AGENT = "/opt/egress-agent/bin/egress-agent"
DATABASE = "systemd_stage"
HOSTNAME = "systemd-agent"
# The shipped unit's values (config/systemd/egress-agent.service); asserted below.
WATCHDOG_S, RESTART_S, TIMEOUT_STOP_S, TIMEOUT_START_S = 30.0, 5.0, 20.0, 90.0
CAPS = {"cap_net_admin": 12, "cap_net_raw": 13, "cap_net_bind_service": 10}
CAP_MASK = sum(1 << bit for bit in CAPS.values())
V2 = "0.1.0.post1"  # the upgrade's version


@dataclass
class Stage:
    lab: Lab
    box: Container
    figures: dict[str, Any] = field(default_factory=dict)

    def agent_lines(self, after: str | None = None) -> list[dict[str, Any]]:
        """The agent's own journal entries (not systemd's about the unit)."""
        return [e for e in self.box.journal(UNIT, after=after)
                if e.get("SYSLOG_IDENTIFIER") == "egress-agent"]

    def main_pid(self) -> str:
        return self.box.show(UNIT, "MainPID")["MainPID"]

    def restarts(self) -> int:
        return int(self.box.show(UNIT, "NRestarts")["NRestarts"])


def lab_config(text: str, interval: str = "1s") -> str:
    """config/lab.toml as the container's agent runs it: the unit's directories (the
    defaults), InfluxDB 1.x only (the lab's, on the shared namespace's loopback)."""
    text = re.sub(r'(?m)^(data_dir|control_socket) = .*\n', "", text)
    text = text.replace('hostname = "lab-agent"', f'hostname = "{HOSTNAME}"')
    text = re.sub(r'(?m)^interval = "5s"$', f'interval = "{interval}"', text, count=1)
    text = text[:text.index("[outputs.influxdb_v1]")]
    return text + f'[outputs.influxdb_v1]\nurl = "http://127.0.0.1:8086"\ndatabase = "{DATABASE}"\n'


def build_wheelhouse(out: Path, version: str | None = None) -> Path:
    argv = [str(REPO / "scripts" / "wheelhouse"), "--python", "/usr/bin/python3", str(out)]
    if version:
        argv[1:1] = ["--version", version]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "with the C accelerator" in done.stdout, done.stdout
    return out


@pytest.fixture(scope="module")
def stage(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    missing = missing_tools()
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (apt-get install debootstrap systemd-container)")
    if lab.influxdb is None:
        pytest.skip("influxd not installed: the stage writes to the lab's InfluxDB")
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no /usr/bin/python3 to build the wheelhouse for the container's Python")
    started = time.monotonic()
    rootfs = ensure_rootfs()
    work = tmp_path_factory.mktemp("systemd")
    wheels = build_wheelhouse(work / "wheels")
    wheels2 = build_wheelhouse(work / "wheels2", version=V2)
    lab.influxdb.create_database(DATABASE)
    box = Container(rootfs, work / "root", name=f"{lab.prefix}-systemd", netns=lab.agent_ns,
                    binds={wheels: "/wheels", wheels2: "/wheels2",
                           REPO / "tests" / "systemd": "/probe"})
    st = Stage(lab, box)
    try:
        box.boot()
        st.figures["prepare_s"] = round(time.monotonic() - started, 1)
        yield st
    finally:
        box.close()
        if not lab.influxdb.running():
            lab.influxdb.start()
        lab.influxdb.drop_database(DATABASE)
        print(f"\nsystemd stage figures: {json.dumps(st.figures)}")


def host_ticks(st: Stage, since_ns: int, until_ns: int) -> list[int]:
    rows = st.lab.influxdb.query(
        f"SELECT load1 FROM host WHERE host = '{HOSTNAME}' AND time >= {since_ns} "
        f"AND time <= {until_ns}", db=DATABASE)
    return sorted(int(r["time"]) for r in rows)


# ---------------------------------------------------------------- install and start


def test_install_from_a_wheelhouse(stage: Stage) -> None:
    box = stage.box
    started = time.monotonic()
    done = box.run(["/wheels/install"], timeout=300)
    stage.figures["install_s"] = round(time.monotonic() - started, 1)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "installed egress-agent 0.1.0 into /opt/egress-agent" in done.stdout
    accel = box.run(["/opt/egress-agent/bin/python", "-c", "import agent._lineproto"])
    assert accel.returncode == 0, "the wheel lacks the compiled accelerator: " + accel.stderr
    assert box.run(["getent", "passwd", "egress-agent"]).stdout.split(":")[6].strip() \
        == "/usr/sbin/nologin"
    unit = box.systemctl("cat", UNIT).stdout
    assert "ProtectSystem=strict" in unit and f"WatchdogSec={WATCHDOG_S:.0f}s" in unit
    assert f"RestartSec={RESTART_S:.0f}s" in unit
    assert f"TimeoutStopSec={TIMEOUT_STOP_S:.0f}s" in unit
    # the operator's config, and the probe of the sandbox run by the unit itself
    box.write(CONFIG, lab_config((REPO / "config" / "lab.toml").read_text()), 0o640,
              "root:egress-agent")
    box.write("/etc/systemd/system/egress-agent.service.d/50-sandbox-probe.conf",
              "[Service]\nExecStartPost=/opt/egress-agent/bin/python /probe/sandbox_probe.py\n")
    assert box.systemctl("daemon-reload").returncode == 0
    check = box.run([AGENT, "check-config", "-c", CONFIG])
    assert check.returncode == 0, check.stderr


def test_start_is_active_only_after_ready(stage: Stage) -> None:
    box = stage.box
    cursor = box.cursor()
    started = time.monotonic()
    done = box.systemctl("start", UNIT)
    stage.figures["start_s"] = round(time.monotonic() - started, 2)
    assert done.returncode == 0, done.stderr + box.systemctl("status", UNIT).stdout
    assert stage.figures["start_s"] < TIMEOUT_START_S
    props = box.show(UNIT, "ActiveState", "SubState", "ActiveEnterTimestampMonotonic",
                     "ExecMainStartTimestampMonotonic", "StatusText", "Type")
    assert (props["ActiveState"], props["SubState"], props["Type"]) == (
        "active", "running", "notify")
    # READY came from the agent once it was up (its start-up line), and systemd went active
    # only then: long after the process started, not at once as for Type=simple
    ready = [e for e in stage.agent_lines(after=cursor) if "started:" in e["MESSAGE"]]
    assert len(ready) == 1, [e["MESSAGE"] for e in stage.agent_lines(after=cursor)]
    exec_start_us = int(props["ExecMainStartTimestampMonotonic"])
    active_us = int(props["ActiveEnterTimestampMonotonic"])
    logged_us = int(ready[0]["__MONOTONIC_TIMESTAMP"])
    assert exec_start_us < logged_us <= active_us + 200_000  # + journald's receipt delay
    stage.figures["exec_to_ready_s"] = round((active_us - exec_start_us) / 1e6, 2)
    assert active_us - exec_start_us > 200_000
    assert props["StatusText"], "the agent's STATUS= is the unit's status line"
    status = box.systemctl("status", UNIT, "-n", "50").stdout
    assert "started:" in status


def test_journal_has_the_agents_lines_once_with_priorities(stage: Stage) -> None:
    lines = stage.agent_lines()
    assert lines, "no agent lines in the journal"
    for entry in lines:
        message = entry["MESSAGE"]
        assert not re.match(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d", message), message  # no 2nd time
        assert not message.startswith("<"), message  # the priority prefix was consumed
    started = next(e for e in lines if "started:" in e["MESSAGE"])
    assert started["PRIORITY"] == "6"
    assert started["MESSAGE"].startswith("INFO ")


# ---------------------------------------------------------------- what the demo shows


def test_delivers_probes_and_bgp_as_the_unprivileged_user(stage: Stage) -> None:
    box, lab = stage.box, stage.lab
    pid = stage.main_pid()
    status = box.run(["cat", f"/proc/{pid}/status"]).stdout
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    uid = box.run(["id", "-u", "egress-agent"]).stdout.strip()
    assert fields["Uid"].split()[:2] == [uid, uid]
    for cap in ("CapEff", "CapPrm", "CapAmb", "CapBnd"):
        assert int(fields[cap], 16) == CAP_MASK, (cap, fields[cap])
    assert fields["NoNewPrivs"].strip() == "1" and fields["Seccomp"].strip() == "2"

    def sessions_up(_left: float) -> bool:
        return all(lab.birds[c.name].protocol_states().get("agent") == "Established"
                   for c in lab.carriers)

    wait_until(sessions_up, 60, "every carrier's BGP session with the agent's ExaBGP")

    def delivered(_left: float) -> dict[str, set[str]] | None:
        seen: dict[str, set[str]] = {}
        for measurement, fld in (("probe", "rtt_avg_ms"), ("bgp_session", "prefixes_v4"),
                                 ("link", "rx_bytes")):
            rows = lab.influxdb.query(
                f"SELECT count({fld}) FROM {measurement} WHERE host = '{HOSTNAME}' "
                "AND time > now() - 1m GROUP BY carrier", db=DATABASE)
            seen[measurement] = {r["_tags"].get("carrier", "") for r in rows}
        want = {c.name for c in lab.carriers}
        return seen if all(want <= got for got in seen.values()) else None

    wait_until(delivered, 60, "probes, BGP sessions and links of every carrier in InfluxDB")
    # each carrier's whole table, as counted by the agent under the sandbox
    want = {c.name: c.expected_routes()[0] for c in lab.carriers}
    got: dict[str, int] = {}

    def full_tables(_left: float) -> bool:
        nonlocal got
        rows = lab.influxdb.query(
            f"SELECT last(prefixes_v4) FROM bgp_session WHERE host = '{HOSTNAME}' "
            "AND up = true GROUP BY carrier", db=DATABASE)
        got = {r["_tags"]["carrier"]: r["last"] for r in rows}
        return got == want

    wait_until(full_tables, 60, f"every carrier's full table {want}")


def test_the_sandbox_refuses_from_inside_the_service(stage: Stage) -> None:
    probes = [e["MESSAGE"] for e in stage.box.journal(UNIT)
              if str(e.get("MESSAGE", "")).startswith("sandbox-probe")]
    assert probes, "the unit's ExecStartPost probe did not run"
    assert probes[-1].startswith("sandbox-probe {"), probes[-1]
    seen = json.loads(probes[-1].split(" ", 1)[1])
    uid = int(stage.box.run(["id", "-u", "egress-agent"]).stdout)
    assert seen["uid"] == uid
    assert int(seen["cap_eff"], 16) == CAP_MASK and int(seen["cap_bnd"], 16) == CAP_MASK
    assert (seen["no_new_privs"], seen["seccomp"]) == ("1", "2")
    assert seen["write_state_dir"] == "ok"
    for outside in ("write_etc", "write_opt", "write_var_lib"):
        assert seen[outside] == "EROFS", (outside, seen[outside])
    assert seen["list_home"] == "EACCES" and seen["list_root"] == "EACCES"
    assert seen["load_module"] == "EPERM" and seen["init_module"] == "EPERM"
    assert seen["setuid_root"] == "EPERM"
    assert seen["packet_socket"] == "EAFNOSUPPORT"
    assert seen["raw_icmp_socket"] == "ok"
    assert seen["dev_block_devices"] == []


# ---------------------------------------------------------------- reload


def test_reload_applies_a_new_config_and_refuses_a_bad_one(stage: Stage) -> None:
    box = stage.box
    pid = stage.main_pid()
    good = box.run(["cat", CONFIG]).stdout
    cursor = box.cursor()
    box.write(CONFIG, good.replace('log_level = "info"', 'log_level = "debug"'), 0o640,
              "root:egress-agent")
    # the reload job waits for the agent's answer (ExecReload=egress-agent reload): applied
    assert box.systemctl("reload", UNIT).returncode == 0

    def reloaded(_left: float) -> bool:
        return any("reloaded" in e["MESSAGE"] for e in stage.agent_lines(after=cursor))

    wait_until(reloaded, 5, "the agent's 'reloaded' line")
    assert stage.main_pid() == pid

    cursor = box.cursor()
    box.write(CONFIG, good.replace('[agent]\n', '[agent]\ncolour = "red"\n'), 0o640,
              "root:egress-agent")
    # the reload job waits for the agent's answer (ExecReload=egress-agent reload): refused
    refused_job = box.systemctl("reload", UNIT)
    assert refused_job.returncode != 0
    assert "failed" in refused_job.stderr

    def refused(_left: float) -> list[dict[str, Any]]:
        return [e for e in stage.agent_lines(after=cursor) if "reload refused" in e["MESSAGE"]]

    lines = wait_until(refused, 30, "the agent's 'reload refused' line")
    assert len(lines) == 1, [e["MESSAGE"] for e in lines]
    assert lines[0]["PRIORITY"] == "3"
    assert f"{CONFIG}: agent.colour: unknown key" in lines[0]["MESSAGE"]
    assert box.show(UNIT, "ActiveState")["ActiveState"] == "active"
    assert stage.main_pid() == pid
    box.write(CONFIG, good, 0o640, "root:egress-agent")


# ---------------------------------------------------------------- restarts


def test_the_watchdog_restarts_a_hung_agent(stage: Stage) -> None:
    box = stage.box
    pid, restarts = stage.main_pid(), stage.restarts()
    cursor = box.cursor()
    assert box.systemctl("kill", "--kill-whom=main", "--signal=SIGSTOP", UNIT).returncode == 0
    frozen = time.monotonic()
    box.wait_active(UNIT, WATCHDOG_S + RESTART_S + 30, not_pid=pid)
    stage.figures["watchdog_restart_s"] = round(time.monotonic() - frozen, 1)
    assert stage.figures["watchdog_restart_s"] <= WATCHDOG_S + RESTART_S + 5
    assert stage.restarts() == restarts + 1
    systemd_says = [e["MESSAGE"] for e in box.journal(UNIT, after=cursor)
                    if e.get("SYSLOG_IDENTIFIER") == "systemd"]
    assert any("Watchdog timeout" in m for m in systemd_says), systemd_says


def test_a_crash_is_restarted(stage: Stage) -> None:
    box = stage.box
    pid, restarts = stage.main_pid(), stage.restarts()
    killed = time.monotonic()
    assert box.systemctl("kill", "--kill-whom=main", "--signal=SIGKILL", UNIT).returncode == 0
    box.wait_active(UNIT, RESTART_S + 30, not_pid=pid)
    stage.figures["crash_restart_s"] = round(time.monotonic() - killed, 1)
    assert stage.restarts() == restarts + 1


def test_config_errors_exit_2_with_one_line_and_no_restart_loop(stage: Stage) -> None:
    box = stage.box
    good = box.run(["cat", CONFIG]).stdout
    assert box.systemctl("stop", UNIT).returncode == 0
    box.write("/etc/egress-agent/influxdb.token", "secret-token\n", 0o600, "root:root")
    token_config = good + (
        '\n[outputs.influxdb]\nurl = "http://127.0.0.1:8428"\norg = "lab"\nbucket = "b"\n'
        'token_file = "/etc/egress-agent/influxdb.token"\n')
    cases = {
        "missing config": (None, f"{CONFIG}: (file): No such file or directory"),
        "unreadable token file": (
            token_config,
            f"{CONFIG}: outputs.influxdb.token_file: cannot use "
            "/etc/egress-agent/influxdb.token: Permission denied"),
        "data dir on a read-only path": (
            good.replace("[agent]\n", '[agent]\ndata_dir = "/srv/egress-agent"\n'),
            f"{CONFIG}: agent.data_dir: cannot use /srv/egress-agent: Read-only file system"),
    }
    for case, (text, expected) in cases.items():
        box.run(["rm", "-f", CONFIG])
        if text is not None:
            box.write(CONFIG, text, 0o640, "root:egress-agent")
        box.systemctl("reset-failed", UNIT)
        restarts = stage.restarts()
        cursor = box.cursor()
        assert box.systemctl("start", UNIT).returncode != 0, case
        # longer than RestartSec: a restart would have happened by now
        time.sleep(RESTART_S + 2)
        props = box.show(UNIT, "ActiveState", "ExecMainStatus", "Result")
        assert props == {"ActiveState": "failed", "ExecMainStatus": "2",
                         "Result": "exit-code"}, (case, props)
        assert stage.restarts() == restarts, case
        lines = stage.agent_lines(after=cursor)
        assert [e["MESSAGE"] for e in lines] == [expected], case
        assert lines[0]["PRIORITY"] == "3", case
    box.run(["rm", "-f", "/etc/egress-agent/influxdb.token"])
    box.write(CONFIG, good, 0o640, "root:egress-agent")
    box.systemctl("reset-failed", UNIT)


# ---------------------------------------------------------------- stop, upgrade, nothing lost


def test_stop_with_the_database_down_then_upgrade_loses_nothing(stage: Stage) -> None:
    box, lab = stage.box, stage.lab
    assert box.systemctl("start", UNIT).returncode == 0
    spool_config = box.run(["cat", CONFIG]).stdout
    time.sleep(3)
    lab.influxdb.stop()
    down_ns = time.time_ns()
    time.sleep(8)  # collected into the spool only
    stopping_ns, stopping = time.time_ns(), time.monotonic()
    done = box.systemctl("stop", UNIT)
    stage.figures["stop_db_down_s"] = round(time.monotonic() - stopping, 2)
    assert done.returncode == 0, done.stderr
    assert stage.figures["stop_db_down_s"] < TIMEOUT_STOP_S
    props = box.show(UNIT, "ExecMainStatus", "Result", "ActiveState")
    assert props == {"ExecMainStatus": "0", "Result": "success", "ActiveState": "inactive"}
    spool = box.run(["find", "/var/lib/egress-agent", "-type", "f"]).stdout.split()
    assert spool, "nothing in the state directory"

    # upgrade in place while stopped: config and state kept
    upgrade = box.run(["/wheels2/install"], timeout=300)
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    assert f"installed egress-agent {V2}" in upgrade.stdout
    assert "kept existing /etc/egress-agent/agent.toml" in upgrade.stdout
    assert box.run(["cat", CONFIG]).stdout == spool_config
    after = box.run(["find", "/var/lib/egress-agent", "-type", "f"]).stdout.split()
    assert set(spool) <= set(after)

    lab.influxdb.start()
    assert box.systemctl("start", UNIT).returncode == 0
    version = box.run(["/opt/egress-agent/bin/python", "-c",
                       "import importlib.metadata as m; print(m.version('egress-agent'))"])
    assert version.stdout.strip() == V2

    # every tick collected between the outage and the stop arrives (interval 1 s)
    first_s, last_s = down_ns // 10**9 + 1, stopping_ns // 10**9 - 1
    want = list(range(first_s, last_s + 1))

    def all_ticks(_left: float) -> bool:
        got = {t // 10**9 for t in host_ticks(stage, first_s * 10**9, last_s * 10**9)}
        return set(want) <= got

    wait_until(all_ticks, 60, "the points collected while the database was down")

    # an upgrade of a running agent restarts it on the new version
    pid = stage.main_pid()
    again = box.run(["/wheels2/install"], timeout=300)
    assert again.returncode == 0, again.stderr
    assert "restarted the running egress-agent" in again.stdout
    box.wait_active(UNIT, 30, not_pid=pid)


def test_exposure_score_of_the_running_unit(stage: Stage) -> None:
    done = stage.box.run(["systemd-analyze", "security", "--no-pager", UNIT])
    assert done.returncode == 0, done.stderr
    match = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", done.stdout)
    assert match, done.stdout[-500:]
    stage.figures["exposure"] = f"{match.group(1)} {match.group(2)}"
    assert float(match.group(1)) <= 3.0 and match.group(2) in ("OK", "SAFE")


def test_uninstall_keeps_config_and_state_purge_removes_them(stage: Stage) -> None:
    box = stage.box
    done = box.run(["/wheels/uninstall"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert box.show(UNIT, "LoadState")["LoadState"] == "not-found"
    assert box.run(["test", "-e", "/opt/egress-agent"]).returncode != 0
    for kept in (CONFIG, "/var/lib/egress-agent"):
        assert box.run(["test", "-e", kept]).returncode == 0, kept
    assert box.run(["getent", "passwd", "egress-agent"]).returncode == 0
    purged = box.run(["/wheels/uninstall", "--purge"])
    assert purged.returncode == 0, purged.stdout + purged.stderr
    for gone in ("/etc/egress-agent", "/var/lib/egress-agent",
                 "/usr/lib/sysusers.d/egress-agent.conf"):
        assert box.run(["test", "-e", gone]).returncode != 0, gone
    assert box.run(["getent", "passwd", "egress-agent"]).returncode != 0
