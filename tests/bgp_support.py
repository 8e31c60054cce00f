"""ExaBGP-shaped lines and a BGP config for the BgpState tests (tests/test_bgp_state.py)
and the RPKI tests that feed BgpState the same lines."""

from __future__ import annotations

import json
from typing import Any

from agent.config import Config, parse_config
from agent.points import Point
from collectors.bgp.state import BgpState

PEERS = {"telecom": ("100.64.1.1", 4134), "unicom": ("100.64.2.1", 4837)}


def make_config(announce: list[str] | None = None, watch: list[str] | None = None,
                local6: bool = False) -> Config:
    carriers = []
    for i, (name, (peer, asn)) in enumerate(PEERS.items(), start=1):
        carriers.append({"name": name, "interface": name, "bgp": {
            "peer": peer, "peer_as": asn,
            "local_address": f"2001:db8:{i}::2" if local6 and i == 2 else f"100.64.{i}.2"}})
    return parse_config({
        "agent": {"hostname": "t"}, "carriers": carriers,
        "bgp": {"local_as": 64512, "router_id": "100.64.1.2",
                "announce": announce if announce is not None else ["198.51.100.0/24"],
                "watch": watch or []},
    })


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def neighbor(carrier: str) -> dict[str, Any]:
    peer, asn = PEERS[carrier]
    return {"address": {"local": "x", "peer": peer}, "asn": {"local": 64512, "peer": asn}}


def state_line(carrier: str, state: str, reason: str = "", v42: bool = False) -> str:
    n = neighbor(carrier) | {"state": state}
    if reason:
        n["reason"] = reason
    return json.dumps({"exabgp": "4.0.1" if v42 else "5.0.0", "type": "state", "neighbor": n})


def update_line(carrier: str, prefixes: list[str], path: list[int] | None = None,
                withdraw: list[str] | None = None, v42: bool = False,
                next_hop: str | None = None, **extra: Any) -> str:
    update: dict[str, Any] = {}
    if prefixes:
        attribute: dict[str, Any] = {"origin": "igp", **extra}
        path = path or [PEERS[carrier][1]]
        attribute["as-path"] = path if v42 else {
            "0": {"element": "as-sequence", "value": path}}
        family = "ipv6 unicast" if ":" in prefixes[0] else "ipv4 unicast"
        update["attribute"] = attribute
        update["announce"] = {family: {next_hop or PEERS[carrier][0]:
                                       [{"nlri": p} for p in prefixes]}}
    if withdraw:
        family = "ipv6 unicast" if ":" in withdraw[0] else "ipv4 unicast"
        update["withdraw"] = {family: [{"nlri": p} for p in withdraw]}
    n = neighbor(carrier) | {"direction": "receive", "message": {"update": update}}
    return json.dumps({"exabgp": "4.0.1" if v42 else "5.0.0", "type": "update", "neighbor": n})


def eor_line(carrier: str, afi: str = "ipv4") -> str:
    n = neighbor(carrier) | {"message": {"eor": {"afi": afi, "safi": "unicast"}}}
    return json.dumps({"exabgp": "5.0.0", "type": "update", "neighbor": n})


def kinds(points: list[Point]) -> list[str]:
    return [p.tags["kind"] for p in points]


def up(state: BgpState, *carriers: str) -> list[Point]:
    points = []
    for carrier in carriers:
        points += state.handle_line(state_line(carrier, "connected"))
        points += state.handle_line(state_line(carrier, "up"))
    return points
