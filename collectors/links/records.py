"""What rtnetlink says, as records: LinkState and RouteInfo from pyroute2's messages, and
the lean readers of the two dumps of every interface (counters, link state).

The readers are registered in pyroute2's marshal by netlink.py (`_lean_dump`, the one place
that does it); why they exist, measured, is in netlink.py's docstring. They are tested
against pyroute2's full decoding of the same kernel answers (tests/test_links_netlink.py).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from pyroute2.netlink.rtnl import RTM_NEWLINK, RTM_NEWSTATS

IFLA_STATS_LINK_64 = 1
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000

OPER_STATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")
_OPER_CODES = {name.upper(): code for code, name in enumerate(OPER_STATES)}

_ATTR = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_STATS8 = struct.Struct("=8Q")
# The heads the readers unpack at once: nlmsghdr (length, type; flags, seq, port skipped),
# then if_stats_msg (family, pads, ifindex; filter_mask skipped) and its first attribute,
# or ifinfomsg (family, pad, type, index, flags; change skipped).
_STATS_HEAD = struct.Struct("=IH10x4xI4xHH")
_LINK_HEAD = struct.Struct("=IH10xBxHiI")
_NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED, NLA_F_NET_BYTEORDER
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_OPERSTATE = 16
IFLA_CARRIER = 33
STATS_NAMES = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_errors", "tx_errors",
                "rx_dropped", "tx_dropped")


@dataclass(slots=True)
class LinkState:
    """What RTM_NEWLINK says about one interface (the few attributes we read)."""

    index: int
    name: str
    flags: int
    mtu: int
    operstate: int
    carrier: bool

    @property
    def admin_up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def oper_up(self) -> bool:
        # The kernel's RFC 2863 state follows admin state and carrier, but is updated by
        # linkwatch (up to a second later), while IFF_UP and the carrier are current in
        # the message itself. Up: admin up, carrier on, and not dormant/testing/notpresent
        # (what the operstate becomes once linkwatch has run).
        return self.admin_up and self.carrier and self.operstate not in (1, 4, 5)

    @property
    def oper_name(self) -> str:
        return OPER_STATES[self.operstate] if self.operstate < len(OPER_STATES) else "?"


@dataclass(slots=True)
class RouteInfo:
    table: int
    dst: str | None
    dst_len: int
    type: int
    oif: int | None
    gateways: list[tuple[str, int | None]]  # (gateway, oif) per next hop


def _attrs(msg: Any, names: frozenset[str]) -> dict[str, Any]:
    """The first value of each of these attributes of a pyroute2 message, in one pass over
    its attribute list (pyroute2's get_attr walks the list once per name); only these are
    decoded."""
    out: dict[str, Any] = {}
    for slot in msg["attrs"]:
        name = slot.name
        if name in names and name not in out:
            out[name] = slot.value
    return out


_LINK_ATTRS = frozenset(("IFLA_IFNAME", "IFLA_MTU", "IFLA_OPERSTATE", "IFLA_CARRIER"))
_ROUTE_ATTRS = frozenset(("RTA_OIF", "RTA_GATEWAY", "RTA_MULTIPATH", "RTA_TABLE", "RTA_DST"))


def link_state(msg: Any) -> LinkState:
    """LinkState of a pyroute2 `ifinfmsg` (RTM_NEWLINK/RTM_DELLINK)."""
    flags = int(msg["flags"])
    attrs = _attrs(msg, _LINK_ATTRS)
    carrier = attrs.get("IFLA_CARRIER")
    return LinkState(
        index=int(msg["index"]),
        name=attrs.get("IFLA_IFNAME") or "",
        flags=flags,
        mtu=int(attrs.get("IFLA_MTU") or 0),
        operstate=_OPER_CODES.get(attrs.get("IFLA_OPERSTATE") or "UNKNOWN", 0),
        carrier=bool(flags & IFF_LOWER_UP) if carrier is None else bool(carrier),
    )


def route_info(msg: Any) -> RouteInfo:
    """RouteInfo of a pyroute2 `rtmsg` (RTM_NEWROUTE): gateways of every next hop."""
    attrs = _attrs(msg, _ROUTE_ATTRS)
    oif = attrs.get("RTA_OIF")
    hops: list[tuple[str, int | None]] = []
    gateway = attrs.get("RTA_GATEWAY")
    if gateway is not None:
        hops.append((gateway, oif))
    for hop in attrs.get("RTA_MULTIPATH") or ():
        hop_gateway = hop.get_attr("RTA_GATEWAY")
        if hop_gateway is not None:
            hops.append((hop_gateway, int(hop["oif"])))
    table = attrs.get("RTA_TABLE")
    return RouteInfo(int(msg["table"] if table is None else table), attrs.get("RTA_DST"),
                     int(msg["dst_len"]), int(msg["type"]), oif, hops)


# The lean readers of the two dumps a poll or a resync makes of every interface (see the
# module docstring): one message at `offset` of `data`, straight into `out`.


def read_stats64(out: dict[int, tuple[int, ...]], data: bytes, offset: int,
                 length: int) -> bool:
    """RTM_NEWSTATS: nlmsghdr, if_stats_msg, then IFLA_STATS_LINK_64 (the one attribute
    asked for, so first: one unpack for the headers, one for the counters)."""
    if length < _STATS_HEAD.size:  # DONE, an error
        return False
    _length, mtype, ifindex, alen, atype = _STATS_HEAD.unpack_from(data, offset)
    if mtype != RTM_NEWSTATS:
        return False
    pos, end = offset + 28, offset + length
    while alen >= 4 and pos + alen <= end:
        if atype == IFLA_STATS_LINK_64:
            if alen >= 4 + _STATS8.size:
                out[ifindex] = _STATS8.unpack_from(data, pos + 4)
            break
        pos += (alen + 3) & ~3
        if pos + 4 > end:
            break
        alen, atype = _ATTR.unpack_from(data, pos)
    return True


def read_link(out: dict[int, LinkState], data: bytes, offset: int, length: int) -> bool:
    """RTM_NEWLINK: nlmsghdr, ifinfomsg, then attributes; stops once the four it reads
    are found (name and MTU come first, carrier after ~30 others)."""
    if length < _LINK_HEAD.size:  # DONE, an error
        return False
    _length, mtype, _family, _type, index, flags = _LINK_HEAD.unpack_from(data, offset)
    if mtype != RTM_NEWLINK:
        return False
    name = ""
    mtu = operstate = 0
    carrier = bool(flags & IFF_LOWER_UP)  # a kernel without IFLA_CARRIER (as link_state)
    need = 4
    pos, end = offset + 32, offset + length
    attr = _ATTR.unpack_from
    while need and pos + 4 <= end:
        alen, atype = attr(data, pos)
        if alen < 4:
            break
        atype &= _NLA_TYPE_MASK
        if atype == IFLA_IFNAME:
            name = data[pos + 4:pos + alen].split(b"\0", 1)[0].decode("utf-8", "replace")
            need -= 1
        elif atype == IFLA_MTU:
            mtu = _U32.unpack_from(data, pos + 4)[0]
            need -= 1
        elif atype == IFLA_OPERSTATE:
            operstate = data[pos + 4]
            need -= 1
        elif atype == IFLA_CARRIER:
            carrier = bool(data[pos + 4])
            need -= 1
        pos += (alen + 3) & ~3
    out[index] = LinkState(index, name, flags, mtu, operstate, carrier)
    return True


@dataclass(slots=True)
class Notices:
    """What a drain of a subscribed socket found: pyroute2 messages, and whether the kernel
    dropped some (ENOBUFS: the queue overflowed; the state must be read anew)."""

    messages: list[Any]
    lost: bool
