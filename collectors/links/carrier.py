"""The uplinks' carrier bits, read cheaply enough to poll every 50 ms.

The link events collector polls the uplinks because linkwatch announces a carrier change
up to a second late (collector.py, `_carrier_thread`). Asking netlink for three links
twenty times a second cost 0.8 % of a core; `/sys/class/net/NAME/carrier` is the same
`netif_carrier_ok()` the netlink answer carries, current at once, and an open sysfs
attribute re-reads with one `pread`. So the poll reads these files and asks netlink only
when one of them changed.

sysfs shows the network namespace it was mounted in, which need not be the one watched
(an agent entering a namespace without remounting /sys): the files are used only while
each one's `ifindex` beside it matches what netlink says, else the poll asks netlink.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

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

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}
