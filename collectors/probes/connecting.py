"""TCP connects: the epoll that sees them finish, and what a finished handshake tells.

A TCP probe (and the connect of an HTTP probe) only needs to learn that its handshake
finished: the RTT it reports is the kernel's (TCP_INFO, `connect_time_ms`), not the moment
the event loop noticed. asyncio's `sock_connect` pays for generality on every probe: the
address parsed again, a selector key registered, modified and removed (two epoll_ctl
calls), a handle and callbacks. Here each connect is one `EPOLLOUT | EPOLLONESHOT`
registration in an epoll that the loop watches as a single reader; a fired one-shot entry
needs no removal (closing the socket drops it), and only a connect that is abandoned
(timeout, cancellation) is unregistered. A finished connect calls back (`watch`, used by
the TCP rounds of tcpround.py) or wakes a coroutine (`connect`, used by HTTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import struct
import time
import weakref
from collections.abc import Callable

_LINGER_RESET = struct.pack("ii", 1, 0)
# struct tcp_info (linux/tcp.h): tcpi_rtt, the smoothed RTT in microseconds, is the u32 at
# byte 68; after a handshake it is the kernel's one sample of SYN -> SYN-ACK.
_TCPI_RTT_OFFSET = 68
# tcpi_total_retrans, the u32 at byte 100, counts retransmitted segments, SYNs included.
_TCPI_TOTAL_RETRANS_OFFSET = 100
_TCP_INFO_BYTES = 104

_WAITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ConnectWaiter] = (
    weakref.WeakKeyDictionary()
)


class ConnectWaiter:
    """One per event loop (`waiter()`); holds no reference to the loop (the loop holds it)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.epoll = select.epoll()
        self.waiting: dict[int, Callable[[], None]] = {}
        loop.add_reader(self.epoll.fileno(), self._on_ready)

    def _on_ready(self) -> None:
        for fd, _events in self.epoll.poll(0):
            finished = self.waiting.pop(fd, None)
            if finished is not None:
                finished()

    def watch(self, sock: socket.socket, finished: Callable[[], None]) -> None:
        """Call `finished` once, from the loop, when the connect of `sock` has finished
        (connected or failed: read SO_ERROR)."""
        fd = sock.fileno()
        self.epoll.register(fd, select.EPOLLOUT | select.EPOLLONESHOT)
        self.waiting[fd] = finished

    def forget(self, sock: socket.socket) -> None:
        """Disarm the watch of a connect given up on before it finished; no-op after."""
        fd = sock.fileno()
        if self.waiting.pop(fd, None) is not None:
            with contextlib.suppress(OSError):
                self.epoll.unregister(fd)

    async def wait_writable(self, sock: socket.socket) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def finished() -> None:
            if not future.done():
                future.set_result(None)

        self.watch(sock, finished)
        try:
            await future
        finally:
            self.forget(sock)  # abandoned while still armed


def waiter() -> ConnectWaiter:
    loop = asyncio.get_running_loop()
    found = _WAITERS.get(loop)
    if found is None:
        found = _WAITERS[loop] = ConnectWaiter(loop)
    return found


async def connect(sock: socket.socket, address: tuple[str, int]) -> None:
    """Connect the non-blocking `sock`; raises OSError (ConnectionRefusedError, ...) as a
    blocking connect would. Cancel it (e.g. asyncio.timeout) to give up."""
    try:
        sock.connect(address)
        return
    except (BlockingIOError, InterruptedError):
        pass
    await waiter().wait_writable(sock)
    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error:
        raise OSError(error, os.strerror(error))


def is_connected(sock: socket.socket) -> bool:
    """True when a non-blocking connect has completed (whether or not we saw it)."""
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
        return False
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


def reset_close(sock: socket.socket) -> None:
    """Close with RST: a monitor must not leave TIME_WAIT sockets behind on every probe."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    sock.close()


def handshake_info(sock: socket.socket) -> tuple[float | None, bool]:
    """The kernel's RTT sample of the handshake (None when it has none) and whether a
    segment, the SYN included, had to be retransmitted."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)
    except OSError:
        return None, False
    if len(info) < _TCP_INFO_BYTES:
        return None, False
    (rtt_us,) = struct.unpack_from("=I", info, _TCPI_RTT_OFFSET)
    (retransmitted,) = struct.unpack_from("=I", info, _TCPI_TOTAL_RETRANS_OFFSET)
    return (rtt_us / 1000.0 if rtt_us else None), retransmitted > 0


def handshake_ms(sock: socket.socket, started_s: float) -> float:
    """What a TCP probe reports for the connect of `sock`, started at `started_s`
    (`time.perf_counter()` before connect())."""
    elapsed_ms = (time.perf_counter() - started_s) * 1000.0
    return connect_time_ms(elapsed_ms, *handshake_info(sock))


def connect_time_ms(elapsed_ms: float, kernel_rtt_ms: float | None,
                    retransmitted: bool = False) -> float:
    """What a TCP probe reports. The clock read around connect() on the event loop runs
    late whenever another thread holds the GIL (milliseconds under load), so the kernel's
    own sample is used, unless a SYN was lost: then the connect time users see counts."""
    if kernel_rtt_ms is None or retransmitted:
        return elapsed_ms
    return min(kernel_rtt_ms, elapsed_ms)
