"""The one path every point takes: emit → queue → encode → spool → outputs.

`emit` may be called from any thread and costs the same for ten points or ten thousand: it
queues the list with the time it came. A flusher task moves whatever is queued to the spool
as one batch as soon as something arrives (so an event reaches the database within
milliseconds, and a burst becomes one batch), then wakes every output worker. Stamping (the
host tag, and the emit time where a collector left none), encoding and the append run in a
worker thread, off the event loop. Observers (the Prometheus exporter) see each batch after
it is durable.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from agent.outputs.base import OutputWorker
from agent.points import LineEncoder, Point, stamp_points
from agent.spool import Spool
from agent.spool_format import SpoolRecord

log = logging.getLogger(__name__)

Observer = Callable[[Sequence[Point]], None]


@dataclass(slots=True)
class _Chunk:
    """One emitted list, with when it came; `start`: how much of it is already batched."""

    points: list[Point]
    emitted_ns: int
    start: int = 0

    @property
    def remaining(self) -> int:
        return len(self.points) - self.start


@dataclass
class PipelineStats:
    points_emitted: int = 0
    points_spooled: int = 0
    queue_dropped: int = 0


def _schema_check() -> Callable[[Sequence[Point]], None] | None:
    """Only where EGRESS_AGENT_SCHEMA_CHECK is set (the tests): the schema is not imported
    otherwise."""
    if not os.environ.get("EGRESS_AGENT_SCHEMA_CHECK"):
        return None
    from agent.schema import point_check_from_env

    return point_check_from_env()


class Pipeline:
    def __init__(
        self,
        spool: Spool,
        hostname: str,
        max_batch_points: int = 50_000,
        max_queue_points: int = 2_000_000,
    ) -> None:
        self.spool = spool
        self.hostname = hostname
        self.max_batch_points = max_batch_points
        self.max_queue_points = max_queue_points
        self.stats = PipelineStats()
        self.workers: list[OutputWorker] = []
        self.observers: list[Observer] = []
        # Emitted lists as they came, each with its emit time and how much of it was taken
        # already: queueing and batching cost per list, not per point.
        self._chunks: collections.deque[_Chunk] = collections.deque()
        self._queued_points = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.encoder_v2 = LineEncoder(version=2)
        self.encoder_v1 = LineEncoder(version=1)
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()  # an event was emitted: flush without waiting
        self._flush_lock = asyncio.Lock()  # keeps batches in emit order
        # The test suite's schema check of every point (agent/schema.py); None in use.
        self._schema_check = _schema_check()

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def queue_points(self) -> int:
        return self._queued_points

    def emit(self, points: Iterable[Point], urgent: bool = False) -> None:
        """Thread-safe. The host tag, and this moment as the time where the collector left
        none, are added later, off the caller's thread (`_stamped`). `urgent` (an event
        such as a link going down): flushed at once, not with the next gap's batch."""
        chunk = _Chunk(list(points), time.time_ns())
        if not chunk.points:
            return
        with self._lock:
            self._chunks.append(chunk)
            self._queued_points += len(chunk.points)
            self.stats.points_emitted += len(chunk.points)
            overflow = self._queued_points - self.max_queue_points
            if overflow > 0:
                # Only if the disk cannot keep up for a long time: drop oldest, counted.
                self._drop_oldest(overflow)
                self.stats.queue_dropped += overflow
                log.error("queue over %d points: dropped %d oldest", self.max_queue_points,
                          overflow)
        if self._loop is not None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is self._loop:
                self._wake_flusher(urgent)
            else:
                self._loop.call_soon_threadsafe(self._wake_flusher, urgent)

    def _wake_flusher(self, urgent: bool) -> None:
        self._wake.set()
        if urgent:
            self._urgent.set()

    def _drop_oldest(self, count: int) -> None:
        while count > 0:
            oldest = self._chunks[0]
            taken = min(count, oldest.remaining)
            oldest.start += taken
            if not oldest.remaining:
                self._chunks.popleft()
            self._queued_points -= taken
            count -= taken

    def _take_parts(self) -> list[_Chunk]:
        """Up to max_batch_points from the queue, oldest first. A list bigger than that is
        taken a slice at a time; the rest is not copied each time."""
        with self._lock:
            parts: list[_Chunk] = []
            room = self.max_batch_points
            while self._chunks and room > 0:
                oldest = self._chunks[0]
                if oldest.start == 0 and len(oldest.points) <= room:
                    parts.append(self._chunks.popleft())
                else:
                    end = min(len(oldest.points), oldest.start + room)
                    parts.append(_Chunk(oldest.points[oldest.start:end], oldest.emitted_ns))
                    oldest.start = end
                    if not oldest.remaining:
                        self._chunks.popleft()
                room -= len(parts[-1].points)
            self._queued_points -= self.max_batch_points - room
            return parts

    def _stamped(self, parts: list[_Chunk]) -> list[Point]:
        for part in parts:
            stamp_points(part.points, part.emitted_ns, self.hostname)
        batch = parts[0].points if len(parts) == 1 else [
            point for part in parts for point in part.points]
        if self._schema_check is not None:
            self._schema_check(batch)
        return batch

    def _take_batch(self) -> list[Point]:
        return self._stamped(self._take_parts())

    def encode(self, batch: list[Point]) -> SpoolRecord | None:
        """Line protocol for 2.x+, plus a 1.x variant only when a backslash makes them differ."""
        body, lines = self.encoder_v2.encode_body(batch)
        if not lines:
            return None
        body_v1 = None
        if b"\\" in body and b"\\\\" in body:  # one byte first: memchr, not a search
            body_v1 = self.encoder_v1.encode_batch(batch)
        return SpoolRecord(body, body_v1, lines, batch[0].time_ns)

    def _stamp_encode_append(self, parts: list[_Chunk]) -> list[Point]:
        batch = self._stamped(parts)
        record = self.encode(batch)
        if record is not None:
            self.spool.append(record)
        return batch

    @property
    def points_unencodable(self) -> int:
        return self.encoder_v2.stats.dropped_points

    async def flush_once(self) -> int:
        async with self._flush_lock:
            parts = self._take_parts()
            if not parts:
                return 0
            batch = await asyncio.to_thread(self._stamp_encode_append, parts)
        self.stats.points_spooled += len(batch)
        for worker in self.workers:
            worker.notify()
        for observer in self.observers:
            try:
                observer(batch)
            except Exception:
                log.exception("observer failed")
        return len(batch)

    async def run_flusher(self, min_gap_s: float = 0.0, gather_s: float = 0.0) -> None:
        """Flush what is queued whenever something is emitted, but at most once every
        `min_gap_s` unless a full batch is waiting: each flush is a thread hop, a spool
        append (with its fsync) and a request per output, so the emits of one gap (probe
        rounds end at their own times) share them. The first emit after a quiet spell
        waits `gather_s` for the others of its moment (collectors polled on the same tick
        end milliseconds apart; so do the rounds through carriers of different RTTs). An
        urgent emit ends the wait."""
        flushed_at = -math.inf
        while True:
            await self._wake.wait()
            wait_s = max(gather_s, flushed_at + min_gap_s - time.monotonic())
            if (wait_s > 0 and self._queued_points < self.max_batch_points
                    and not self._urgent.is_set()):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self._urgent.wait()
            self._urgent.clear()
            self._wake.clear()
            while await self.flush_once():
                pass
            flushed_at = time.monotonic()

    async def flush_all(self) -> None:
        """On stop and reload: everything queued goes to the spool."""
        while await self.flush_once():
            pass
