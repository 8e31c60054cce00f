"""rtnetlink through pyroute2: link state, counters, routes, neighbours, namespaces, speed.

Every request is a pyroute2 message class (`ifinfmsg`, `rtmsg`, `ndmsg`, `ifstatsmsg`) sent
on pyroute2's `IPRSocket`, and every answer and notification is parsed by that socket's
marshal (`MarshalRtnl`) into the same classes; sockets and threads of another network
namespace come from `pyroute2.netns`, the link speed from `pyroute2.ethtool`.

Two exceptions, measured: the two dumps of every interface, the counters at every poll
and the link state at start-up and after lost notifications. pyroute2's own ways to read
them, 5,000 ifb interfaces, against parsing /proc/net/dev in the same run (`bench/links.py`;
2 shared cores under load; goal <= 1.0 x /proc/net/dev and <= 3 % of a core at a 1 s
interval). "before": the code of issue 14 part 1 (link dump through `ifinfmsg`), run just
before "after" (this code; `dump_links` through `read_link`); two such pairs:

| path | before 1: ms (x /proc/net/dev) | after 1 | before 2 | after 2 |
| --- | --- | --- | --- | --- |
| /proc/net/dev, parsed | 39.6 (1) | 44.4 (1) | 39.5 (1) | 37.9 (1) |
| `IPRoute().stats('dump', filter_mask=1)` | 514 (13.0) | 301 (6.8) | 389 (9.9) | 254 (6.7) |
| `IPRSocket` + pyroute2's `ifstatsmsg` | 363 (9.2) | 278 (6.3) | 235 (5.9) | 219 (5.8) |
| `IPRSocket` + `IFLA_STATS_LINK_64`-only class | 380 (9.6) | 244 (5.5) | 227 (5.8) | 242 (6.4) |
| `dump_stats64` (`stats_dump_ms`) | 14.0 (0.35) | 13.7 (0.31) | 12.9 (0.33) | 12.0 (0.32) |
| `IPRoute().get_links()` (every attribute) | 3,730 (94) | 3,254 (73) | 2,629 (67) | 2,491 (66) |
| `dump_links` (`link_dump_ms`) | 2,251 (57) | 81 (1.8) | 2,119 (54) | 99 (2.6) |
| the agent's start-up, collector made (`setup_ms`) | 2,704 | 106 | 2,148 | 109 |
| collecting every 1 s, % of a core (`steady_cpu_pct`) | 3.45 | 2.88 | 3.72 | 2.81 |

Building one message object per interface is the cost, whatever its class maps: every
pyroute2 counter path misses the goal 5-13 fold (and at a 1 s interval would take 22-51 %
of a core), and `ifinfmsg` decodes each of the ~50 attributes of a link (~0.45 ms a link)
where the collector reads four. So both dumps go through `_lean_dump`, the one place that
does this: a reader registered in the marshal for that request's sequence number only
(`seq_map`, pyroute2's hook for custom parsers) reads each answer with `struct` straight
into a dict and returns no object (`read_stats64`: `IFLA_STATS_LINK_64`; `read_link`: name,
flags, MTU, oper state, carrier, stopping once the four attributes are found); DONE and
errors come back as pyroute2 messages through the one answer loop every request uses
(`_answers`). That loop is the marshal's, in `_Marshal` below with less per-message work
(13.4 -> 8.6 ms for the counter dump, min of 40, same process; medians under load above).
Both readers are tested against pyroute2's full decoding of the same kernel answers
(tests/test_links_netlink.py). Everything else (a link looked up by index or name,
notifications, routes, neighbours) is a handful of messages per poll, or one per change,
and uses the classes. Of a poll's ~30 ms of CPU at 5,000 interfaces, ~12 are the counter
dump, most of the rest building the points, and the garbage collector's full passes average
6-7 ms (they walk the ~22,000 objects importing pyroute2 leaves; `gc.freeze()` after
start-up took that to 3.6-5 ms in 20 s runs: not done here, the core owns the process).

The kernel headers behind the few constants and offsets: linux/netlink.h,
linux/rtnetlink.h, linux/if_link.h (native byte order).

Where things are: the records (LinkState, RouteInfo) and the two lean readers in
records.py, the link speed in speed.py. This file (~580 lines, a third of it this
docstring) stays one: RtNetlink is the socket and its one answer loop, and every request
goes through that loop.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import os
import socket
import struct
import sys
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any, TypeVar

from pyroute2 import netns as pyroute2_netns
from pyroute2.netlink import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    mtypes,
)
from pyroute2.netlink.exceptions import NetlinkError as Pyroute2NetlinkError
from pyroute2.netlink.rtnl import (
    RTM_DELLINK,
    RTM_DELNEIGH,
    RTM_DELROUTE,
    RTM_GETLINK,
    RTM_GETNEIGH,
    RTM_GETROUTE,
    RTM_GETSTATS,
    RTM_NEWLINK,
    RTM_NEWNEIGH,
    RTM_NEWROUTE,
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV4_ROUTE,
    RTMGRP_IPV4_RULE,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_IPV6_ROUTE,
    RTMGRP_IPV6_RULE,
    RTMGRP_LINK,
    RTMGRP_NEIGH,
)
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ifstatsmsg import ifstatsmsg
from pyroute2.netlink.rtnl.iprsocket import IPRSocket
from pyroute2.netlink.rtnl.marshal import MarshalRtnl
from pyroute2.netlink.rtnl.ndmsg import NTF_USE, ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from agent.sockfilter import BPF_JEQ_K, BPF_LD_B_ABS, BPF_RET_K, attach_filter
from collectors.links.records import (
    IFLA_STATS_LINK_64,
    STATS_NAMES,
    LinkState,
    Notices,
    RouteInfo,
    link_state,
    read_link,
    read_stats64,
    route_info,
)

__all__ = [  # what the rest of the package takes from here (pyroute2's names included)
    "NUD_INCOMPLETE", "NUD_NAMES", "NUD_USABLE", "RTMGRP_IPV4_IFADDR", "RTMGRP_IPV4_ROUTE",
    "RTMGRP_IPV4_RULE", "RTMGRP_IPV6_IFADDR", "RTMGRP_IPV6_ROUTE", "RTMGRP_IPV6_RULE",
    "RTMGRP_LINK", "RTMGRP_NEIGH", "RTM_DELLINK", "RTM_DELNEIGH", "RTM_DELROUTE",
    "RTM_NEWLINK", "RTM_NEWNEIGH", "RTM_NEWROUTE", "RT_TABLE_COMPAT", "NetlinkError",
    "RtNetlink", "in_netns",
]

T = TypeVar("T")

RTEXT_FILTER_SKIP_STATS = 1 << 3  # if_link.h: RTM_GETLINK without the stats attributes
RTM_F_LOOKUP_TABLE = 0x1000
RTM_F_FIB_MATCH = 0x2000
RT_TABLE_COMPAT = 252  # rtm_table of a table id >= 256: "see RTA_TABLE"

# neighbour.h
NUD_INCOMPLETE = 0x01
NUD_REACHABLE = 0x02
NUD_STALE = 0x04
NUD_DELAY = 0x08
NUD_PROBE = 0x10
NUD_FAILED = 0x20
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
NUD_NAMES = {
    0x01: "INCOMPLETE", 0x02: "REACHABLE", 0x04: "STALE", 0x08: "DELAY", 0x10: "PROBE",
    0x20: "FAILED", 0x40: "NOARP", 0x80: "PERMANENT", 0: "NONE",
}
NUD_USABLE = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_NOARP | NUD_PERMANENT

_RECV_BYTES = 1 << 20
# A classic BPF filter on route notifications (only_routes_of): the kernel copies it in.
_TYPE_LOW_OFFSET = 4 if sys.byteorder == "little" else 5  # nlmsg_type's low byte
_RTM_TABLE_OFFSET = 16 + 4  # nlmsghdr, then rtmsg: family, dst_len, src_len, tos, table
_ENCODED_MAX = 1024  # distinct requests kept encoded (links looked up by index included)
_SEQ = struct.Struct("=I")
_NLMSGHDR = struct.Struct("=IHHI")  # length, type, flags, sequence number
_NLMSG_EVENTS = {key: mtypes.get(key, "none") for key in (1, 2, 3, 4)}  # as pyroute2 names
_SEQ_OFFSET = 8  # nlmsghdr: length u32, type u16, flags u16, sequence number u32, port u32
_HEADER = struct.Struct("=IHH")  # nlmsghdr's length, type, flags (`_lean_dump`)


_NDM_STATE_OFFSET = 16 + 8  # after nlmsghdr: ndmsg's family, pads and ifindex, then state
_NDM_STATE = struct.Struct("=H")


def only_usable_neighbours(data: memoryview | bytes, length: int) -> bool:
    """Whether the notifications in `data[:length]` are all RTM_NEWNEIGH of entries in a
    usable state (REACHABLE, STALE, DELAY, PROBE, NOARP, PERMANENT): an entry's everyday
    moves between these, which change nothing for a check that needs a usable one."""
    offset = 0
    while offset + _HEADER.size <= length:
        msg_length, msg_type, _flags = _HEADER.unpack_from(data, offset)
        if (msg_type != RTM_NEWNEIGH or msg_length < _NDM_STATE_OFFSET + _NDM_STATE.size
                or offset + msg_length > length):
            return False
        (state,) = _NDM_STATE.unpack_from(data, offset + _NDM_STATE_OFFSET)
        if not state & NUD_USABLE:
            return False
        offset += (msg_length + 3) & ~3
    return offset > 0


class NetlinkError(OSError):
    """The kernel answered a request with an error (errno in .errno)."""


# ---------------------------------------------------------------- namespaces


def in_netns(netns: str | None, fn: Callable[[], T]) -> T:
    """Run fn() in a thread that joined /var/run/netns/NAME (None: here).

    Sockets keep the namespace they were made in, so a collector pointed at a namespace
    (tests, the benchmark) makes its sockets this way and otherwise runs as usual.
    setns(2) moves only the calling thread: `pyroute2.netns.setns` in a thread of its own.
    """
    if netns is None:
        return fn()
    out: list[T] = []
    err: list[BaseException] = []

    def worker() -> None:
        try:
            pyroute2_netns.setns(netns, flags=0)  # flags=0: never create it
            out.append(fn())
        except BaseException as exc:  # handed to the caller
            err.append(exc)

    thread = threading.Thread(target=worker, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if err:
        raise err[0]
    return out[0]


# ---------------------------------------------------------------- requests


def _stats_request(index: int) -> Any:
    msg = ifstatsmsg()
    msg["ifindex"] = index  # 0 with a dump: every interface
    msg["filter_mask"] = 1 << (IFLA_STATS_LINK_64 - 1)
    return msg


def _link_request(index: int = 0, name: str | None = None) -> Any:
    msg = ifinfmsg()
    msg["index"] = index
    msg["attrs"] = [("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS)]
    if name is not None:
        msg["attrs"].append(("IFLA_IFNAME", name))
    return msg


def _neigh_request(index: int, address: str, flags: int = 0) -> Any:
    ip = ipaddress.ip_address(address)
    msg = ndmsg()
    msg["family"] = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    msg["ifindex"] = index
    msg["flags"] = flags
    msg["attrs"] = [("NDA_DST", str(ip))]
    return msg


# ---------------------------------------------------------------- socket


class _Marshal(MarshalRtnl):  # type: ignore[misc]  # pyroute2 ships no types
    """pyroute2's rtnetlink marshal (its message classes, `seq_map`, `parse_one_message`,
    `fix_message`) with a leaner loop over a receive: a compiled header `Struct`, the
    parser registered for a sequence number looked up without first building the default
    one (a `partial` per message), and no custom-key branch (rtnetlink has none). Over a
    5,000-interface counter dump that loop was a third of the time (13.4 -> 8.6 ms, min
    of 40, same run); the messages it yields are the ones pyroute2's `parse` yields.
    """

    def parse(self, data: bytes, seq: int | None = None, callback: Any = None,
              skip_alien_seq: bool = False) -> Iterator[Any]:
        if callback is not None or skip_alien_seq:  # pyroute2's own uses: its own loop
            yield from super().parse(data, seq, callback, skip_alien_seq)
            return
        end = len(data)
        offset = 0
        header = _NLMSGHDR.unpack_from
        registered = self.seq_map.get
        while offset <= end - 16:
            length, key, flags, sequence_number = header(data, offset)
            if not 0 < length <= end:
                break
            parser = registered(sequence_number)
            if parser is None:
                msg = self.parse_one_message(key, flags, sequence_number, data, offset,
                                             length)
            else:
                msg = parser(data, offset, length)
            offset += length
            if msg is None:  # taken by a lean reader
                continue
            if key in _NLMSG_EVENTS and "event" not in msg:
                msg["event"] = _NLMSG_EVENTS[key]
            self.fix_message(msg)
            yield msg


class RtNetlink:
    """One pyroute2 `IPRSocket` for requests (dumps, gets), or, with `groups` (RTMGRP_*
    bits), for notifications.

    Not thread-safe: one user at a time. Never make requests on a subscribed socket: the
    answer loop skips messages that are not its answer, so notifications would be lost.
    """

    def __init__(self, netns: str | None = None, groups: int = 0,
                 rcvbuf_bytes: int = 4 << 20) -> None:
        # flags=0: a namespace that does not exist is an error, not created (pyroute2's
        # default); strict checking makes the kernel filter dumps (tables, one link).
        self._ipr = IPRSocket(netns=netns, flags=0, strict_check=True, rcvbuf=rcvbuf_bytes,
                              groups=0)
        self.sock: socket.socket = self._ipr.socket  # made in netns (pyroute2's helper)
        self.netns = netns
        with contextlib.suppress(OSError):  # beyond rmem_max: root only
            self.sock.setsockopt(socket.SOL_SOCKET, 33, rcvbuf_bytes)  # SO_RCVBUFFORCE
        self._ipr.bind(groups=groups)
        self._ipr.set_marshal(_Marshal())
        self._marshal = self._ipr.marshal
        self._buf = bytearray(_RECV_BYTES)
        self._view = memoryview(self._buf)
        self._seq = 0
        self._encoded: dict[Hashable, bytearray] = {}
        self.requests = 0  # sent on this socket (status, tests)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self._ipr.close()

    # ------------------------------------------------------------ the message loop

    def _recv(self) -> bytes:
        n = self.sock.recv_into(self._view)
        # A copy: pyroute2 messages decode their attributes lazily from this buffer.
        return bytes(self._view[:n])

    def _send(self, key: Hashable, build: Callable[[], Any], msg_type: int,
              flags: int) -> int:
        """Send the request `build()` makes (a pyroute2 message); return its sequence number.

        The same few requests go out at every poll (a table, a lookup, a neighbour per
        carrier), so each is encoded by its message class once, keyed by what it asks, and
        sent again with a new sequence number: encoding was half the routing checks' CPU.
        """
        data = self._encoded.get(key)
        if data is None:
            msg = build()
            msg["header"]["type"] = msg_type
            msg["header"]["flags"] = NLM_F_REQUEST | flags
            msg["header"]["sequence_number"] = 0
            msg["header"]["pid"] = 0
            msg.encode()
            if len(self._encoded) >= _ENCODED_MAX:
                self._encoded.clear()
            data = self._encoded[key] = bytearray(msg.data)
        self._seq = seq = self._seq % 0xFFFFFF + 1
        _SEQ.pack_into(data, _SEQ_OFFSET, seq)
        self.sock.send(data)
        self.requests += 1
        return seq

    def _answers(self, seq: int, dump: bool) -> Iterator[Any]:
        """The answers to request `seq`, as pyroute2 messages, until DONE, the ACK, or (not
        a dump) the first receive that held one; an error answer raises NetlinkError."""
        while True:
            answered = False
            for msg in self._marshal.parse(self._recv()):
                header = msg["header"]
                if header["sequence_number"] != seq:
                    continue  # a notification, or the rest of an abandoned request
                answered = True
                error = header["error"]
                if error is not None:
                    code = error.code if isinstance(error, Pyroute2NetlinkError) else (
                        getattr(error, "errno", None) or errno.EIO)
                    raise NetlinkError(code, os.strerror(code))
                if header["type"] in (NLMSG_DONE, NLMSG_ERROR):  # ERROR 0: an ACK
                    return
                yield msg
            if answered and not dump:
                return

    def request(self, key: Hashable, build: Callable[[], Any], msg_type: int,
                flags: int = 0) -> Iterator[Any]:
        """Send the request `build()` makes (cached under `key`); yield the answers
        (pyroute2 messages)."""
        seq = self._send(key, build, msg_type, flags)
        return self._answers(seq, bool(flags & NLM_F_DUMP))

    def drain(self) -> Notices:
        """Everything queued on a subscribed, non-blocking socket, parsed."""
        messages: list[Any] = []
        lost = False
        while True:
            try:
                data = self._recv()
            except BlockingIOError:
                return Notices(messages, lost)
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                lost = True  # reported once; what follows is read as usual
                continue
            messages.extend(self._marshal.parse(data))

    def only_routes_of(self, tables: Iterable[int]) -> None:
        """Have the kernel drop route notifications of other tables before they are queued
        (a classic BPF socket filter): a host whose kernel holds a full BGP table would
        otherwise hand every change of it to pyroute2's decoder (~50-70 us a route).
        Other notifications pass. Tables >= 256 arrive as RT_TABLE_COMPAT: pass that too.
        """
        keep = sorted({t if t < 256 else RT_TABLE_COMPAT for t in tables} | {RT_TABLE_COMPAT})
        n = len(keep)
        if n > 250:  # a jump offset is one byte: then no filter, every route is read
            return
        prog = [
            (BPF_LD_B_ABS, 0, 0, _TYPE_LOW_OFFSET),  # nlmsg_type (route types are < 256)
            (BPF_JEQ_K, 2, 0, RTM_NEWROUTE),  # → load the table
            (BPF_JEQ_K, 1, 0, RTM_DELROUTE),
            (BPF_RET_K, 0, 0, 0xFFFFFFFF),  # not a route: keep
            (BPF_LD_B_ABS, 0, 0, _RTM_TABLE_OFFSET),  # rtmsg.rtm_table
            *[(BPF_JEQ_K, n - i, 0, table) for i, table in enumerate(keep)],  # → keep
            (BPF_RET_K, 0, 0, 0),  # another table: drop
            (BPF_RET_K, 0, 0, 0xFFFFFFFF),
        ]
        attach_filter(self.sock, prog)

    def pending(self, count_usable_neighbours: bool = True) -> bool:
        """Whether anything was queued on a subscribed, non-blocking socket since the last
        call (lost notifications count): read and dropped unparsed, for a caller that only
        needs to know that something changed. Without `count_usable_neighbours`, a
        datagram of nothing but neighbour entries in usable states does not count
        (`only_usable_neighbours`)."""
        seen = False
        while True:
            try:
                length = self.sock.recv_into(self._view)
            except BlockingIOError:
                return seen
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                seen = True
                continue
            if count_usable_neighbours or not only_usable_neighbours(self._view, length):
                seen = True

    # ------------------------------------------------------------ counters

    def _lean_dump(self, key: Hashable, build: Callable[[], Any], msg_type: int,
                   read: Callable[[bytes, int, int], bool]) -> None:
        """Send a dump request; hand each answer to `read(data, offset, length)`, which
        takes the ones of its type (True) instead of a message object being built (see
        the module docstring for why).

        `read` is registered in the marshal for this request's sequence number only
        (pyroute2's `seq_map` hook), so the answers are parsed in the one answer loop
        every request uses (`_answers`); what `read` leaves (DONE, errors) comes back from
        it as pyroute2 messages.
        """
        marshal = self._marshal
        fallback = marshal.parse_one_message
        header = _HEADER.unpack_from

        def parse(data: bytes, offset: int, length: int) -> Any:
            if read(data, offset, length):
                return None  # nothing for the loop to yield
            _length, mtype, mflags = header(data, offset)
            return fallback(mtype, mflags, seq, data, offset, length)

        seq = self._send(key, build, msg_type, NLM_F_DUMP)
        # Registered before anything is read: the answers are parsed only in _answers.
        marshal.seq_map[seq] = parse
        try:
            for _ in self._answers(seq, dump=True):
                pass
        finally:
            marshal.seq_map.pop(seq, None)

    def dump_stats64(self) -> dict[int, tuple[int, ...]]:
        """ifindex → (rx_packets, tx_packets, rx_bytes, tx_bytes, rx_errors, tx_errors,
        rx_dropped, tx_dropped): RTM_GETSTATS asking for IFLA_STATS_LINK_64 only.

        The hot path (one message per interface, every poll): read by `read_stats64`.
        """
        out: dict[int, tuple[int, ...]] = {}
        self._lean_dump(("stats", 0), lambda: _stats_request(0), RTM_GETSTATS,
                        functools.partial(read_stats64, out))
        return out

    def get_stats64(self, index: int) -> tuple[int, ...] | None:
        """Counters of one interface (the tuple of dump_stats64), None if it is gone."""
        try:
            for msg in self.request(("stats", index), lambda: _stats_request(index),
                                    RTM_GETSTATS):
                stats = msg.get_attr("IFLA_STATS_LINK_64")
                if stats is not None:
                    return tuple(int(stats[name]) for name in STATS_NAMES)
        except NetlinkError as exc:
            if exc.errno in (errno.ENODEV, errno.EINVAL):
                return None
            raise
        return None

    # ------------------------------------------------------------ link state

    def dump_links(self) -> dict[int, LinkState]:
        """ifindex → LinkState: RTM_GETLINK dump without stats, read by `read_link`
        (pyroute2's `ifinfmsg` decodes every one of ~50 attributes: 25x slower)."""
        out: dict[int, LinkState] = {}
        self._lean_dump(("links",), _link_request, RTM_GETLINK,
                        functools.partial(read_link, out))
        return out

    def _get_link(self, index: int, name: str | None,
                  absent: tuple[int, ...]) -> LinkState | None:
        try:
            for answer in self.request(("link", index, name),
                                       lambda: _link_request(index, name), RTM_GETLINK):
                if answer["header"]["type"] == RTM_NEWLINK:
                    return link_state(answer)
        except NetlinkError as exc:
            if exc.errno in absent:
                return None
            raise
        return None

    def get_link(self, index: int) -> LinkState | None:
        return self._get_link(index, None, (errno.ENODEV,))

    def get_link_by_name(self, name: str) -> LinkState | None:
        return self._get_link(0, name, (errno.ENODEV, errno.EINVAL))

    # ------------------------------------------------------------ routes, neighbours

    def dump_routes(self, table: int, family: int = socket.AF_INET) -> list[RouteInfo]:
        """Routes of one table (the kernel filters: strict checking on)."""
        def build() -> Any:
            msg = rtmsg()
            msg["family"] = family
            msg["table"] = table if table < 256 else RT_TABLE_COMPAT
            msg["attrs"] = [("RTA_TABLE", table)]
            return msg

        routes = []
        for answer in self.request(("routes", table, family), build, RTM_GETROUTE,
                                   NLM_F_DUMP):
            if answer["header"]["type"] == RTM_NEWROUTE:
                route = route_info(answer)
                if route.table == table:
                    routes.append(route)
        return routes

    def route_get(self, dst: str, src: str | None = None, oif: int | None = None,
                  fib_match: bool = False) -> RouteInfo | None:
        """What the kernel would do for a packet to dst (from src): RTM_GETROUTE, no dump.

        The lookup goes through the policy rules, so with a carrier's source address it
        answers from the carrier's table. None when the kernel has no route.
        """
        def build() -> Any:
            address = ipaddress.ip_address(dst)
            family = socket.AF_INET if address.version == 4 else socket.AF_INET6
            bits = 32 if family == socket.AF_INET else 128
            msg = rtmsg()
            msg["family"] = family
            msg["dst_len"] = bits
            msg["src_len"] = bits if src is not None else 0
            # IPv6 (strict checking) refuses RTM_F_LOOKUP_TABLE with EINVAL; IPv4 takes it.
            msg["flags"] = (RTM_F_LOOKUP_TABLE if family == socket.AF_INET else 0) | (
                RTM_F_FIB_MATCH if fib_match else 0)
            msg["attrs"] = [("RTA_DST", str(address))]
            if src is not None:
                msg["attrs"].append(("RTA_SRC", str(ipaddress.ip_address(src))))
            if oif is not None:
                msg["attrs"].append(("RTA_OIF", oif))
            return msg

        try:
            for answer in self.request(("route", dst, src, oif, fib_match), build,
                                       RTM_GETROUTE):
                if answer["header"]["type"] == RTM_NEWROUTE:
                    return route_info(answer)
        except NetlinkError as exc:
            if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EINVAL,
                             errno.EACCES, errno.EPERM, errno.ENOENT):
                return None
            raise
        return None

    def get_neighbour(self, index: int, address: str) -> int | None:
        """NUD state of the neighbour entry (dev, address), None when there is none."""
        try:
            for answer in self.request(("neigh", index, address),
                                       lambda: _neigh_request(index, address), RTM_GETNEIGH):
                if answer["header"]["type"] == RTM_NEWNEIGH:
                    return int(answer["state"])
        except NetlinkError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        return None

    def resolve_neighbour(self, index: int, address: str) -> None:
        """Ask the kernel to resolve (ARP/ND) a neighbour now: RTM_NEWNEIGH with NTF_USE,
        what `ip neigh replace ... use` does. Sends one ARP request, nothing else."""
        for _ in self.request(("resolve", index, address),
                              lambda: _neigh_request(index, address, NTF_USE), RTM_NEWNEIGH,
                              NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK):
            pass
