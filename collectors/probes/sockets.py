"""Sockets bound to one carrier: the only way probes are sent.

Why our own sockets: scapy routes with its own copy of the main table and ignores policy
routing, so a probe "through carrier X" must leave on a socket bound to X's uplink
(SO_BINDTODEVICE) and X's source address; with the per-carrier rules
(`from SOURCE lookup T`, `oif UPLINK lookup T`) the kernel then picks X's table.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import struct
from dataclasses import dataclass

from agent.config import CarrierConfig

# Linux constants that Python's socket module does not export.
SO_TIMESTAMPNS = 35
SO_TIMESTAMPING = 37
SOF_TIMESTAMPING_TX_SOFTWARE = 1 << 1  # when the driver takes the packet
SOF_TIMESTAMPING_SOFTWARE = 1 << 4  # report software stamps
SOF_TIMESTAMPING_OPT_TSONLY = 1 << 11  # loop the stamp without the packet
SOF_TIMESTAMPING_TX_SCHED = 1 << 8  # when the packet enters the device's queue
MSG_ERRQUEUE = 0x2000
SOL_RAW = 255
ICMP_FILTER = 1
ICMP6_FILTER = 1
IP_RECVERR = 11
IPV6_RECVERR = 25
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32

_TIMESPEC = struct.Struct("@qq")
# Room for the control messages of one receive: a timestamp, and on the error queue the
# three timespecs of SCM_TIMESTAMPING plus the extended error with its address.
CMSG_BYTES = 256


@dataclass(frozen=True, slots=True)
class Binding:
    """Where a carrier's probes leave: interface and source addresses (None = unbound)."""

    carrier: str
    interface: str | None = None
    source4: str | None = None
    source6: str | None = None

    @classmethod
    def from_carrier(cls, carrier: CarrierConfig) -> Binding:
        return cls(
            carrier=carrier.name,
            interface=carrier.interface,
            source4=str(carrier.source) if carrier.source else None,
            source6=str(carrier.source6) if carrier.source6 else None,
        )

    def source(self, family: int) -> str | None:
        return self.source6 if family == socket.AF_INET6 else self.source4


DEFAULT_BINDING = Binding("default")


@functools.lru_cache(maxsize=4096)
def family_of(address: str) -> int:
    """Cached: asked for every probe, and parsing an address is ~15 µs of Python."""
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def bind_socket(sock: socket.socket, binding: Binding, family: int, port: int = 0) -> None:
    """Pin `sock` to the carrier's uplink and source address (raises OSError)."""
    if binding.interface:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, binding.interface.encode())
    source = binding.source(family)
    if source:
        sock.bind((source, port, 0, 0) if family == socket.AF_INET6 else (source, port))


def open_bound(binding: Binding, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A non-blocking socket of `kind` bound to the carrier; closed again on failure."""
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        bind_socket(sock, binding, family)
    except BaseException:
        sock.close()
        raise
    return sock


def enable_rx_timestamps(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


def set_buffers(sock: socket.socket, size_bytes: int) -> None:
    """Large buffers so a burst of replies is not dropped while the loop is busy."""
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size_bytes)
        except OSError:  # not privileged: the plain option is capped by rmem_max
            sock.setsockopt(socket.SOL_SOCKET, plain, size_bytes)


def enable_tx_timestamps(sock: socket.socket, with_packet: bool = False) -> None:
    """Ask the kernel to stamp each packet this socket sends as it goes to the device (and
    as it enters the device's queue, for drivers that do not stamp) and to loop the stamps
    back on the error queue. A clock read before send() is late by however long the
    process was preempted or waited for the GIL before the system call (2.7 ms seen on a
    loaded machine); the kernel's stamp is when the packet really left. `with_packet`
    loops the packet too, so a socket shared by many probes can tell whose stamp it is."""
    flags = (SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_TX_SCHED
             | SOF_TIMESTAMPING_SOFTWARE)
    if not with_packet:
        flags |= SOF_TIMESTAMPING_OPT_TSONLY
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, flags)


_ERRQUEUE_NOWAIT = int(MSG_ERRQUEUE | socket.MSG_DONTWAIT)  # an int: enum flags cost µs per `|`


def read_tx_timestamps(sock: socket.socket) -> list[tuple[bytes, int]]:
    """Every (looped packet or b"", send time ns) waiting on the error queue, oldest
    first; a packet stamped twice (queue, then driver) appears twice, the later stamp is
    the truer one. Never blocks."""
    stamps: list[tuple[bytes, int]] = []
    while True:
        try:
            data, ancdata, _flags, _address = sock.recvmsg(2048, CMSG_BYTES, _ERRQUEUE_NOWAIT)
        except OSError:  # empty (EAGAIN), or the socket is gone: nothing more to read
            return stamps
        for level, kind, blob in ancdata:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPING and len(blob) >= 16:
                seconds, nanoseconds = _TIMESPEC.unpack_from(blob)
                if seconds or nanoseconds:
                    stamps.append((data, int(seconds) * 1_000_000_000 + int(nanoseconds)))


def rx_timestamp_ns(ancdata: list[tuple[int, int, bytes]]) -> int | None:
    """The kernel's receive time (CLOCK_REALTIME, ns) from SCM_TIMESTAMPNS, if present."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return int(seconds) * 1_000_000_000 + int(nanoseconds)
    return None


def icmp_filter_only(sock: socket.socket, family: int, allowed_types: set[int]) -> None:
    """Let only the given ICMP types reach this raw socket (less work at high rates)."""
    if family == socket.AF_INET:
        mask = 0xFFFFFFFF
        for icmp_type in allowed_types:
            if icmp_type < 32:
                mask &= ~(1 << icmp_type)
        sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("I", mask))
    else:
        words = [0xFFFFFFFF] * 8
        for icmp_type in allowed_types:
            words[icmp_type >> 5] &= ~(1 << (icmp_type & 31))
        sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("8I", *words))
