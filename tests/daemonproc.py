"""The agent run as systemd runs it, from a test: its NOTIFY_SOCKET (Notifications), the
process (Daemon), its config, and the ExaBGP it starts. The `notifications` fixture is
in conftest.py."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.agentproc import ROOT

STOP_LIMIT_S = 10.0  # SIGTERM → exit


def agent_argv() -> list[str]:
    script = Path(sys.executable).parent / "egress-agent"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "agent.cli"]


class Notifications:
    """The systemd side of sd_notify: a bound datagram socket, every message timestamped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[tuple[float, dict[str, str]]] = []  # (monotonic s, fields)
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
            with self._cond:
                self.messages.append((time.monotonic(), fields))
                self._cond.notify_all()

    def wait_for(self, key: str, after: int, timeout_s: float) -> tuple[int, dict[str, str]]:
        """First message at index >= after carrying `key`; its index and fields."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for i in range(after, len(self.messages)):
                    if key in self.messages[i][1]:
                        return i, self.messages[i][1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {key} within {timeout_s}s: {self.messages[after:]}")
                self._cond.wait(left)

    def count(self) -> int:
        with self._cond:
            return len(self.messages)

    def watchdogs(self, start: int, end: int) -> list[float]:
        with self._cond:
            return [t for t, m in self.messages[start:end] if m.get("WATCHDOG") == "1"]

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class Daemon:
    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.log_path = config.parent / f"agent-{time.time_ns()}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in wait()
        clean = {
            k: v
            for k, v in os.environ.items()
            if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
        }
        self.proc = subprocess.Popen(
            [*agent_argv(), "run", "-c", str(config)],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**clean, **env},
        )

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout_s)
        finally:
            self._log.close()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def config_text(tmp_path: Path, body: str, collectors: str, interval: str = "1s") -> str:
    return f"""
[agent]
hostname = "lifecycle"
interval = "{interval}"
data_dir = "{tmp_path}/data"
control_socket = "{tmp_path}/run/control.sock"
collectors = {collectors}
{body}
"""


def wait_until(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def exabgp_pids(agent_pid: int) -> set[int]:
    """ExaBGP processes among the agent's descendants."""
    found: set[int] = set()
    pending = [agent_pid]
    while pending:
        pid = pending.pop()
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            for child in map(int, children):
                pending.append(child)
                with contextlib.suppress(OSError):
                    if runs_exabgp(Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")):
                        found.add(child)
    return found


def runs_exabgp(argv: list[bytes]) -> bool:
    """ExaBGP by the program it runs, not by any word of its command line: a test's tmp_path
    holds its name (`test_own_exabgp_...`), and a child forked by the agent shows the agent's
    command line until it has exec'd."""
    programs = [Path(arg.decode(errors="replace")).name for arg in argv[:4]]
    return any(name in ("exabgp", "exabgp_launch.py") for name in programs)


def bgp_config(tmp_path: Path, peers: list[str], probe_target: str) -> str:
    carriers = "".join(
        f"""
[[carriers]]
name = "c{i}"
interface = "lo"
source = "127.0.0.1"
  [carriers.bgp]
  peer = "{peer}"
  peer_as = {64600 + i}
  local_address = "127.0.0.1"
"""
        for i, peer in enumerate(peers)
    )
    bgp = f"""
[bgp]
local_as = 64512
router_id = "192.0.2.1"
announce = ["198.51.100.0/24"]
exabgp = "{Path(sys.executable).parent / "exabgp"}"
"""
    probes = f"""
[[probes]]
name = "p"
target = "{probe_target}"
methods = ["tcp:9"]
interval = "1s"
count = 1
timeout = "200ms"
"""
    return config_text(tmp_path, carriers + bgp + probes, '["bgp", "probes"]')


def start_with_exabgp(
    tmp_path: Path, notifications: Notifications, text: str
) -> tuple[Daemon, Path, set[int]]:
    if not (Path(sys.executable).parent / "exabgp").exists():
        pytest.skip("exabgp is not installed in this venv")
    config = tmp_path / "agent.toml"
    config.write_text(text)
    daemon = Daemon(config, {"NOTIFY_SOCKET": str(notifications.path)})
    notifications.wait_for("READY", 0, 30)
    found: set[int] = set()

    def running() -> bool:
        found.clear()
        found.update(exabgp_pids(daemon.proc.pid))
        return len(found) == 1

    wait_until(running, 20, "ExaBGP to start")
    return daemon, config, set(found)


def reload_and_wait(daemon: Daemon, notifications: Notifications) -> None:
    mark = notifications.count()
    daemon.signal(signal.SIGHUP)
    at, _ = notifications.wait_for("RELOADING", mark, 15)
    notifications.wait_for("READY", at + 1, 15)
    time.sleep(2.0)  # let a restarted ExaBGP (if any) come up
