"""Non-blocking connects awaited through the probes' own epoll (collectors/probes/connecting.py),
against real loopback listeners."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import pytest

from collectors.probes import connecting


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    yield sock
    sock.close()


def nonblocking() -> socket.socket:
    sock = socket.socket()
    sock.setblocking(False)
    return sock


def test_many_connects_complete_and_leave_nothing_armed(listener: socket.socket) -> None:
    async def run() -> int:
        socks = [nonblocking() for _ in range(300)]
        await asyncio.gather(*(connecting.connect(s, listener.getsockname()) for s in socks))
        connected = sum(1 for s in socks if s.getpeername() == listener.getsockname())
        for s in socks:
            s.close()
        assert connecting.waiter().waiting == {}
        return connected

    assert asyncio.run(run()) == 300


def test_refused_is_connection_refused() -> None:
    port_holder = socket.socket()
    port_holder.bind(("127.0.0.1", 0))  # bound, not listening: the kernel answers RST
    address = port_holder.getsockname()

    async def run() -> None:
        sock = nonblocking()
        try:
            with pytest.raises(ConnectionRefusedError):
                await connecting.connect(sock, address)
        finally:
            sock.close()

    asyncio.run(run())
    port_holder.close()


def test_an_abandoned_connect_is_disarmed_and_its_fd_reusable() -> None:
    """A SYN nobody answers (a listener whose accept queue is full drops it): the timeout
    cancels the wait, the entry leaves the epoll, and a new socket that gets the same fd
    number connects normally."""
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    fillers = []
    for _ in range(4):  # fill the accept queue (never accepted)
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(full.getsockname())
        fillers.append(filler)
    good = socket.socket()
    good.bind(("127.0.0.1", 0))
    good.listen(8)

    async def run() -> None:
        sock = nonblocking()
        fd = sock.fileno()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await connecting.connect(sock, full.getsockname())
        assert connecting.waiter().waiting == {}
        sock.close()
        again = nonblocking()
        assert again.fileno() == fd
        async with asyncio.timeout(5):
            await connecting.connect(again, good.getsockname())
        assert again.getpeername() == good.getsockname()
        again.close()

    asyncio.run(run())
    for s in (*fillers, full, good):
        s.close()


def test_one_waiter_per_event_loop() -> None:
    async def waiter_id() -> int:
        return id(connecting.waiter())

    async def same_loop_twice() -> tuple[int, int]:
        return await waiter_id(), await waiter_id()

    first, second = asyncio.run(same_loop_twice())
    assert first == second
