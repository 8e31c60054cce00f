"""systemd service notifications (sd_notify) from the standard library.

The protocol is one AF_UNIX datagram of `KEY=VALUE` lines to the socket named by
`$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket). Outside systemd the variable
is absent and every method is a no-op, so the daemon calls them unconditionally.

The watchdog keep-alive is sent from the asyncio loop itself (`watchdog_loop`) and only
while the scheduler reports progress: a thread would keep a stuck agent alive, and the
point of `WatchdogSec=` is that systemd kills and restarts a stuck agent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

ENV_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def _one_line(text: str) -> str:
    """STATUS= ends at the newline: a newline in the text would start a bogus assignment."""
    return " ".join(text.splitlines()).strip()


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, the clock systemd compares MONOTONIC_USEC with."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class SystemdNotifier:
    """Sends state changes to systemd; a no-op when not started by systemd with a socket.

    `environ` defaults to `os.environ`. With `unset_environment=True` the three variables
    are removed from `os.environ` after reading, so children (ExaBGP) neither inherit the
    socket nor believe they are watched.
    """

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        unset_environment: bool = False,
    ) -> None:
        env = os.environ if environ is None else environ
        self._address: str | None = self._parse_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = self._parse_watchdog(
            env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        )
        self._sock: socket.socket | None = None
        self._warned = False
        if unset_environment:
            for name in ENV_VARS:
                os.environ.pop(name, None)

    @staticmethod
    def _parse_address(value: str) -> str | None:
        if not value:
            return None
        if value.startswith("@"):
            return "\0" + value[1:]  # abstract namespace
        if value.startswith("/"):
            return value
        log.warning("NOTIFY_SOCKET=%r is neither a path nor @abstract; not notifying", value)
        return None

    @staticmethod
    def _parse_watchdog(usec: str, pid: str) -> int | None:
        if not usec:
            return None
        try:
            value = int(usec)
        except ValueError:
            log.warning("WATCHDOG_USEC=%r is not an integer; watchdog off", usec)
            return None
        if value <= 0:
            return None
        if pid:
            try:
                if int(pid) != os.getpid():
                    return None  # meant for another process (e.g. our parent)
            except ValueError:
                return None
        return value

    @property
    def enabled(self) -> bool:
        """True when systemd gave us a notification socket."""
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to send WATCHDOG=1: half of WATCHDOG_USEC; None when not watched."""
        if self._address is None or self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def notify(self, *assignments: str) -> bool:
        """Send one datagram of `KEY=VALUE` lines; False when not sent (never raises)."""
        if self._address is None:
            return False
        payload = "\n".join(assignments).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(payload, self._address)
        except OSError as exc:
            # systemd going away must not take the agent down; say so once, not per beat.
            if not self._warned:
                log.warning("sd_notify to %s failed: %s", self._display_address(), exc)
                self._warned = True
            return False
        self._warned = False
        return True

    def _display_address(self) -> str:
        address = self._address or ""
        return "@" + address[1:] if address.startswith("\0") else address

    def ready(self, status: str) -> bool:
        """Collectors and outputs are up (also sent after a reload finished)."""
        return self.notify("READY=1", "STATUS=" + _one_line(status))

    def status(self, text: str) -> bool:
        """A one-line summary shown by `systemctl status`."""
        return self.notify("STATUS=" + _one_line(text))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def reloading(self, status: str | None = None) -> bool:
        """Reload started; READY=1 (via `ready`) ends it. MONOTONIC_USEC for notify-reload."""
        assignments = ["RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}"]
        if status is not None:
            assignments.append("STATUS=" + _one_line(status))
        return self.notify(*assignments)

    def stopping(self, status: str | None = None) -> bool:
        assignments = ["STOPPING=1"]
        if status is not None:
            assignments.append("STATUS=" + _one_line(status))
        return self.notify(*assignments)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class Heartbeat:
    """Progress marker for `watchdog_loop`: the scheduler calls `beat()` whenever it
    completes a unit of work; the watchdog asks `made_progress()` once per period."""

    def __init__(self) -> None:
        self._count = 0
        self._seen = 0

    def beat(self) -> None:
        self._count += 1

    def made_progress(self) -> bool:
        """True when `beat()` was called since the previous call of this method."""
        progressed = self._count != self._seen
        self._seen = self._count
        return progressed


async def watchdog_loop(notifier: SystemdNotifier, alive: Callable[[], bool]) -> None:
    """Send WATCHDOG=1 every half WATCHDOG_USEC while `alive()` reports progress.

    Runs as a task on the daemon's loop until cancelled; returns at once when systemd does
    not watch us. The first keep-alive goes out one period after the start. `alive` must
    see progress at least once per period: beat from a tick that runs every second or so
    (e.g. the flush loop), not only from collectors that may run every five minutes.
    When `alive()` is false (or raises) the keep-alive is withheld and systemd kills the
    agent after WatchdogSec; it resumes if progress resumes in time.
    """
    interval_s = notifier.watchdog_interval_s
    if interval_s is None:
        return
    stalled = False
    while True:
        await asyncio.sleep(interval_s)
        try:
            ok = alive()
        except Exception:
            log.exception("watchdog liveness check failed; withholding keep-alive")
            ok = False
        if ok:
            if stalled:
                log.warning("scheduler progressing again; watchdog keep-alive resumed")
            stalled = False
            notifier.watchdog()
        elif not stalled:
            stalled = True
            log.error(
                "scheduler made no progress in %.1fs; withholding watchdog keep-alive",
                interval_s,
            )
