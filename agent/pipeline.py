"""The one path every point takes: emit → queue → encode → spool → outputs.

`emit` may be called from any thread. A flusher task moves whatever is queued to the spool
as one batch as soon as something arrives (so an event reaches the database within
milliseconds, and a burst becomes one batch), then wakes every output worker. Observers
(the Prometheus exporter) see each batch after it is durable.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from agent.outputs.base import OutputWorker
from agent.points import LineEncoder, Point
from agent.spool import Spool, SpoolRecord

log = logging.getLogger(__name__)

Observer = Callable[[Sequence[Point]], None]


@dataclass
class PipelineStats:
    points_emitted: int = 0
    points_spooled: int = 0
    queue_dropped: int = 0


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
        self._queue: collections.deque[Point] = collections.deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.encoder_v2 = LineEncoder(version=2)
        self.encoder_v1 = LineEncoder(version=1)
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()  # keeps batches in emit order

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def queue_points(self) -> int:
        return len(self._queue)

    def emit(self, points: Iterable[Point]) -> None:
        """Thread-safe. Adds the host tag and a timestamp where the collector left none."""
        now_ns = 0
        accepted = 0
        with self._lock:
            for point in points:
                if not point.time_ns:
                    now_ns = now_ns or time.time_ns()
                    point.time_ns = now_ns
                if "host" not in point.tags:
                    point.tags["host"] = self.hostname
                self._queue.append(point)
                accepted += 1
            self.stats.points_emitted += accepted
            overflow = len(self._queue) - self.max_queue_points
            if overflow > 0:
                # Only if the disk cannot keep up for a long time: drop oldest, counted.
                for _ in range(overflow):
                    self._queue.popleft()
                self.stats.queue_dropped += overflow
                log.error("queue over %d points: dropped %d oldest", self.max_queue_points,
                          overflow)
        if accepted and self._loop is not None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is self._loop:
                self._wake.set()
            else:
                self._loop.call_soon_threadsafe(self._wake.set)

    def _take_batch(self) -> list[Point]:
        with self._lock:
            count = min(len(self._queue), self.max_batch_points)
            return [self._queue.popleft() for _ in range(count)]

    def encode(self, batch: list[Point]) -> SpoolRecord | None:
        """Line protocol for 2.x+, plus a 1.x variant only when a backslash makes them differ."""
        body, lines = self.encoder_v2.encode_body(batch)
        if not lines:
            return None
        body_v1 = None
        if b"\\\\" in body:
            body_v1 = self.encoder_v1.encode_batch(batch)
        return SpoolRecord(body, body_v1, lines, batch[0].time_ns)

    def _encode_and_append(self, batch: list[Point]) -> None:
        record = self.encode(batch)
        if record is not None:
            self.spool.append(record)

    @property
    def points_unencodable(self) -> int:
        return self.encoder_v2.stats.dropped_points

    async def flush_once(self) -> int:
        async with self._flush_lock:
            batch = self._take_batch()
            if not batch:
                return 0
            await asyncio.to_thread(self._encode_and_append, batch)
        self.stats.points_spooled += len(batch)
        for worker in self.workers:
            worker.notify()
        for observer in self.observers:
            try:
                observer(batch)
            except Exception:
                log.exception("observer failed")
        return len(batch)

    async def run_flusher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while await self.flush_once():
                pass

    async def flush_all(self) -> None:
        """On stop and reload: everything queued goes to the spool."""
        while await self.flush_once():
            pass
