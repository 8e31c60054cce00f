"""What a collector is: the one contract between the core and every source.

Threads and asyncio, decided here once:
- The core runs one asyncio loop. It schedules, moves points, serves the control socket.
- A polled collector's `collect()` is blocking by default and runs in the loop's worker
  thread pool (netlink dumps, psutil, file reads), so a slow source never stalls the loop.
  Set `blocking = False` for a collect() that only reads memory (it then runs on the loop).
- An async polled collector is scheduled the same way, but its `collect()` is a coroutine
  on the loop (probe rounds: mostly waiting for answers on sockets).
- A streaming collector is a coroutine that lives as long as the agent; it awaits its
  source (sockets, a child process) and calls `ctx.emit` when something happens
  (`ctx.emit_event` for what is alerted on at once). Blocking calls inside it go through
  `asyncio.to_thread` or a dedicated thread of its own.
- `ctx.emit` and `ctx.emit_event` are thread-safe: call them from the loop or any thread.

Collectors never encode, batch, retry, timestamp-align or write: the core does.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from agent.config import Config
from agent.points import Point

Emit = Callable[[Iterable[Point]], None]
ControlHandler = Callable[[dict[str, Any]], Awaitable[Any] | Any]
StatusProvider = Callable[[], Any]


@dataclass
class CollectorContext:
    """What the core lends a collector (one per collector group, for the group's life)."""

    config: Config
    emit: Emit
    data_dir: Path
    # The control commands answering now (read-only: a collector may call another group's
    # command, e.g. the probes call `bgp.lookup`; its own come back in its Built).
    control_handlers: Mapping[str, ControlHandler] = field(default_factory=dict)
    # The core's own counters, for the `agent` self-metrics collector only.
    core_stats: Callable[[], dict[str, Any]] | None = None
    # Where `emit_event` sends (the pipeline's urgent emit); None: `emit`.
    emit_urgent: Emit | None = None

    def emit_event(self, points: Iterable[Point]) -> None:
        """Thread-safe, as `emit`, for what an operator is alerted on (an uplink down):
        flushed at once rather than with the next batch, which may wait up to a second."""
        (self.emit_urgent or self.emit)(points)


@dataclass
class Built:
    """What a registry factory made: the collectors the core schedules, the commands the
    control socket answers (e.g. `bgp.lookup`) and the sections of `egress-agent status`.
    The core adds them when the group starts and removes them when it stops."""

    collectors: list[Collector] = field(default_factory=list)
    controls: dict[str, ControlHandler] = field(default_factory=dict)
    status: dict[str, StatusProvider] = field(default_factory=dict)


class Collector(abc.ABC):
    """Common base: a name for logs, metrics and `status`."""

    name: str = "collector"  # a class default; one instance per config entry sets its own

    def __init__(self, ctx: CollectorContext) -> None:
        self.ctx = ctx

    def overran(self, ticks: int) -> None:
        """Told by the scheduler, which counts overruns (`status` → `collectors`), that a
        run made it skip `ticks` ticks; for a collector that also shows them in a section
        of its own."""

    def close(self) -> None:
        """Release sockets or children; called once when the agent stops or reloads."""

    async def reconfigure(self, config: Config) -> bool:
        """Apply a changed config in place on reload (SIGHUP) and return True; False (the
        default) restarts the collector's group. Only called when the group's slice of the
        config changed (collectors/__init__.py). `self.ctx.config` is still the old config
        here (compare with it); the core sets it to the new one once every collector of the
        group has returned True."""
        return False


class PolledCollector(Collector):
    """Read a source every `interval_s`; the scheduler stamps points with the aligned tick."""

    blocking: ClassVar[bool] = True

    @property
    def interval_s(self) -> float:
        return self.ctx.config.agent.interval_s

    @abc.abstractmethod
    def collect(self) -> list[Point]:
        """Return this interval's points; raising is logged and counted, never fatal."""


class StreamingCollector(Collector):
    """Runs for the agent's life and emits when something happens."""

    @abc.abstractmethod
    async def run(self) -> None:
        """Never returns normally; raising gets it restarted with back-off."""


class AsyncPolledCollector(Collector):
    """Polled like PolledCollector (aligned ticks, overruns counted, points stamped with the
    tick), but `collect()` is a coroutine run on the loop: for sources that await sockets
    for most of a run (probe rounds), which would otherwise hold a pool thread throughout."""

    @property
    def interval_s(self) -> float:
        return self.ctx.config.agent.interval_s

    @abc.abstractmethod
    async def collect(self) -> list[Point]:
        """This interval's points; raising is logged and counted, never fatal."""
