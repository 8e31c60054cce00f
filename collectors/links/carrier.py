"""The uplinks' carrier bits, read cheaply enough to poll every 100 ms.

The link events collector polls the uplinks (every events.CARRIER_POLL_S) because
linkwatch announces a carrier change up to a second late (events.py, `_carrier_thread`).
Asking netlink for three links twenty times a second (the poll's first period, 50 ms) cost
0.8 % of a core; `/sys/class/net/NAME/carrier` is the same `netif_carrier_ok()` the netlink
answer carries, current at once, and an open sysfs attribute re-reads with one `pread`. So
the poll reads these files and asks netlink only when one of them changed.

sysfs shows the network namespace it was mounted in, which need not be the one watched
(an agent entering a namespace without remounting /sys): the files are used only while
each one's `ifindex` beside it matches what netlink says, else the poll asks netlink.

The poll thread waits in `wait_change`: the C version (_carrier.c) sleeps and reads with
the GIL released and wakes Python only when a file changed. For three uplinks at 50 ms it
cost 0.13 % of a core against 0.23 % for the same loop in Python (`bench/links.py`,
events_idle_cpu_pct and events_idle_cpu_pct_python_wait, same run), 0.08 % of it the bare
20 Hz wake-up on this VM; at 100 ms, 0.086 % against 0.195 %.
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Mapping
from pathlib import Path

try:  # the wait in C (collectors/links/_carrier.c); the same wait in Python without it
    from collectors.links import _carrier  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - only without a compiler
    _carrier = None

SYS_CLASS_NET = Path("/sys/class/net")


class CarrierFiles:
    """Open `carrier` attributes of the uplinks; `read()` is their contents (or errno)."""

    def __init__(self, fds: dict[str, int]) -> None:
        self._fds = fds

    @classmethod
    def open(cls, index_of: Mapping[str, int | None],
             root: Path = SYS_CLASS_NET) -> CarrierFiles | None:
        """The files of these uplinks, or None when sysfs does not show their namespace."""
        fds: dict[str, int] = {}
        try:
            for name, index in index_of.items():
                if index is None:
                    raise FileNotFoundError(name)
                if int((root / name / "ifindex").read_text()) != index:
                    raise LookupError(name)  # another namespace's interface of that name
                fds[name] = os.open(root / name / "carrier", os.O_RDONLY)
        except (OSError, ValueError, LookupError):
            for fd in fds.values():
                os.close(fd)
            return None
        return cls(fds)

    def read(self) -> tuple[bytes, ...]:
        """One value per uplink: `b"1\\n"`, `b"0\\n"`, or the errno as text (EINVAL while the
        link is admin down, ENODEV once it is deleted): any change means "ask netlink"."""
        values = []
        for fd in self._fds.values():
            try:
                values.append(os.pread(fd, 8, 0))
            except OSError as exc:
                values.append(str(exc.errno).encode())
        return tuple(values)

    def wait_change(self, previous: tuple[bytes, ...] | None, stop_fd: int,
                    period_s: float) -> tuple[bytes, ...] | None:
        """Read every `period_s` until the values differ from `previous` (returned) or
        `stop_fd` is readable (None). `previous` None: the first reading at once."""
        if _carrier is not None:
            result: tuple[bytes, ...] | None = _carrier.wait_change(
                list(self._fds.values()), previous, stop_fd, int(period_s * 1e9))
            return result
        while True:
            if previous is not None:
                stopped, _, _ = select.select([stop_fd], [], [], period_s)
                if stopped:
                    return None
            now = self.read()
            if now != previous:
                return now

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}


class StopSignal:
    """A threading.Event that a thread blocked in C (`wait_change`) can also wait on: set()
    makes its eventfd readable."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def fileno(self) -> int:
        return self._fd

    def set(self) -> None:
        self._event.set()
        os.eventfd_write(self._fd, 1)

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout_s: float) -> bool:
        return self._event.wait(timeout_s)

    def close(self) -> None:
        os.close(self._fd)
