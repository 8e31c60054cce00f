"""TCP connect rounds: each probe is a socket, a timer and an epoll entry, with no task or
coroutine of its own.

A TCP probe does nothing between its SYN and the end of the handshake, and the RTT it
reports is the kernel's (TCP_INFO, connecting.connect_time_ms), so nothing needs to wait
for it: the connect's completion and its timeout call back into the round, which the
round's one coroutine awaits at the end. As a task per probe (DNS and HTTP keep
methods.paced_round: they have a request to send and an answer to read), each TCP probe
also paid for a task, four coroutine frames, a future and an asyncio.timeout: in the lab,
rounds as a production-like config runs them (30 rounds of 10 probes, 1 s apart), 339 µs
of CPU per probe that way against 285 µs this way; on loopback (bench/probe_cpu.py, both
ends counted), 233 against 186 µs.

Outcomes are those of the other probers: an RTT, or None (lost) with a reason ("timed
out", "connection refused", the system's text); a probe whose socket could not be made
or bound is not sent (`send_errors`), never a loss.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import socket
import time
from dataclasses import dataclass

from collectors.probes import connecting
from collectors.probes.pacing import round_start
from collectors.probes.rounds import RoundResult
from collectors.probes.sockets import Binding, family_of, open_bound


@dataclass(slots=True, eq=False)
class _Attempt:
    index: int
    sock: socket.socket
    started_s: float  # perf_counter() before connect()
    expiry: asyncio.TimerHandle | None = None


class _TcpRound:
    """One round's bookkeeping; the callbacks run on the loop, one at a time."""

    def __init__(self, binding: Binding, address: str, port: int, count: int,
                 timeout_s: float) -> None:
        self.binding = binding
        self.family = family_of(address)
        self.destination = (address, port)
        self.timeout_s = timeout_s
        self.rtts_ms: list[float | None] = [None] * count
        self.not_sent: dict[int, str] = {}  # index -> reason
        self.failures: list[str] = []  # in the order they were seen
        self.pending: dict[int, _Attempt] = {}
        self.waiter = connecting.waiter()
        self.loop = asyncio.get_running_loop()
        self.all_started = False
        self.finished: asyncio.Future[None] = self.loop.create_future()

    def start(self, index: int) -> None:
        try:
            sock = open_bound(self.binding, self.family, socket.SOCK_STREAM)
        except OSError as exc:
            self.not_sent[index] = f"socket: {exc.strerror or exc}"
            return
        attempt = _Attempt(index, sock, time.perf_counter())
        try:
            sock.connect(self.destination)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:  # refused or unreachable before anything left
            self._failed(attempt, exc.errno, exc.strerror or str(exc))
            return
        else:  # finished at once
            self._connected(attempt)
            return
        self.pending[index] = attempt
        attempt.expiry = self.loop.call_later(self.timeout_s, self._expired, attempt)
        self.waiter.watch(sock, functools.partial(self._writable, attempt))

    def _writable(self, attempt: _Attempt) -> None:
        del self.pending[attempt.index]
        if attempt.expiry is not None:
            attempt.expiry.cancel()
        error = attempt.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            self._failed(attempt, error, os.strerror(error))
        else:
            self._connected(attempt)

    def _expired(self, attempt: _Attempt) -> None:
        """Timeout: a handshake the kernel completed in time still counts (the loop may
        only have been too late to see it)."""
        del self.pending[attempt.index]
        self.waiter.forget(attempt.sock)
        if connecting.is_connected(attempt.sock):
            self._connected(attempt)
        else:
            self._failed(attempt, errno.ETIMEDOUT, "timed out")

    def _connected(self, attempt: _Attempt) -> None:
        rtt_ms = connecting.handshake_ms(attempt.sock, attempt.started_s)
        connecting.reset_close(attempt.sock)
        if rtt_ms > self.timeout_s * 1000.0:
            self.failures.append("timed out")
        else:
            self.rtts_ms[attempt.index] = rtt_ms
        self._settled()

    def _failed(self, attempt: _Attempt, error: int | None, reason: str) -> None:
        connecting.reset_close(attempt.sock)
        self.failures.append("connection refused" if error == errno.ECONNREFUSED else reason)
        self._settled()

    def _settled(self) -> None:
        if self.all_started and not self.pending and not self.finished.done():
            self.finished.set_result(None)

    def abandon(self) -> None:
        """Cancelled: close what is still in flight, count nothing."""
        for attempt in self.pending.values():
            if attempt.expiry is not None:
                attempt.expiry.cancel()
            self.waiter.forget(attempt.sock)
            connecting.reset_close(attempt.sock)
        self.pending.clear()

    def result(self) -> RoundResult:
        errors = list(self.not_sent.values()) + self.failures
        return RoundResult(
            rtts_ms=[r for i, r in enumerate(self.rtts_ms) if i not in self.not_sent],
            send_errors=len(self.not_sent),
            error=errors[-1] if errors else None,
        )


async def tcp_round(binding: Binding, address: str, port: int, count: int,
                    interval_s: float, timeout_s: float) -> RoundResult:
    """Start a connect every `interval_s` from the round's grid start (pacing.py; they may
    overlap), each bounded by `timeout_s` from its start."""
    tcp = _TcpRound(binding, address, port, count, timeout_s)
    start = round_start()
    try:
        for index in range(count):
            delay = start + index * interval_s - tcp.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tcp.start(index)
        tcp.all_started = True
        if tcp.pending:
            await tcp.finished
    finally:
        tcp.abandon()
    return tcp.result()
