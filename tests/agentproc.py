"""Running the real agent as a subprocess in tests: config files, start, stop, read back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from agent.points import Point
from agent.spool import Spool

ROOT = Path(__file__).resolve().parent.parent


def write_config(tmp_path: Path, body: str, interval: str = "1s",
                 collectors: str = '["host"]', extra_agent: str = "") -> Path:
    data_dir = tmp_path / "data"
    text = f"""
[agent]
hostname = "test-host"
interval = "{interval}"
data_dir = "{data_dir}"
control_socket = "{tmp_path}/run/control.sock"
collectors = {collectors}
{extra_agent}
{body}
"""
    path = tmp_path / "agent.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


class AgentProcess:
    def __init__(self, config: Path, duration_s: float | None = None,
                 env: dict[str, str] | None = None) -> None:
        argv = [sys.executable, "-m", "agent.cli", "run", "-c", str(config)]
        if duration_s is not None:
            argv += ["--duration", str(duration_s)]
        self.log_path = config.parent / f"agent-{time.time_ns()}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def terminate(self, timeout_s: float = 15) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout_s)

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout_s)
        finally:
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def spool_points(data_dir: Path, measurement: str | None = None) -> list[Point]:
    spool = Spool(data_dir, read_only=True)
    return [p for p in spool.iter_points() if measurement is None or p.measurement == measurement]


def timestamps(points: list[Point]) -> list[int]:
    return sorted(p.time_ns for p in points)


def influx_times(server: Any, db: str, measurement: str, field: str) -> list[int]:
    rows = server.query(f'SELECT "{field}" FROM "{measurement}"', db=db)
    return sorted(int(r["time"]) for r in rows)


def vm_times(server: Any, series: str) -> list[int]:
    """Timestamps (ns) of a VictoriaMetrics series; it stores milliseconds."""
    found = server.export(f'{{__name__="{series}"}}', min_samples=1, wait_s=5.0)
    return sorted(t * 1_000_000 for s in found for t in s["timestamps"])
