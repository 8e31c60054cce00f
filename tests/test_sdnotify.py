"""sd_notify against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sdnotify import Heartbeat, SystemdNotifier, monotonic_usec, watchdog_loop


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(2.0)
    yield sock, path
    sock.close()


def parse(datagram: bytes) -> dict[str, str]:
    lines = datagram.decode().split("\n")
    return dict(line.split("=", 1) for line in lines)


def drain(sock: socket.socket) -> list[dict[str, str]]:
    sock.setblocking(False)
    out = []
    try:
        while True:
            out.append(parse(sock.recv(4096)))
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)
    return out


def test_absent_environment_is_a_no_op() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None
    assert notifier.ready("up") is False
    assert notifier.watchdog() is False
    assert notifier.stopping() is False


def test_ready_status_stopping(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("3 collectors, 1 output")
    assert parse(sock.recv(4096)) == {"READY": "1", "STATUS": "3 collectors, 1 output"}
    assert notifier.status("queue 12 points\nspool 0 B")
    assert parse(sock.recv(4096)) == {"STATUS": "queue 12 points spool 0 B"}
    assert notifier.stopping("stopping: flushing")
    assert parse(sock.recv(4096)) == {"STOPPING": "1", "STATUS": "stopping: flushing"}
    notifier.close()


def test_reloading_carries_monotonic_usec(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.reloading()
    after = monotonic_usec()
    message = parse(sock.recv(4096))
    assert message["RELOADING"] == "1"
    assert before <= int(message["MONOTONIC_USEC"]) <= after
    notifier.ready("reloaded")
    assert parse(sock.recv(4096))["READY"] == "1"


def test_abstract_socket() -> None:
    name = f"egress-agent-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    try:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready("ok")
        assert parse(sock.recv(4096))["READY"] == "1"
    finally:
        sock.close()


def test_watchdog_interval_is_half_and_honours_pid(
    notify_socket: tuple[socket.socket, str],
) -> None:
    _, path = notify_socket
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000"}
    assert SystemdNotifier(env).watchdog_interval_s == 15.0
    mine = SystemdNotifier({**env, "WATCHDOG_PID": str(os.getpid())})
    assert mine.watchdog_interval_s == 15.0
    other = SystemdNotifier({**env, "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other.watchdog_interval_s is None
    assert SystemdNotifier({**env, "WATCHDOG_USEC": "junk"}).watchdog_interval_s is None
    assert SystemdNotifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval_s is None


def test_send_failure_does_not_raise(tmp_path: Path) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.enabled
    assert notifier.ready("x") is False
    assert notifier.watchdog() is False


def test_unset_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "n.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = SystemdNotifier(unset_environment=True)
    assert notifier.watchdog_interval_s == 0.5
    assert "NOTIFY_SOCKET" not in os.environ
    assert "WATCHDOG_USEC" not in os.environ
    assert "WATCHDOG_PID" not in os.environ


def test_heartbeat() -> None:
    beat = Heartbeat()
    assert not beat.made_progress()
    beat.beat()
    beat.beat()
    assert beat.made_progress()
    assert not beat.made_progress()


async def _collect_watchdogs(sock: socket.socket, until: float, stamps: list[float]) -> None:
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    while loop.time() < until:
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 4096), until - loop.time())
        except TimeoutError:
            break
        assert parse(data) == {"WATCHDOG": "1"}
        stamps.append(loop.time())


def test_watchdog_cadence_follows_scheduler_progress(
    notify_socket: tuple[socket.socket, str],
) -> None:
    """Keep-alives every WATCHDOG_USEC/2 while the scheduler beats; none while it stalls;
    again once it resumes."""
    sock, path = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    assert notifier.watchdog_interval_s == pytest.approx(0.1)
    heartbeat = Heartbeat()
    progressing = True

    async def scheduler() -> None:
        while True:
            if progressing:
                heartbeat.beat()
            await asyncio.sleep(0.01)

    async def main() -> tuple[list[float], list[float], list[float]]:
        nonlocal progressing
        loop = asyncio.get_running_loop()
        tasks = [
            asyncio.create_task(scheduler()),
            asyncio.create_task(watchdog_loop(notifier, heartbeat.made_progress)),
        ]
        healthy: list[float] = []
        stalled: list[float] = []
        resumed: list[float] = []
        await _collect_watchdogs(sock, loop.time() + 1.0, healthy)
        progressing = False
        await asyncio.sleep(0.15)  # at most one more keep-alive covering the last beats
        drain(sock)
        await _collect_watchdogs(sock, loop.time() + 0.6, stalled)
        progressing = True
        await _collect_watchdogs(sock, loop.time() + 0.6, resumed)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return healthy, stalled, resumed

    healthy, stalled, resumed = asyncio.run(main())
    # 1 s at a 0.1 s period: about 10 (loose bounds: loaded CI machines).
    assert 6 <= len(healthy) <= 11, healthy
    gaps = [b - a for a, b in itertools.pairwise(healthy)]
    assert all(0.07 <= gap <= 0.3 for gap in gaps), gaps
    assert stalled == []
    assert len(resumed) >= 3


def test_watchdog_loop_without_watchdog_returns() -> None:
    asyncio.run(asyncio.wait_for(watchdog_loop(SystemdNotifier({}), lambda: True), 1.0))


def test_blocked_loop_sends_no_keepalive(notify_socket: tuple[socket.socket, str]) -> None:
    """A loop stuck in blocking code cannot send keep-alives (the keep-alive is not a thread)."""
    sock, path = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})

    async def main() -> None:
        task = asyncio.create_task(watchdog_loop(notifier, lambda: True))
        await asyncio.sleep(0.2)
        drain(sock)
        time.sleep(0.5)  # the stuck scheduler: nothing on this loop runs
        assert drain(sock) == []
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def test_failing_liveness_check_withholds_keepalive(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})

    def broken() -> bool:
        raise RuntimeError("scheduler state unreadable")

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(watchdog_loop(notifier, broken))
        stamps: list[float] = []
        await _collect_watchdogs(sock, loop.time() + 0.4, stamps)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return stamps

    assert asyncio.run(main()) == []
