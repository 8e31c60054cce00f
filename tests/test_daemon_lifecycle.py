"""`egress-agent run` as systemd runs it: a real datagram socket as NOTIFY_SOCKET,
WATCHDOG_USEC set, signals for reload and stop; behaviour observed from outside (the
Prometheus endpoint, the spool, a real InfluxDB 1.6.7)."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.agentproc import ROOT, influx_times, spool_points, timestamps
from tests.daemonproc import (
    STOP_LIMIT_S,
    Daemon,
    Notifications,
    agent_argv,
    bgp_config,
    config_text,
    exabgp_pids,
    reload_and_wait,
    start_with_exabgp,
    wait_until,
)
from tests.lab.servers import free_port

WATCHDOG_USEC = 1_000_000  # keep-alive expected every 0.5 s


class Listener:
    """TCP targets for `tcp:PORT` probes on loopback addresses; accepts and closes."""

    def __init__(self, addresses: list[str], port: int) -> None:
        self.socks = []
        for address in addresses:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((address, port))
            s.listen(128)
            s.settimeout(0.2)
            self.socks.append(s)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._accept, args=(s,), daemon=True) for s in self.socks
        ]
        for t in self._threads:
            t.start()

    def _accept(self, s: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = s.accept()
                conn.close()
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        for s in self.socks:
            s.close()


def probe_block(name: str, target: str, port: int) -> str:
    return f"""
[[probes]]
name = "{name}"
target = "{target}"
methods = ["tcp:{port}"]
interval = "1s"
count = 2
timeout = "300ms"
"""


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def probe_targets(port: int) -> set[str]:
    with contextlib.suppress(OSError):
        return {labels["target"] for labels, _ in scrape(port).get("egress_probe_sent", [])}
    return set()


def test_notify_watchdog_reload_and_stop(tmp_path: Path, notifications: Notifications) -> None:
    """READY with STATUS; WATCHDOG every WATCHDOG_USEC/2; SIGHUP with a valid changed config
    (a new probe target appears) → RELOADING + MONOTONIC_USEC, READY; SIGHUP with an invalid
    config → still running on the old one; SIGTERM → STOPPING, exit 0 within 10 s."""
    tcp_port, prom_port = free_port(), free_port()
    listener = Listener(["127.0.0.1", "127.0.0.2"], tcp_port)
    outputs = f'[outputs.prometheus]\nlisten = "127.0.0.1:{prom_port}"\n'
    collectors = '["host", "probes"]'
    config = tmp_path / "agent.toml"
    config.write_text(
        config_text(tmp_path, probe_block("one", "127.0.0.1", tcp_port) + outputs, collectors)
    )
    daemon = Daemon(
        config,
        {"NOTIFY_SOCKET": str(notifications.path), "WATCHDOG_USEC": str(WATCHDOG_USEC)},
    )
    try:
        # ---- ready, with a status line
        _, ready = notifications.wait_for("READY", 0, 30)
        assert ready["READY"] == "1"
        assert "collectors" in ready.get("STATUS", ""), ready
        assert daemon.alive()

        # ---- watchdog cadence: every 0.5 s (loose bounds for a loaded machine)
        start = notifications.count()
        time.sleep(3.0)
        beats = notifications.watchdogs(start, notifications.count())
        assert 4 <= len(beats) <= 8, beats
        gaps = [b - a for a, b in itertools.pairwise(beats)]
        assert all(0.25 <= g <= 1.0 for g in gaps), gaps

        wait_until(lambda: probe_targets(prom_port) == {"127.0.0.1"}, 20, "first probe target")

        # ---- reload, valid and changed: a second target
        config.write_text(
            config_text(
                tmp_path,
                probe_block("one", "127.0.0.1", tcp_port)
                + probe_block("two", "127.0.0.2", tcp_port)
                + outputs,
                collectors,
            )
        )
        mark = notifications.count()
        before_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        daemon.signal(signal.SIGHUP)
        reloading_at, reloading = notifications.wait_for("RELOADING", mark, 15)
        after_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert reloading["RELOADING"] == "1"
        assert before_usec <= int(reloading["MONOTONIC_USEC"]) <= after_usec
        notifications.wait_for("READY", reloading_at + 1, 15)
        wait_until(
            lambda: probe_targets(prom_port) == {"127.0.0.1", "127.0.0.2"},
            20,
            "the new probe target after reload",
        )

        # ---- reload, invalid: refused, old config kept, still watched and probing
        config.write_text(config.read_text().replace('interval = "1s"', 'interval = "soon"', 1))
        mark = notifications.count()
        daemon.signal(signal.SIGHUP)
        reloading_at, _ = notifications.wait_for("RELOADING", mark, 15)
        _, after_bad = notifications.wait_for("READY", reloading_at + 1, 15)
        assert "refused" in after_bad.get("STATUS", ""), after_bad
        time.sleep(2.0)
        assert daemon.alive(), daemon.log()
        assert "agent.interval" in daemon.log()
        assert probe_targets(prom_port) == {"127.0.0.1", "127.0.0.2"}
        late = notifications.count()
        time.sleep(1.5)
        assert len(notifications.watchdogs(late, notifications.count())) >= 2

        # ---- stop
        mark = notifications.count()
        stop_sent = time.monotonic()
        daemon.signal(signal.SIGTERM)
        notifications.wait_for("STOPPING", mark, STOP_LIMIT_S)
        code = daemon.wait(STOP_LIMIT_S)
        assert code == 0, daemon.log()
        assert time.monotonic() - stop_sent < STOP_LIMIT_S
        assert "Traceback" not in daemon.log()
    finally:
        daemon.kill()
        listener.close()


@pytest.mark.servers
def test_sigterm_mid_run_loses_nothing(
    tmp_path: Path, influxdb_v1: Any, notifications: Notifications
) -> None:
    """InfluxDB down while the agent runs; SIGTERM mid-run → STOPPING, exit 0 within 10 s,
    every point in the spool; restarted with InfluxDB up, every one of them delivered."""
    output = f"""
[outputs.influxdb_v1]
url = "{influxdb_v1.url}"
database = "egress"
max_retry_delay = "1s"
"""
    config = tmp_path / "agent.toml"
    config.write_text(config_text(tmp_path, output, '["host"]'))
    env = {"NOTIFY_SOCKET": str(notifications.path), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    influxdb_v1.stop()
    first = Daemon(config, env)
    try:
        notifications.wait_for("READY", 0, 30)
        time.sleep(4.5)
        mark = notifications.count()
        stop_sent = time.monotonic()
        first.signal(signal.SIGTERM)
        notifications.wait_for("STOPPING", mark, STOP_LIMIT_S)
        assert first.wait(STOP_LIMIT_S) == 0, first.log()
        assert time.monotonic() - stop_sent < STOP_LIMIT_S
    finally:
        first.kill()
    spooled = timestamps(spool_points(tmp_path / "data", "host"))
    assert len(spooled) >= 3, first.log()
    assert len(set(spooled)) == len(spooled)

    influxdb_v1.start()
    second = Daemon(config, env)
    try:
        mark = notifications.count()
        notifications.wait_for("READY", mark, 30)
        wait_until(
            lambda: set(spooled) <= set(influx_times(influxdb_v1, "egress", "host", "cpu_percent")),
            30,
            "delivery of the first run's points after restart",
        )
        second.signal(signal.SIGTERM)
        assert second.wait(STOP_LIMIT_S) == 0, second.log()
    finally:
        second.kill()
    delivered = influx_times(influxdb_v1, "egress", "host", "cpu_percent")
    assert set(spooled) <= set(delivered)
    assert len(set(delivered)) == len(delivered)


# ---------------------------------------------------------------- reload and BGP


def test_reload_of_probes_keeps_exabgp(tmp_path: Path, notifications: Notifications) -> None:
    """A reload that changes only probes leaves ExaBGP, hence every BGP session, alone."""
    daemon, config, before = start_with_exabgp(
        tmp_path, notifications, bgp_config(tmp_path, ["127.0.0.2"], "127.0.0.1")
    )
    try:
        config.write_text(bgp_config(tmp_path, ["127.0.0.2"], "127.0.0.3"))
        reload_and_wait(daemon, notifications)
        assert exabgp_pids(daemon.proc.pid) == before, daemon.log()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(STOP_LIMIT_S) == 0, daemon.log()
        assert not any(Path(f"/proc/{pid}").exists() for pid in before), "ExaBGP left behind"
    finally:
        daemon.kill()


def test_own_exabgp_starts_through_the_lean_launcher(
    tmp_path: Path, notifications: Notifications
) -> None:
    """The venv's ExaBGP starts without `site` and without TLS (collectors/bgp/exabgp_launch.py):
    libssl (which its asyncio would load) is never mapped into it."""
    daemon, _, pids = start_with_exabgp(
        tmp_path, notifications, bgp_config(tmp_path, ["127.0.0.2"], "127.0.0.1")
    )
    try:
        (pid,) = pids
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert argv[1:3] == [b"-I", b"-S"] and argv[3].endswith(b"exabgp_launch.py"), argv
        assert b"libssl" not in Path(f"/proc/{pid}/maps").read_bytes()
        time.sleep(1.0)  # its reactor running, still without TLS and still alive
        assert exabgp_pids(daemon.proc.pid) == pids, daemon.log()
        assert b"libssl" not in Path(f"/proc/{pid}/maps").read_bytes()
    finally:
        daemon.signal(signal.SIGTERM)
        daemon.wait(STOP_LIMIT_S)
        daemon.kill()


def test_reload_adding_a_carrier_keeps_the_other_sessions(
    tmp_path: Path, notifications: Notifications
) -> None:
    daemon, config, before = start_with_exabgp(
        tmp_path, notifications, bgp_config(tmp_path, ["127.0.0.2"], "127.0.0.1")
    )
    try:
        config.write_text(bgp_config(tmp_path, ["127.0.0.2", "127.0.0.3"], "127.0.0.1"))
        reload_and_wait(daemon, notifications)
        assert exabgp_pids(daemon.proc.pid) == before, daemon.log()
    finally:
        daemon.signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            daemon.wait(STOP_LIMIT_S)
        daemon.kill()


def test_reload_drops_a_removed_groups_commands_and_keeps_the_others_status(
    tmp_path: Path, notifications: Notifications
) -> None:
    """After a reload that removes BGP, `bgp.lookup` is an unknown command and `status` has
    no `bgp` section; the kept probes group still shows its section."""
    from agent.control import ControlError, call

    text = bgp_config(tmp_path, ["127.0.0.2"], "127.0.0.1")
    daemon, config, _ = start_with_exabgp(tmp_path, notifications, text)
    socket_path = tmp_path / "run" / "control.sock"
    try:
        call(socket_path, "bgp.lookup", {"address": "198.51.100.1"})  # answers: no ControlError
        sections = call(socket_path, "status")
        assert {"bgp", "probes"} <= set(sections), sorted(sections)
        config.write_text(text.replace('collectors = ["bgp", "probes"]',
                                       'collectors = ["probes"]'))
        reload_and_wait(daemon, notifications)
        with pytest.raises(ControlError, match=r"unknown command 'bgp\.lookup'"):
            call(socket_path, "bgp.lookup", {"address": "198.51.100.1"})
        sections = call(socket_path, "status")
        assert "probes" in sections and "bgp" not in sections, sorted(sections)
        assert exabgp_pids(daemon.proc.pid) == set(), "ExaBGP outlived its collector group"
    finally:
        daemon.signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            daemon.wait(STOP_LIMIT_S)
        daemon.kill()


def test_reload_applies_log_level(tmp_path: Path, notifications: Notifications) -> None:
    quiet = config_text(tmp_path, "", '["host"]').replace(
        "[agent]\n", '[agent]\nlog_level = "warning"\n'
    )
    config = tmp_path / "agent.toml"
    config.write_text(quiet)
    daemon = Daemon(config, {"NOTIFY_SOCKET": str(notifications.path)})
    try:
        notifications.wait_for("READY", 0, 30)
        assert "INFO" not in daemon.log()
        config.write_text(quiet.replace('log_level = "warning"', 'log_level = "info"'))
        reload_and_wait(daemon, notifications)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(STOP_LIMIT_S) == 0, daemon.log()
        assert "INFO agent.daemon: stopping" in daemon.log()
    finally:
        daemon.kill()


class EchoingRejecter:
    """An HTTP server that refuses every write with 401 and echoes back the request line and
    headers it got (credentials included), as misconfigured proxies do."""

    def __init__(self) -> None:
        import http.server

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                self.rfile.read(length)
                body = f"denied {self.requestline}\n{self.headers}".encode()
                self.send_response(401)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_failing_outputs_never_log_their_secrets(tmp_path: Path) -> None:
    """Both InfluxDB outputs refused by a server that echoes their credentials back, at
    debug level: the token and the password (from their files and the environment) never
    reach the log."""
    token, password = "tok-7f3a9c1e5b-SECRET", "pw-0d9e8c7b6a-SECRET"
    (tmp_path / "influx.token").write_text(token + "\n")
    (tmp_path / "influx.password").write_text(password + "\n")
    for name in ("influx.token", "influx.password"):
        (tmp_path / name).chmod(0o600)
    server = EchoingRejecter()
    outputs = f"""
[outputs.influxdb]
url = "http://127.0.0.1:{server.port}"
org = "ops"
bucket = "egress"
token_file = "{tmp_path}/influx.token"
max_retry_delay = "1s"

[outputs.influxdb_v1]
url = "http://127.0.0.1:{server.port}"
database = "egress"
username = "bob"
password_file = "{tmp_path}/influx.password"
max_retry_delay = "1s"
"""
    config = tmp_path / "agent.toml"
    config.write_text(
        config_text(tmp_path, outputs, '["host"]').replace(
            "[agent]\n", '[agent]\nlog_level = "debug"\n'
        )
    )
    try:
        result = subprocess.run(
            [*agent_argv(), "run", "-c", str(config), "--duration", "5"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if k != "INFLUX_TOKEN"},
        )
    finally:
        server.close()
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "401" in log, log  # the refusals were logged
    assert token not in log, log
    assert password not in log, log
