"""Real BGP updates as RIS Live messages, with our test prefixes spliced in.

`real_messages()` turns tests/fixtures/mrt/updates.20160811.1600.gz (45 RIS peer sessions
of rrc18, IPv4 and IPv6, 17,406 records) into RIS Live `ris_message` frames in the
documented shape (peer, peer_asn as a string, host, type UPDATE, path with an AS_SET as a
list, community, origin, announcements [{next_hop, prefixes}], withdrawals).

`spliced()` adds, for every real peer, our prefix of its family (OWN4 / OWN6) announced
with that peer's own first real hops followed by one of our carriers' AS (or a stranger,
UPSTREAM_OTHER) and LOCAL_AS, right after the peer's first real UPDATE; then some peers
move to another carrier and some withdraw, later in the stream. `truth()` replays only
our prefixes, independently of the agent's code, to the counts the agent must show.
"""

from __future__ import annotations

import functools
import json
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MRT = Path(__file__).resolve().parents[1] / "fixtures" / "mrt" / "updates.20160811.1600.gz"
LOCAL_AS = 64512
CARRIERS = {"telecom": 4134, "unicom": 4837, "mobile": 9808}
UPSTREAM_OTHER = 64499  # documentation AS: none of our carriers
OWN4 = "198.51.100.0/24"
OWN6 = "2001:db8:100::/48"
HOST = "rrc18.ripe.net"


def _reader() -> Any:
    previous = signal.getsignal(signal.SIGPIPE)  # see tests/lab/routes.py mrt_reader()
    try:
        from mrtparse import Reader
    finally:
        signal.signal(signal.SIGPIPE, previous)
    return Reader


def _path(attributes: list[Any]) -> list[Any]:
    as_path: list[Any] = []
    as4_path: list[Any] = []
    for attr in attributes:
        kind = next(iter(attr["type"]))
        if kind in (2, 17):
            target = as_path if kind == 2 else as4_path
            for segment in attr["value"]:
                values = [int(a) for a in segment["value"]]
                if 2 in segment["type"]:
                    target.extend(values)
                elif 1 in segment["type"]:
                    target.append(sorted(values))
    if as4_path and 23456 in as_path:
        as_path = as_path[: len(as_path) - len(as4_path)] + as4_path
    return as_path


@functools.cache
def real_messages() -> tuple[str, ...]:
    """Every UPDATE of the MRT file as one RIS Live frame (JSON text)."""
    frames = []
    for n, entry in enumerate(_reader()(str(MRT))):
        d = entry.data
        message = d.get("bgp_message")
        if not message or 2 not in message["type"]:
            continue
        timestamp = float(next(iter(d["timestamp"])))
        announcements: list[dict[str, Any]] = []
        withdrawals = [f"{w['prefix']}/{w['length']}" for w in message.get("withdrawn_routes", [])]
        next_hop = ""
        community: list[list[int]] = []
        origin = ""
        for attr in message.get("path_attributes", []):
            kind = next(iter(attr["type"]))
            if kind == 3:
                next_hop = attr["value"]
            elif kind == 1:
                origin = str(next(iter(attr["value"].values()))).lower()
            elif kind == 8:
                community = [[int(x) for x in c.split(":")] for c in attr["value"]]
            elif kind == 14:
                value = attr["value"]
                prefixes = [f"{p['prefix']}/{p['length']}" for p in value.get("nlri", [])]
                if prefixes:
                    announcements.append({"next_hop": ",".join(value["next_hop"]),
                                          "prefixes": prefixes})
            elif kind == 15:
                withdrawals.extend(f"{p['prefix']}/{p['length']}"
                                   for p in attr["value"].get("withdrawn_routes", []))
        v4 = [f"{p['prefix']}/{p['length']}" for p in message.get("nlri", [])]
        if v4:
            announcements.insert(0, {"next_hop": next_hop, "prefixes": v4})
        data: dict[str, Any] = {
            "timestamp": timestamp, "peer": d["peer_ip"], "peer_asn": str(d["peer_as"]),
            "id": f"{d['peer_ip']}-{n:016x}", "host": HOST, "type": "UPDATE",
            "path": _path(message.get("path_attributes", [])) if announcements else [],
            "community": community, "announcements": announcements,
            "withdrawals": withdrawals,
        }
        if origin:
            data["origin"] = origin
        frames.append(json.dumps({"type": "ris_message", "data": data}))
    return tuple(frames)


def ris_update(peer: str, peer_asn: int, path: list[Any] | None = None,
               announce: Iterable[str] = (), withdraw: Iterable[str] = (),
               timestamp: float = 1470931200.0) -> str:
    announce, withdraw = list(announce), list(withdraw)
    data: dict[str, Any] = {
        "timestamp": timestamp, "peer": peer, "peer_asn": str(peer_asn),
        "id": f"{peer}-test", "host": HOST, "type": "UPDATE",
        "path": path if announce else [], "community": [],
        "announcements": [{"next_hop": peer, "prefixes": announce}] if announce else [],
        "withdrawals": withdraw,
    }
    return json.dumps({"type": "ris_message", "data": data})


@dataclass(frozen=True)
class Peer:
    address: str
    asn: int
    first_path: tuple[int, ...]

    @property
    def own(self) -> str:
        return OWN6 if ":" in self.address else OWN4


def peers() -> list[Peer]:
    """The real peers in the order of their first UPDATE with a path, with its hops."""
    found: dict[str, Peer] = {}
    for frame in real_messages():
        data = json.loads(frame)["data"]
        if data["peer"] in found or not data["path"]:
            continue
        hops = tuple(a for a in data["path"] if isinstance(a, int))
        found[data["peer"]] = Peer(data["peer"], int(data["peer_asn"]), hops)
    return list(found.values())


def upstream_for(index: int) -> int:
    """Peer i reaches us through telecom, unicom, mobile, telecom, unicom, mobile, ...,
    every 9th through UPSTREAM_OTHER."""
    if index % 9 == 8:
        return UPSTREAM_OTHER
    return list(CARRIERS.values())[index % 3]


def spliced_path(peer: Peer, upstream: int, prepends: int = 0) -> list[int]:
    return [*peer.first_path[:2], upstream, *([LOCAL_AS] * (1 + prepends))]


def spliced() -> list[str]:
    """The real stream with our prefixes spliced in (see the module doc)."""
    all_peers = peers()
    index = {p.address: i for i, p in enumerate(all_peers)}
    by_address = {p.address: p for p in all_peers}
    announced: set[str] = set()
    seen_count: dict[str, int] = {}
    out: list[str] = []
    for frame in real_messages():
        out.append(frame)
        data = json.loads(frame)["data"]
        address = data["peer"]
        peer = by_address.get(address)
        if peer is None:
            continue
        i = index[address]
        seen_count[address] = seen_count.get(address, 0) + 1
        ts = data["timestamp"]
        if address not in announced:
            announced.add(address)
            path = spliced_path(peer, upstream_for(i), i % 5 == 4)
            out.append(ris_update(address, peer.asn, path, [peer.own], timestamp=ts))
        elif seen_count[address] == 40 and i % 7 == 0:  # moves to the next carrier
            out.append(ris_update(address, peer.asn, spliced_path(peer, upstream_for(i + 1)),
                                  [peer.own], timestamp=ts))
        elif seen_count[address] == 60 and i % 11 == 5:  # withdraws
            out.append(ris_update(address, peer.asn, withdraw=[peer.own], timestamp=ts))
    return out


def truth(frames: Iterable[str]) -> dict[str, dict[str, int]]:
    """Per own prefix: {"any", each carrier, "other"} from the frames, our prefixes only."""
    routes: dict[tuple[str, str], list[int] | None] = {}
    for frame in frames:
        data = json.loads(frame)["data"]
        for prefix in data["withdrawals"]:
            if prefix in (OWN4, OWN6):
                routes[(data["peer"], prefix)] = None
        for announcement in data["announcements"]:
            for prefix in announcement["prefixes"]:
                if prefix in (OWN4, OWN6):
                    routes[(data["peer"], prefix)] = data["path"]
    result: dict[str, dict[str, int]] = {}
    for own in (OWN4, OWN6):
        counts = {"any": 0, "other": 0, **{name: 0 for name in CARRIERS}}
        for (_, prefix), path in routes.items():
            if prefix != own or path is None or path[-1] != LOCAL_AS:
                continue
            counts["any"] += 1
            hops = list(path)
            while hops and hops[-1] == LOCAL_AS:
                hops.pop()
            if not hops:
                continue
            names = [name for name, asn in CARRIERS.items() if asn == hops[-1]]
            if names:
                counts[names[0]] += 1
            else:
                counts["other"] += 1
        result[own] = counts
    return result
