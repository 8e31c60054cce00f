"""Conditions on the agent itself: output lagging, points dropped, collector overruns."""

from __future__ import annotations

import collections
from typing import Any

from agent.alerts.conditions.base import (
    Condition,
)
from agent.alerts.engine import AlertEngine, format_duration


class OutputLagging(Condition):
    name = "output_lagging"

    def on_tick(self, now: float, self_stats: dict[str, Any] | None) -> None:
        if not self_stats:
            return
        for name, output in self_stats.get("outputs", {}).items():
            lag = float(output.get("lag_s", 0.0))
            extra = {"output": name}
            limit = self.p("lag") / 2 if self.active(extra) else self.p("lag")
            error = output.get("last_error") or "no error reported"
            self.set(extra, lag > limit,
                     f"output {name} has not delivered points for {lag:.0f} s "
                     f"({output.get('lag_points', 0)} points waiting; last error: {error})",
                     "The points stay in the spool and are delivered when the server is "
                     "back, unless the spool fills first.", value=lag)


class _CounterGrowth(Condition):
    """Fires while a counter grew within `window`."""

    def __init__(self, engine: AlertEngine, config: Any) -> None:
        super().__init__(engine, config)
        self.last: dict[str, int] = {}
        self.growth: dict[str, collections.deque[tuple[float, int]]] = {}

    def observe(self, key: str, value: int, now: float) -> tuple[bool, int]:
        """(grew within the window, by how much). Growth since start counts."""
        previous = min(self.last.get(key, 0), value)
        self.last[key] = value
        growth = self.growth.setdefault(key, collections.deque())
        if value > previous:
            growth.append((now, value - previous))
        while growth and growth[0][0] <= now - self.p("window"):
            growth.popleft()
        return bool(growth), sum(d for _, d in growth)


class PointsDropped(_CounterGrowth):
    name = "points_dropped"

    def on_tick(self, now: float, self_stats: dict[str, Any] | None) -> None:
        if not self_stats or "points_dropped" not in self_stats:
            return
        active, count = self.observe("", int(self_stats["points_dropped"]), now)
        self.set({}, active, f"{count} points dropped (spool full, queue overflow or "
                 "unencodable) in the last "
                 f"{format_duration(self.p('window'))}",
                 "Those points are lost for good: an output has been down longer than the "
                 "spool holds, or the disk cannot keep up.", value=float(count))


class CollectorOverrun(_CounterGrowth):
    name = "collector_overrun"

    def on_tick(self, now: float, self_stats: dict[str, Any] | None) -> None:
        if not self_stats:
            return
        for name, overruns in self_stats.get("collectors", {}).items():
            active, count = self.observe(name, int(overruns), now)
            self.set({"collector": name}, active,
                     f"collector {name} overran its interval {count} times in the last "
                     f"{format_duration(self.p('window'))}",
                     "Its samples are late or missing: the host is overloaded or the "
                     "collector has too much to do for its interval.", value=float(count))
