"""Scheduler: aligned ticks, failing and overrunning collectors, streaming restarts."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import pytest

from agent.collector import (
    AsyncPolledCollector,
    CollectorContext,
    PolledCollector,
    StreamingCollector,
)
from agent.pipeline import Pipeline
from agent.points import Point
from agent.scheduler import Scheduler, after_run, next_tick_ns
from agent.spool import Spool
from tests.collector_support import make_ctx


class Good(PolledCollector):
    name = "good"

    def collect(self) -> list[Point]:
        return [Point("good", {}, {"v": 1})]


class Broken(PolledCollector):
    name = "broken"

    def collect(self) -> list[Point]:
        raise OSError("source unreadable")


class Slow(PolledCollector):
    name = "slow"
    told: list[int] = []

    def collect(self) -> list[Point]:
        time.sleep(0.5)
        return [Point("slow", {}, {"v": 1})]

    def overran(self, ticks: int) -> None:
        self.told.append(ticks)


class Flaky(StreamingCollector):
    name = "flaky"
    starts = 0

    async def run(self) -> None:
        type(self).starts += 1
        self.ctx.emit([Point("flaky", {}, {"start": type(self).starts})])
        await asyncio.sleep(0.01)
        raise ConnectionError("peer went away")


def test_next_tick_is_exact_multiple() -> None:
    assert next_tick_ns(10_500_000_000, 1_000_000_000) == 11_000_000_000
    assert next_tick_ns(11_000_000_000, 1_000_000_000) == 12_000_000_000


@pytest.mark.schema_free  # toy collectors with made-up measurements
def test_collectors_fail_independently(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[Point], Scheduler]:
        spool = Spool(tmp_path)
        pipeline = Pipeline(spool, "h")
        pipeline.bind_loop(asyncio.get_running_loop())
        scheduler = Scheduler(pipeline)
        ctx = make_ctx(tmp_path, pipeline)
        collectors = [Good(ctx), Broken(ctx), Slow(ctx), Flaky(ctx)]
        for collector in collectors:
            scheduler.start(collector)
        await asyncio.sleep(1.6)
        stats = {s.name: s for s in scheduler.stats.values()}
        await scheduler.stop_all()
        scheduler.shutdown()
        points = list(pipeline._take_batch())
        result = points, scheduler
        assert stats["broken"].errors >= 5 and stats["broken"].runs >= 5
        assert "source unreadable" in stats["broken"].last_error
        assert stats["good"].runs >= 5 and stats["good"].errors == 0
        assert stats["slow"].overruns >= 1
        assert stats["slow"].overruns == sum(Slow.told)  # counted once, where ticks are skipped
        # 0.5, 1.0 s back-off after 0 and 1 failures: at least two restarts in 1.6 s
        assert 2 <= stats["flaky"].restarts <= 4
        return result

    points, _ = asyncio.run(scenario())
    good = [p for p in points if p.measurement == "good"]
    assert len(good) >= 5
    interval_ns = 200_000_000
    assert all(p.time_ns % interval_ns == 0 for p in good)  # aligned to the interval
    assert all(p.tags["host"] == "h" for p in points)
    starts = [p.fields["start"] for p in points if p.measurement == "flaky"]
    assert starts[:2] == [1, 2]


def test_after_run_counts_the_ticks_a_run_skipped() -> None:
    s = 1_000_000_000
    assert after_run(10 * s, 10 * s + 300_000_000, s) == (11 * s, 0)  # in time
    assert after_run(10 * s, 11 * s, s) == (12 * s, 1)  # ended on the next tick: skipped
    assert after_run(10 * s, 13 * s + 1, s) == (14 * s, 3)  # ticks 11, 12, 13 skipped
    assert after_run(10 * s, 11 * s - 1, s) == (11 * s, 0)


class AsyncGood(AsyncPolledCollector):
    name = "async_good"

    async def collect(self) -> list[Point]:
        await asyncio.sleep(0.01)
        return [Point("async_good", {}, {"v": 1})]


class AsyncSlow(AsyncPolledCollector):
    """0.5 s runs at a 200 ms interval: each run skips two ticks."""

    name = "async_slow"

    def __init__(self, ctx: CollectorContext) -> None:
        super().__init__(ctx)
        self.told: list[int] = []

    async def collect(self) -> list[Point]:
        await asyncio.sleep(0.5)
        return [Point("async_slow", {}, {"v": 1})]

    def overran(self, ticks: int) -> None:
        self.told.append(ticks)


@pytest.mark.schema_free  # made-up measurements (the marker comes with the schema check)
def test_async_polled_collectors_run_on_ticks_and_overruns_are_counted_once(
        tmp_path: Path) -> None:
    async def scenario() -> tuple[list[Point], dict[str, Any], list[int]]:
        spool = Spool(tmp_path)
        pipeline = Pipeline(spool, "h")
        pipeline.bind_loop(asyncio.get_running_loop())
        scheduler = Scheduler(pipeline)
        ctx = make_ctx(tmp_path, pipeline)
        slow = AsyncSlow(ctx)
        for collector in (AsyncGood(ctx), slow):
            scheduler.start(collector)
        await asyncio.sleep(1.7)
        stats = {s.name: s.as_dict() for s in scheduler.stats.values()}
        await scheduler.stop_all()
        scheduler.shutdown()
        return list(pipeline._take_batch()), stats, slow.told

    points, stats, told = asyncio.run(scenario())
    good = [p for p in points if p.measurement == "async_good"]
    slow = [p for p in points if p.measurement == "async_slow"]
    assert stats["async_good"]["kind"] == "polled" and stats["async_good"]["overruns"] == 0
    assert stats["async_good"]["runs"] >= 6 and len(good) >= 6
    assert all(p.time_ns % 200_000_000 == 0 for p in good + slow)
    # every run of the slow one skipped the two ticks inside its 0.5 s, told once each
    assert len(slow) >= 2 and told[:2] == [2, 2]
    assert stats["async_slow"]["overruns"] == sum(told)
    # runs start on every third tick: 600 ms apart
    gaps = {b.time_ns - a.time_ns for a, b in itertools.pairwise(slow)}
    assert gaps == {600_000_000}
