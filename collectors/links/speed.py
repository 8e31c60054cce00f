"""Link speed through pyroute2's ethtool ioctl, for `speed_mbps` and utilization."""

from __future__ import annotations

import socket

from pyroute2 import netns as pyroute2_netns
from pyroute2.ethtool.ioctl import EthtoolError, IoctlEthtool


class SpeedReader:
    """Link speed in Mbit/s through pyroute2's ethtool ioctl (`ETHTOOL_GSET`, what
    /sys/class/net/X/speed reads), on a socket of the collector's namespace.

    An ioctl on a socket of that namespace is right in any namespace, where /sys shows the
    namespace sysfs was mounted in; and it is one syscall, not three. None when the driver
    does not report a speed (ifb, tun) or the link is down.
    """

    def __init__(self, netns: str | None = None) -> None:
        self._ethtool = IoctlEthtool()
        if netns is not None:
            self._ethtool.sock.close()
            self._ethtool.sock = pyroute2_netns.create_socket(
                netns, socket.AF_INET, socket.SOCK_DGRAM, flags=0)

    def speed_mbps(self, name: str) -> int | None:
        try:
            self._ethtool.change_ifname(name)
            cmd = self._ethtool.get_cmd()
        except (OSError, ValueError, EthtoolError):  # no such device, not supported, bad name
            return None
        speed = int(cmd.speed) | (int(cmd.speed_hi) << 16)
        if speed in (0, 0xFFFF, 0xFFFFFFFF):
            return None
        return speed

    def close(self) -> None:
        self._ethtool.close()
