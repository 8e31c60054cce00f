"""Runs collectors: polled ones (sync or async) on aligned ticks, streaming ones for the
agent's life.

A polled collector's points are stamped with the tick they belong to (aligned to its
interval: 10 s collectors stamp :00, :10, ...), so points of one interval line up across
collectors and hosts, and a re-sent batch overwrites rather than duplicates. A collect()
still running at the next tick is an overrun: that tick is skipped and counted (here, the
one place; the collector is told through `overran`). A streaming
collector that raises is restarted with exponential back-off (reset after a minute of health).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from agent.collector import (
    AsyncPolledCollector,
    Collector,
    PolledCollector,
    StreamingCollector,
)
from agent.pipeline import Pipeline

log = logging.getLogger(__name__)

STREAM_BACKOFF_MAX_S = 60.0
STREAM_HEALTHY_S = 60.0
STOP_S = 5.0  # default bound for stopping collectors (the agent's stop passes its share)


@dataclass
class CollectorStats:
    name: str
    kind: str
    interval_s: float | None = None
    runs: int = 0
    errors: int = 0
    overruns: int = 0
    restarts: int = 0
    points: int = 0
    last_run_ns: int = 0
    last_duration_s: float = 0.0
    last_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def next_tick_ns(now_ns: int, interval_ns: int) -> int:
    """The first multiple of interval_ns strictly after now_ns (integers: exact alignment)."""
    return (now_ns // interval_ns + 1) * interval_ns


def after_run(tick_ns: int, now_ns: int, interval_ns: int) -> tuple[int, int]:
    """The tick to run next once the run of `tick_ns` ended at `now_ns`, and how many ticks
    that run made it skip (its overruns)."""
    following = tick_ns + interval_ns
    if following > now_ns:
        return following, 0
    return next_tick_ns(now_ns, interval_ns), (now_ns - following) // interval_ns + 1


def interval_ns_of(interval_s: float) -> int:
    return max(1, round(interval_s * 1e9))


class Scheduler:
    def __init__(self, pipeline: Pipeline, max_workers: int = 4) -> None:
        self.pipeline = pipeline
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="collect"
        )
        self.tasks: dict[Collector, asyncio.Task[None]] = {}
        self.stats: dict[Collector, CollectorStats] = {}
        self.heartbeat_s = time.monotonic()

    def start(self, collector: Collector) -> None:
        if isinstance(collector, PolledCollector | AsyncPolledCollector):
            stats = CollectorStats(collector.name, "polled", collector.interval_s)
            coro = self._run_polled(collector, stats)
        elif isinstance(collector, StreamingCollector):
            stats = CollectorStats(collector.name, "streaming")
            coro = self._run_streaming(collector, stats)
        else:
            raise TypeError(f"{collector!r} is neither polled nor streaming")
        self.stats[collector] = stats
        self.tasks[collector] = asyncio.create_task(coro, name=f"collector:{collector.name}")

    async def stop(self, collector: Collector, timeout_s: float = STOP_S) -> None:
        await self.stop_many([collector], timeout_s)

    async def stop_all(self, timeout_s: float = STOP_S) -> None:
        await self.stop_many(list(self.tasks), timeout_s)

    async def stop_many(self, collectors: list[Collector], timeout_s: float = STOP_S) -> None:
        """Cancel them all at once and close each, within about timeout_s in all. One that
        does not end in time is said so and left behind (a collect() stuck in a thread
        cannot be interrupted; waiting for it would make the agent's stop unbounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout_s)
        tasks: dict[asyncio.Task[None], Collector] = {}
        for collector in collectors:
            task = self.tasks.pop(collector, None)
            self.stats.pop(collector, None)
            if task is not None:
                task.cancel()
                tasks[task] = collector
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - loop.time()))
            for task in pending:
                log.warning("collector %s did not stop within %.1fs; left behind",
                            tasks[task].name, timeout_s)
        left_s = max(0.1, deadline - loop.time())
        await asyncio.gather(*(self._close(collector, left_s) for collector in collectors))

    async def _close(self, collector: Collector, timeout_s: float) -> None:
        """collector.close() in a daemon thread of its own, waited for up to timeout_s (a
        pool thread that never returned would also hold up the process's exit)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def settle(error: BaseException | None) -> None:
            if done.done():
                return
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

        def target() -> None:
            error: BaseException | None = None
            try:
                collector.close()
            except Exception as exc:
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop is gone
                loop.call_soon_threadsafe(settle, error)

        threading.Thread(target=target, name=f"close:{collector.name}", daemon=True).start()
        finished, _ = await asyncio.wait({done}, timeout=timeout_s)
        if not finished:
            log.warning("collector %s: close did not return within %.1fs; left behind",
                        collector.name, timeout_s)
        elif done.exception() is not None:
            log.error("collector %s: close failed", collector.name, exc_info=done.exception())

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _run_polled(self, collector: PolledCollector | AsyncPolledCollector,
                          stats: CollectorStats) -> None:
        loop = asyncio.get_running_loop()
        interval_s = collector.interval_s
        interval_ns = interval_ns_of(interval_s)
        tick_ns = next_tick_ns(time.time_ns(), interval_ns)
        while True:
            await asyncio.sleep(max(0.0, (tick_ns - time.time_ns()) / 1e9))
            self.heartbeat_s = time.monotonic()
            started = time.monotonic()
            warned = False
            try:
                if isinstance(collector, AsyncPolledCollector):
                    points = await collector.collect()  # on the loop; its own timeouts
                elif collector.blocking:
                    future = loop.run_in_executor(self.executor, collector.collect)
                    # asyncio.wait, not wait_for(shield(...)): on Python 3.11 wait_for
                    # returns the result instead of raising CancelledError when the
                    # future completes in the same loop iterations as a cancel, and the
                    # collector then runs on after stop() cancelled it: stop never ends.
                    done, _ = await asyncio.wait({future}, timeout=interval_s)
                    if done:
                        points = future.result()
                    else:  # said now, in case it never returns; counted below
                        warned = True
                        log.warning("collector %s: overran its %.1fs interval",
                                    collector.name, interval_s)
                        points = await future  # late points still count; next tick skipped
                else:
                    points = collector.collect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                stats.errors += 1
                stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("collector %s failed: %s", collector.name, stats.last_error)
                points = []
            stats.runs += 1
            stats.last_run_ns = tick_ns
            stats.last_duration_s = time.monotonic() - started
            for point in points:
                if not point.time_ns:
                    point.time_ns = tick_ns
            if points:
                stats.points += len(points)
                self.pipeline.emit(points)
            tick_ns, skipped = after_run(tick_ns, time.time_ns(), interval_ns)
            if skipped:
                stats.overruns += skipped
                if not warned:
                    log.warning("collector %s: overran its %.1fs interval (%d ticks skipped)",
                                collector.name, interval_s, skipped)
                collector.overran(skipped)

    async def _run_streaming(self, collector: StreamingCollector, stats: CollectorStats) -> None:
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                await collector.run()
                raise RuntimeError("run() returned")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                stats.errors += 1
                stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
                if time.monotonic() - started > STREAM_HEALTHY_S:
                    attempt = 0
                delay = min(STREAM_BACKOFF_MAX_S, 0.5 * 2**attempt)
                attempt += 1
                stats.restarts += 1
                log.warning("collector %s stopped (%s); restart in %.1fs", collector.name,
                            stats.last_error, delay)
                await asyncio.sleep(delay)

    def status(self) -> list[dict[str, Any]]:
        return [s.as_dict() for s in self.stats.values()]
