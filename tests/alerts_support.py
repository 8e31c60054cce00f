"""The alert engine on a fake clock with a three-carrier config: what the alert tests
(tests/test_alerts.py and the RIS Live and RPKI alert tests) drive it through."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.alerts.engine import AlertEngine
from agent.config import Config, parse_config
from agent.points import Point

BASE = """
[agent]
hostname = "edge-1"
data_dir = "{data_dir}"

[[carriers]]
name = "telecom"
interface = "eth1"
committed_mbps = 1000
  [carriers.bgp]
  peer = "203.0.113.1"
  peer_as = 4134
  local_address = "203.0.113.2"

[[carriers]]
name = "unicom"
interface = "eth2"
committed_mbps = 1000
  [carriers.bgp]
  peer = "203.0.113.5"
  peer_as = 4837
  local_address = "203.0.113.6"

[[carriers]]
name = "mobile"
interface = "eth3"
  [carriers.bgp]
  peer = "203.0.113.9"
  peer_as = 9808
  local_address = "203.0.113.10"

[bgp]
local_as = 64512
router_id = "203.0.113.2"
announce = ["198.51.100.0/24"]
"""

T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Harness:
    def __init__(self, tmp_path: Path, extra: str = "", **engine_args: Any) -> None:
        import tomllib

        text = BASE.format(data_dir=tmp_path) + extra
        self.config: Config = parse_config(tomllib.loads(text))
        self.clock = Clock()
        self.emitted: list[Point] = []
        self.tmp_path = tmp_path
        self.engine = AlertEngine(self.config, self.emitted.extend, clock=self.clock,
                                  state_path=tmp_path / "alerts" / "state.json", **engine_args)

    def point(self, measurement: str, tags: dict[str, str], fields: dict[str, Any],
              at: float | None = None) -> None:
        t = self.clock.now if at is None else at
        self.engine.observe([Point(measurement, {"host": "edge-1", **tags}, fields,
                                   int(t * 1e9))])

    def step(self, seconds: float, stats: dict[str, Any] | None = None) -> None:
        self.clock.advance(seconds)
        self.engine.tick(stats)

    def firing(self, alertname: str | None = None) -> list[dict[str, Any]]:
        return [a for a in self.engine.active() if a["state"] == "firing"
                and (alertname is None or a["labels"]["alertname"] == alertname)]

    def pending(self, alertname: str) -> list[dict[str, Any]]:
        return [a for a in self.engine.active() if a["state"] == "pending"
                and a["labels"]["alertname"] == alertname]

    def changes(self, alertname: str | None = None) -> list[tuple[str, dict[str, str]]]:
        return [(p.tags["state"], p.tags) for p in self.emitted
                if alertname is None or p.tags["alertname"] == alertname]
