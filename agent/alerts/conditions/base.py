"""What every alert condition shares: the `Condition` base (its rule, labels and the
engine calls), the event guard against stale polled points, and value formatting."""

from __future__ import annotations

from typing import Any

from agent.alerts.engine import AlertEngine
from agent.alerts.schema import CONDITIONS
from agent.points import Point


def _t(point: Point) -> float:
    return point.time_ns / 1e9


def _pct(fraction: float) -> str:
    return f"{fraction * 100:.1f} %"


def _mbps(bps: float) -> str:
    return f"{bps / 1e6:,.0f} Mbit/s"


class Condition:
    name = ""
    measurements: tuple[str, ...] = ()

    def __init__(self, engine: AlertEngine, config: Any) -> None:
        self.engine = engine
        self.config = config
        self.rule = config.alerts.rule(self.name)
        self.spec = CONDITIONS[self.name]
        self.alertname = self.spec.alertnames[0]
        self.for_s = self.rule.for_s

    def p(self, key: str) -> Any:
        return self.rule.get(key)

    def labels(self, extra: dict[str, str], severity: str | None = None) -> dict[str, str]:
        return self.engine.labels_for(self.alertname, severity or self.spec.severity, extra)

    def active(self, extra: dict[str, str], severity: str | None = None) -> bool:
        return self.engine.is_active(self.labels(extra, severity))

    def set(self, extra: dict[str, str], active: bool, summary: str = "",
            description: str = "", value: float | None = None,
            severity: str | None = None) -> None:
        self.engine.set_active(self.name, self.labels(extra, severity), active, summary,
                               description, self.for_s, value)

    def on_point(self, point: Point) -> None:
        pass

    def on_tick(self, now: float, self_stats: dict[str, Any] | None) -> None:
        pass


class _EventGuard:
    """Level points (polled) older than the last event of the same key are stale: the poll
    read the state before the event happened."""

    def __init__(self) -> None:
        self.last_event_ns: dict[Any, int] = {}

    def event(self, key: Any, time_ns: int) -> None:
        self.last_event_ns[key] = max(time_ns, self.last_event_ns.get(key, 0))

    def stale(self, key: Any, time_ns: int) -> bool:
        return time_ns < self.last_event_ns.get(key, 0)
