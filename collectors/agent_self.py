"""`agent`: the agent's own health, so a silent agent or a growing backlog shows up.

Fields: cpu_percent (this process, since the previous collection), rss_bytes,
children_cpu_percent and children_rss_bytes (its child processes: ExaBGP and the BGP
bridge), total_cpu_percent and total_rss_bytes (the agent's whole cost to the host),
queue_points (in memory, not yet spooled), spool_bytes, points_written (delivered,
summed over outputs), points_dropped (lost: spool full, queue overflow, points with no
field a server can carry), write_errors (batches a server rejected, kept in rejected/).
Also one `agent_output` point per output (tag `output`): points_written, write_errors,
retries, lag_points.
"""

from __future__ import annotations

import os
import time

import psutil

from agent.collector import Built, CollectorContext, PolledCollector
from agent.points import Point

# A process is known by (pid, create time), so a recycled pid is a new process.
ProcessKey = tuple[int, float]


def children_cpu_s(before: dict[ProcessKey, float], now: dict[ProcessKey, float]) -> float:
    """CPU seconds the children used between two readings of their cumulative CPU times.
    A child born since `before` counts from zero; one that ended since is not seen (its
    last interval is lost, at most one collection interval of it)."""
    return sum(max(0.0, used - before.get(key, 0.0)) for key, used in now.items())


def descendant_pids(pid: int) -> list[int] | None:
    """Every descendant of `pid`, from the kernel's per-thread `children` lists: a few reads
    (psutil's children() reads the stat file of every process on the host, and took the GIL
    back and forth with the event loop for each). None where the kernel has no such files."""
    if not os.path.exists(f"/proc/{pid}/task/{pid}/children"):
        return None  # a kernel without CONFIG_PROC_CHILDREN
    found: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        try:
            threads = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue  # ended meanwhile
        for tid in threads:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as fh:
                    children = [int(word) for word in fh.read().split()]
            except OSError:
                continue  # the thread ended meanwhile
            found += children
            stack += children
    return found


class AgentCollector(PolledCollector):
    name = "agent"

    def __init__(self, ctx: CollectorContext) -> None:
        super().__init__(ctx)
        self._process = psutil.Process()
        self._process.cpu_percent(interval=None)
        self._children_cpu: dict[ProcessKey, float] = {}
        self._children_at = time.monotonic()
        self._known: dict[int, psutil.Process] = {}
        self._children()

    def _children(self) -> tuple[float, int]:
        """(CPU % of one core since the last call, RSS bytes) of all descendants."""
        now: dict[ProcessKey, float] = {}
        rss_bytes = 0
        for child in self._descendants():
            try:
                with child.oneshot():
                    times = child.cpu_times()
                    now[(child.pid, child.create_time())] = times.user + times.system
                    rss_bytes += child.memory_info().rss
            except psutil.Error:  # ended meanwhile
                continue
        at = time.monotonic()
        elapsed_s = at - self._children_at
        used_s = children_cpu_s(self._children_cpu, now)
        self._children_cpu, self._children_at = now, at
        return (100.0 * used_s / elapsed_s if elapsed_s > 0 else 0.0), rss_bytes

    def _descendants(self) -> list[psutil.Process]:
        pids = descendant_pids(self._process.pid)
        if pids is None:
            return list(self._process.children(recursive=True))
        known = self._known
        current: dict[int, psutil.Process] = {}
        for pid in pids:
            process = known.get(pid)
            try:
                if process is None or not process.is_running():  # is_running: pid reused?
                    process = psutil.Process(pid)
            except psutil.Error:
                continue
            current[pid] = process
        self._known = current
        return list(current.values())

    def collect(self) -> list[Point]:
        stats = self.ctx.core_stats() if self.ctx.core_stats else {}
        outputs = stats.pop("outputs", {})
        cpu_percent = float(self._process.cpu_percent(interval=None))
        rss_bytes = int(self._process.memory_info().rss)
        children_cpu_percent, children_rss_bytes = self._children()
        fields: dict[str, int | float | bool | str] = {
            "cpu_percent": cpu_percent,
            "rss_bytes": rss_bytes,
            "children_cpu_percent": round(children_cpu_percent, 3),
            "children_rss_bytes": children_rss_bytes,
            "total_cpu_percent": round(cpu_percent + children_cpu_percent, 3),
            "total_rss_bytes": rss_bytes + children_rss_bytes,
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


def create(ctx: CollectorContext) -> Built:
    return Built([AgentCollector(ctx)])
