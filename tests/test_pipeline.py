"""The in-memory queue between emit and the spool: order, batch limits, overflow counted."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from agent.pipeline import Pipeline
from agent.points import Point
from agent.spool import Spool

pytestmark = pytest.mark.schema_free  # made-up measurements ("m") through the pipeline


def _points(start: int, count: int) -> list[Point]:
    return [Point("m", {}, {"seq": i}, 1_000 + i) for i in range(start, start + count)]


def _seqs(batch: list[Point]) -> list[object]:
    return [p.fields["seq"] for p in batch]


def test_batches_keep_emit_order_and_split_at_the_limit(tmp_path: Path) -> None:
    pipeline = Pipeline(Spool(tmp_path), "h", max_batch_points=4)
    pipeline.emit(_points(0, 3))
    pipeline.emit(_points(3, 6))
    pipeline.emit([])
    assert pipeline.queue_points == 9
    batches = [pipeline._take_batch() for _ in range(4)]
    assert [_seqs(b) for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8], []]
    assert pipeline.queue_points == 0
    assert pipeline.stats.points_emitted == 9


def test_points_get_the_emit_time_and_host_when_batched_later(tmp_path: Path) -> None:
    pipeline = Pipeline(Spool(tmp_path), "h", max_batch_points=3)
    before_ns = time.time_ns()
    pipeline.emit([Point("m", {}, {"seq": i}) for i in range(4)] + _points(4, 1))
    after_ns = time.time_ns()
    time.sleep(0.05)
    batches = [pipeline._take_batch(), pipeline._take_batch()]
    assert [_seqs(b) for b in batches] == [[0, 1, 2], [3, 4]]
    stamped = [p.time_ns for batch in batches for p in batch]
    assert all(before_ns <= t <= after_ns for t in stamped[:4])
    assert stamped[4] == 1_004  # a collector's own time is kept
    assert all(p.tags == {"host": "h"} for batch in batches for p in batch)


def test_a_huge_list_is_batched_in_order_and_overflow_trims_its_front(tmp_path: Path) -> None:
    pipeline = Pipeline(Spool(tmp_path), "h", max_batch_points=1000, max_queue_points=9_000)
    pipeline.emit(_points(0, 10_000))  # 1,000 over: the oldest go
    assert pipeline.stats.queue_dropped == 1_000
    seqs = []
    while batch := pipeline._take_batch():
        assert len(batch) == 1000
        seqs.extend(_seqs(batch))
    assert seqs == list(range(1_000, 10_000))
    assert pipeline.queue_points == 0


def test_overflow_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    pipeline = Pipeline(Spool(tmp_path), "h", max_batch_points=100, max_queue_points=5)
    pipeline.emit(_points(0, 3))
    pipeline.emit(_points(3, 4))  # 7 queued: the 2 oldest go
    assert pipeline.stats.queue_dropped == 2
    assert pipeline.queue_points == 5
    assert _seqs(pipeline._take_batch()) == [2, 3, 4, 5, 6]


def test_emit_from_threads_loses_nothing_and_reaches_the_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    pipeline = Pipeline(spool, "h", max_batch_points=1000)

    async def run() -> None:
        pipeline.bind_loop(asyncio.get_running_loop())
        flusher = asyncio.create_task(pipeline.run_flusher())
        threads = [
            threading.Thread(target=lambda n=n: [pipeline.emit(_points(n * 1000 + k * 10, 10))
                                                 for k in range(100)])
            for n in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        while pipeline.stats.points_spooled < 4000:
            await asyncio.sleep(0.01)
        flusher.cancel()

    asyncio.run(run())
    seen = sorted(int(p.fields["seq"]) for p in spool.iter_points())
    assert seen == list(range(4000))
    assert all(p.tags == {"host": "h"} for p in spool.iter_points())


def test_the_first_emit_after_a_quiet_spell_gathers_those_of_its_moment(
        tmp_path: Path) -> None:
    """Emits 0, 50 and 100 ms after a quiet spell (collectors of one tick, rounds through
    carriers of different RTTs) share one spool record when the flusher gathers 200 ms."""
    spool = Spool(tmp_path)
    pipeline = Pipeline(spool, "h", max_batch_points=100)

    async def run() -> tuple[float, int]:
        pipeline.bind_loop(asyncio.get_running_loop())
        flusher = asyncio.create_task(pipeline.run_flusher(min_gap_s=2.0, gather_s=0.2))
        start = time.monotonic()
        for k in range(3):
            pipeline.emit(_points(k, 1))
            await asyncio.sleep(0.05)
        while pipeline.stats.points_spooled < 3:
            await asyncio.sleep(0.005)
        flushed_s = time.monotonic() - start
        flusher.cancel()
        return flushed_s, spool.next_seq

    flushed_s, records = asyncio.run(run())
    assert records == 1
    assert 0.19 <= flushed_s < 1.5


def test_an_urgent_emit_is_flushed_at_once_within_the_gap(tmp_path: Path) -> None:
    """An event (an uplink down, alerted on) does not wait for the gap after a flush, nor
    for the gather; an ordinary emit in the same gap does."""
    spool = Spool(tmp_path)
    pipeline = Pipeline(spool, "h", max_batch_points=100)

    async def run() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        pipeline.bind_loop(loop)
        flusher = asyncio.create_task(pipeline.run_flusher(min_gap_s=2.0, gather_s=0.2))
        pipeline.emit(_points(0, 1))
        while pipeline.stats.points_spooled < 1:
            await asyncio.sleep(0.005)
        pipeline.emit(_points(1, 1))  # waits for the gap
        await asyncio.sleep(0.05)
        start = time.monotonic()
        # from another thread, as the link event collector's carrier poll does
        await asyncio.to_thread(pipeline.emit, _points(2, 1), True)
        while pipeline.stats.points_spooled < 3:
            await asyncio.sleep(0.005)
        urgent_s = time.monotonic() - start
        pipeline.emit(_points(3, 1))  # right after: the gap again
        await asyncio.sleep(0.5)
        waiting = pipeline.queue_points
        flusher.cancel()
        return urgent_s, waiting

    urgent_s, waiting = asyncio.run(run())
    assert urgent_s < 0.15
    assert waiting == 1
    assert sorted(int(p.fields["seq"]) for p in spool.iter_points()) == [0, 1, 2]


def test_the_flusher_spaces_its_flushes_but_not_a_full_batch(tmp_path: Path) -> None:
    """With a gap, the emits of one gap share a spool record (and an output request); the
    first emit after a quiet spell goes at once, and a full batch never waits."""
    spool = Spool(tmp_path)
    pipeline = Pipeline(spool, "h", max_batch_points=100)

    async def run() -> tuple[float, int, float]:
        pipeline.bind_loop(asyncio.get_running_loop())
        flusher = asyncio.create_task(pipeline.run_flusher(min_gap_s=2.0))
        start = time.monotonic()
        pipeline.emit(_points(0, 1))
        while pipeline.stats.points_spooled < 1:
            await asyncio.sleep(0.005)
        first_s = time.monotonic() - start
        for k in range(1, 9):  # eight emits over 0.4 s: within one gap
            pipeline.emit(_points(k, 1))
            await asyncio.sleep(0.05)
        while pipeline.stats.points_spooled < 9:
            await asyncio.sleep(0.005)
        records = spool.next_seq
        full_at = time.monotonic()
        pipeline.emit(_points(9, 100))  # a full batch right after a flush
        while pipeline.stats.points_spooled < 109:
            await asyncio.sleep(0.005)
        flusher.cancel()
        return first_s, records, time.monotonic() - full_at

    first_s, records, full_s = asyncio.run(run())
    assert first_s < 1.5  # not held back by the gap
    assert records == 2  # the first emit, then the eight together
    assert full_s < 1.5
    assert sorted(int(p.fields["seq"]) for p in spool.iter_points()) == list(range(109))
