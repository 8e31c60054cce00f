"""`agent`: the agent's own health, so a silent agent or a growing backlog shows up.

Fields: cpu_percent (this process, since the previous collection), rss_bytes,
queue_points (in memory, not yet spooled), spool_bytes, points_written (delivered,
summed over outputs), points_dropped (lost: spool full, queue overflow, points with no
field a server can carry), write_errors (batches a server rejected, kept in rejected/).
Also one `agent_output` point per output (tag `output`): points_written, write_errors,
retries, lag_points.
"""

from __future__ import annotations

import psutil

from agent.collector import Collector, CollectorContext, PolledCollector
from agent.points import Point


class AgentCollector(PolledCollector):
    name = "agent"

    def __init__(self, ctx: CollectorContext) -> None:
        super().__init__(ctx)
        self._process = psutil.Process()
        self._process.cpu_percent(interval=None)

    def collect(self) -> list[Point]:
        stats = self.ctx.core_stats() if self.ctx.core_stats else {}
        outputs = stats.pop("outputs", {})
        fields: dict[str, int | float | bool | str] = {
            "cpu_percent": float(self._process.cpu_percent(interval=None)),
            "rss_bytes": int(self._process.memory_info().rss),
        }
        for key in ("queue_points", "spool_bytes", "points_written", "points_dropped",
                    "write_errors"):
            fields[key] = int(stats.get(key, 0))
        points = [Point("agent", {}, fields)]
        for name, output in sorted(outputs.items()):
            points.append(
                Point(
                    "agent_output",
                    {"output": name},
                    {k: int(output.get(k, 0)) for k in
                     ("points_written", "write_errors", "retries", "lag_points")},
                )
            )
        return points


def create(ctx: CollectorContext) -> list[Collector]:
    return [AgentCollector(ctx)]
