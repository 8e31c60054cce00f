"""What an output is, and the worker that feeds it from the spool.

An output only knows how to send one batch of points to its server; the worker owns the
cursor, batching, retries with exponential back-off (honouring Retry-After), and moving a
batch the server calls malformed to `rejected/` so it is neither retried forever nor lost.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from agent.logsetup import redact as redact_secrets
from agent.points import ProtocolVersion
from agent.spool import Spool

log = logging.getLogger(__name__)

class RetryableWriteError(Exception):
    """The server is down, overloaded or refused us for now: keep the batch, try later."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


class RejectedBatchError(Exception):
    """The server says the batch itself is bad (4xx other than 401/403/429)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status


def redact(text: str) -> str:
    """Errors from HTTP libraries and servers may quote URLs or headers: never let a secret
    through (the registered token and password, and anything shaped like a credential)."""
    return redact_secrets(text)[:500]


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # HTTP-date form: fall back to our own back-off


def classify_status(status: int, body: str, retry_after: str | None) -> Exception | None:
    """Map an HTTP answer to what the worker must do; None when it succeeded."""
    if 200 <= status < 300:
        return None
    if status in (401, 403):
        return RetryableWriteError(f"HTTP {status} (check credentials): {redact(body)}")
    if status == 429 or status >= 500:
        return RetryableWriteError(f"HTTP {status}: {redact(body)}", parse_retry_after(retry_after))
    if 400 <= status < 500:
        return RejectedBatchError(status, redact(body))
    return RetryableWriteError(f"HTTP {status}: {redact(body)}")


class Output(abc.ABC):
    """Sends batches to one server. `send` is blocking and runs in a worker thread."""

    name: str
    protocol_version: ProtocolVersion = 2
    batch_size: int = 5000
    max_retry_delay_s: float = 60.0
    # Set by `send` when what it delivered must not be delivered again after a crash (an
    # alert notification): the worker then writes the cursor at once instead of within
    # CURSOR_PERSIST_S. Points need not: InfluxDB overwrites a re-sent point.
    cursor_urgent: bool = False

    def __init__(self) -> None:
        pass

    @abc.abstractmethod
    def send(self, body: bytes) -> None:
        """Raise RetryableWriteError or RejectedBatchError; return on success."""

    def close(self) -> None:
        """Release connections."""


@dataclass(slots=True)
class _Batch:
    next_seq: int  # the cursor once this batch is delivered
    n_points: int
    body: bytes


@dataclass
class OutputStats:
    points_written: int = 0
    batches_written: int = 0
    write_errors: int = 0
    rejected_points: int = 0
    retries: int = 0
    last_error: str = ""
    last_success_ns: int = 0


def next_backoff_s(attempt: int, max_s: float, retry_after_s: float | None = None) -> float:
    """Exponential back-off with jitter; a server's Retry-After wins when it asks for longer."""
    base = min(max_s, 0.5 * (2 ** min(attempt, 16)))
    delay = base * (0.8 + 0.4 * random.random())  # noqa: S311 - jitter, not crypto
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, max_s * 10))
    return float(min(delay, max(max_s, retry_after_s or 0.0)))


SENDER_RESTART_S = 1.0
# On stop, how long the sender may take to end (by default; the daemon sets its share of
# the stop bound): an idle or backing-off sender ends at once, a request in flight gets
# this long and is then abandoned (its records stay in the spool).
SENDER_STOP_S = 1.0
# While batches follow each other, the cursor file is written at most this often: each write
# is an fsync and a rename, which on a busy disk cost more than the send itself. A crash
# re-sends at most this much, which InfluxDB overwrites (same series, same timestamps).
CURSOR_PERSIST_S = 1.0


class OutputWorker:
    """Delivers the spool to one output, in order, from its durable cursor.

    The whole delivery loop (read the next batch, send it, advance the cursor, back off)
    runs in one sender thread per output, because sending is a blocking HTTP call: a hop
    through the event loop and the thread pool per batch left the server idle for about a
    millisecond between requests. The event loop only wakes the thread (`notify`) and writes
    the cursor file beside the next send (see docs/architecture.md, "Threads").
    """

    def __init__(self, output: Output, spool: Spool, data_dir: Path) -> None:
        self.output = output
        self.spool = spool
        self.rejected_dir = Path(data_dir) / "rejected"
        self.stats = OutputStats()
        self.stop_timeout_s = SENDER_STOP_S
        # Set when a stop had to leave the sender behind in a request (see `run`).
        self.abandoned = False
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._retry_now = threading.Event()  # ends one back-off early (drain, stop)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._persisting: asyncio.Future[None] | None = None
        self._persist_scheduled_s = float("-inf")
        self._request_started_s: float | None = None  # monotonic, while a send is running
        self.last_attempt_failed = False  # the last send was refused or did not get through
        spool.register_output(output.name)

    def notify(self) -> None:
        """Thread-safe: new records are in the spool."""
        self._wake.set()

    def _prepare(self, seq: int) -> _Batch | None:
        """Whole records from seq on, joined into one request body."""
        records = self.spool.read_from(seq, self.output.batch_size)
        if not records:
            return None
        version = self.output.protocol_version
        body = b"\n".join(record.lines(version) for _, record in records)
        n_points = sum(record.n_points for _, record in records)
        return _Batch(records[-1][0] + 1, n_points, body)

    async def run(self) -> None:
        """Until cancelled. Then the sender ends within `stop_timeout_s`: at once when idle
        or backing off; a request in flight may finish until then, after which it is
        abandoned (the thread is a daemon and exits once the request returns; the process
        does not wait for it). Abandoning loses nothing: the cursor only ever moves past a
        batch the server confirmed, so the batch stays in the spool for the next start.
        Then the cursor file is written."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        finished: asyncio.Future[None] = loop.create_future()
        self._stopping.clear()
        self._retry_now.clear()
        self.abandoned = False
        thread = threading.Thread(target=self._sender, args=(loop, finished),
                                  name=f"output:{self.output.name}", daemon=True)
        thread.start()
        try:
            await asyncio.shield(finished)
        finally:
            self.signal_stop()
            if not finished.done():
                # A deadline, never thread.join(): a join waits as long as the request does
                # (and through asyncio.to_thread it would also hold up the loop's shutdown).
                # (An idle sender needs microseconds to notice: never less than 0.1 s.)
                await asyncio.wait({finished}, timeout=max(0.1, self.stop_timeout_s))
            self.abandoned = not finished.done()
            if self._persisting is not None:
                await asyncio.gather(self._persisting, return_exceptions=True)
            await asyncio.to_thread(self.spool.persist_cursor, self.output.name)

    def signal_stop(self) -> None:
        """Thread-safe: the sender ends at its next check; a back-off ends at once.
        `_stopping` is set before `_wake`: `_next_batch` relies on that order."""
        self._stopping.set()
        self._wake.set()
        self._retry_now.set()

    def request_age_s(self) -> float | None:
        """How long the request in flight has been running; None when there is none."""
        started = self._request_started_s
        return None if started is None else time.monotonic() - started

    def _sender(self, loop: asyncio.AbstractEventLoop, finished: asyncio.Future[None]) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    self._deliver()
                except Exception as exc:  # a bug: say so, count it, deliver again soon
                    log.exception("output %s: sender failed; restarting it", self.output.name)
                    self.stats.retries += 1
                    self.stats.last_error = redact(f"sender failed: {type(exc).__name__}: {exc}")
                    self._stopping.wait(SENDER_RESTART_S)
        finally:
            def finish() -> None:
                if not finished.done():
                    finished.set_result(None)

            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(finish)

    def _persist_soon(self) -> None:
        """From the sender: the cursor file is written by the loop's pool beside the next
        send, not before it (one write at a time; each takes the latest value), at most
        every CURSOR_PERSIST_S. When the sender runs out of batches it writes the cursor
        after CURSOR_PERSIST_S without new ones (`_next_batch`), and on stop."""
        loop = self._loop
        now_s = time.monotonic()
        if loop is None or now_s - self._persist_scheduled_s < CURSOR_PERSIST_S:
            return
        self._persist_scheduled_s = now_s

        def schedule() -> None:
            if self._persisting is None or self._persisting.done():
                self._persisting = asyncio.ensure_future(
                    asyncio.to_thread(self.spool.persist_cursor, self.output.name)
                )

        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(schedule)

    def _next_batch(self) -> _Batch | None:
        """The batch at the cursor; when there is none, waits for `notify` (or stop)."""
        while not self._stopping.is_set():
            batch = self._prepare(self.spool.cursor(self.output.name))
            if batch is not None:
                return batch
            self._wake.clear()
            # A stop that came since the check above had its wake-up erased by this clear;
            # it set _stopping first, so it shows here (else the wait below never ends).
            if self._stopping.is_set():
                break
            batch = self._prepare(self.spool.cursor(self.output.name))  # raced a notify?
            if batch is not None:
                return batch
            # Idle: make the cursor durable, unless more comes within CURSOR_PERSIST_S; it
            # is then written with a later batch's (`_persist_soon`): one write a second at
            # most, not one per batch, and a crash re-sends at most that second's points.
            if self._wake.wait(CURSOR_PERSIST_S):
                continue
            self.spool.persist_cursor(self.output.name)
            self._wake.wait()
        return None

    def _deliver(self) -> None:
        attempt = 0
        current = self._next_batch()
        while current is not None and not self._stopping.is_set():
            self._request_started_s = time.monotonic()
            try:
                self.output.send(current.body)
            except RejectedBatchError as exc:
                self._request_started_s = None
                self.last_attempt_failed = False
                self._reject(current, str(exc))
            except Exception as exc:  # retryable, or a bug in the HTTP stack: keep the batch
                self._request_started_s = None
                self.last_attempt_failed = True
                retry_after = exc.retry_after_s if isinstance(exc, RetryableWriteError) else None
                self.stats.retries += 1
                self.stats.last_error = redact(
                    str(exc) if isinstance(exc, RetryableWriteError)
                    else f"{type(exc).__name__}: {exc}"
                )
                delay = next_backoff_s(attempt, self.output.max_retry_delay_s, retry_after)
                attempt += 1
                log.warning(
                    "output %s: %s; %d points kept, retry in %.1fs",
                    self.output.name, self.stats.last_error, current.n_points, delay,
                )
                if self._retry_now.wait(delay):  # drain or stop: one attempt now, or end
                    self._retry_now.clear()
                continue
            else:
                self._request_started_s = None
                self.last_attempt_failed = False
                self.stats.points_written += current.n_points
                self.stats.batches_written += 1
                self.stats.last_success_ns = time.time_ns()
                if attempt:
                    log.info("output %s: delivering again", self.output.name)
                attempt = 0
            self.spool.advance(self.output.name, current.next_seq)
            if self.output.cursor_urgent:
                self.output.cursor_urgent = False
                self.spool.persist_cursor(self.output.name)
            else:
                self._persist_soon()
            current = self._prepare(current.next_seq) or self._next_batch()

    def _reject(self, batch: _Batch, reason: str) -> None:
        self.rejected_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        path = self.rejected_dir / f"{self.output.name}-{time.time_ns()}.lp"
        with open(path, "wb") as handle:
            handle.write(f"# {reason}\n".encode())
            handle.write(batch.body)
            handle.write(b"\n")
        self.stats.write_errors += 1
        self.stats.rejected_points += batch.n_points
        self.stats.last_error = reason
        log.error(
            "output %s: server rejected a batch of %d points (%s); kept in %s",
            self.output.name, batch.n_points, reason, path,
        )

    def caught_up(self) -> bool:
        return self.spool.cursor(self.output.name) >= self.spool.next_seq

    async def drain(self, timeout_s: float) -> bool:
        """On stop: deliver what is pending for up to timeout_s; the rest stays spooled.
        A sender backing off tries once more at once; as soon as an attempt made since the
        drain began has failed (the server is still away), waiting longer is pointless and
        the drain ends."""
        deadline = time.monotonic() + timeout_s
        failures = self.stats.retries
        self._wake.set()
        self._retry_now.set()
        while not self.caught_up() and time.monotonic() < deadline:
            if self.stats.retries > failures:
                break
            await asyncio.sleep(0.05)
        return self.caught_up()
