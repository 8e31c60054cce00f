"""TCP connect rounds (collectors/probes/tcpround.py) against real loopback listeners: what
each kind of outcome counts as, and that nothing is left open or armed after a round."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Iterator

import pytest

from collectors.probes import connecting
from collectors.probes.sockets import Binding
from collectors.probes.tcpround import tcp_round

BINDING = Binding("test")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def listener() -> Iterator[tuple[str, int]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    yield sock.getsockname()
    sock.close()


@pytest.fixture
def black_hole() -> Iterator[tuple[str, int]]:
    """A listener whose accept queue is full: the kernel drops every further SYN."""
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(full.getsockname())
        fillers.append(filler)
    time.sleep(0.05)
    yield full.getsockname()
    for sock in (*fillers, full):
        sock.close()


def left_armed() -> int:
    return len(connecting.waiter().waiting)


def test_every_connect_of_a_round_is_an_rtt_and_nothing_stays_open(
        listener: tuple[str, int]) -> None:
    address, port = listener

    async def run() -> tuple[list[float | None], str | None, int, int]:
        fds = open_fds()
        result = await tcp_round(BINDING, address, port, 8, 0.002, 1.0)
        return result.rtts_ms, result.error, left_armed(), open_fds() - fds

    rtts_ms, error, armed, new_fds = asyncio.run(run())
    assert error is None
    assert len(rtts_ms) == 8
    assert all(r is not None and 0.0 <= r < 50.0 for r in rtts_ms), rtts_ms
    # the waiter's own epoll is the one fd a first round may leave (it lives with the loop)
    assert (armed, new_fds) == (0, 1)


def test_a_closed_port_is_refused_not_timed_out() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))  # bound, not listening: the kernel answers RST
    address, port = holder.getsockname()
    started = time.monotonic()
    result = asyncio.run(tcp_round(BINDING, address, port, 3, 0.0, 5.0))
    holder.close()
    assert result.rtts_ms == [None, None, None]
    assert (result.error, result.send_errors) == ("connection refused", 0)
    assert time.monotonic() - started < 2.0  # settled by the RST, not by the timeout


def test_an_unanswered_syn_times_out_and_is_closed(black_hole: tuple[str, int]) -> None:
    address, port = black_hole

    async def run() -> tuple[list[float | None], str | None, int, float]:
        started = time.monotonic()
        result = await tcp_round(BINDING, address, port, 2, 0.05, 0.2)
        return result.rtts_ms, result.error, left_armed(), time.monotonic() - started

    rtts_ms, error, armed, took_s = asyncio.run(run())
    assert (rtts_ms, error, armed) == ([None, None], "timed out", 0)
    assert 0.25 <= took_s < 1.0  # the second probe's timeout, from its own start


def test_a_handshake_finished_in_time_counts_when_the_loop_sees_it_late(
        listener: tuple[str, int]) -> None:
    """The loop is blocked past the timeout right after the SYN left: the kernel finished
    the handshake in time, so the probe is an RTT, not a loss."""
    address, port = listener

    async def run() -> list[float | None]:
        round_task = asyncio.ensure_future(tcp_round(BINDING, address, port, 1, 0.0, 0.05))
        while not connecting.waiter().waiting:  # the connect is in flight
            await asyncio.sleep(0)
        time.sleep(0.2)  # the whole timeout and more, without yielding to the loop
        return (await round_task).rtts_ms

    [rtt_ms] = asyncio.run(run())
    assert rtt_ms is not None and rtt_ms < 50.0


def test_a_probe_that_cannot_be_bound_is_not_sent(listener: tuple[str, int]) -> None:
    address, port = listener
    nowhere = Binding("test", interface="no-such-if0")
    result = asyncio.run(tcp_round(nowhere, address, port, 3, 0.0, 1.0))
    assert (result.rtts_ms, result.send_errors) == ([], 3)
    assert result.error is not None and result.error.startswith("socket: ")


def test_a_cancelled_round_closes_what_is_in_flight(black_hole: tuple[str, int]) -> None:
    address, port = black_hole

    async def run() -> tuple[int, int]:
        connecting.waiter()
        fds = open_fds()
        round_task = asyncio.ensure_future(tcp_round(BINDING, address, port, 3, 0.0, 30.0))
        while len(connecting.waiter().waiting) < 3:
            await asyncio.sleep(0.01)
        round_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await round_task
        return left_armed(), open_fds() - fds

    assert asyncio.run(run()) == (0, 0)
