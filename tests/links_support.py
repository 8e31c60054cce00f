"""Scratch namespaces for the links tests (no tests here).

Each `Scratch` is two namespaces of this process (`lka<pid>_<n>` with the uplink and
`lkc<pid>_<n>` as the carrier behind it) joined by a veth pair, with a policy-routing table
and rules for the carrier as the lab sets them up. Everything is removed by name.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.collector import CollectorContext
from agent.config import Config, parse_config
from agent.points import Point
from collectors.links.netlink import in_netns

_counter = itertools.count(1)

AGENT_ADDR = "100.64.9.1"
CARRIER_ADDR = "100.64.9.2"
AGENT_ADDR6 = "2001:db8:9::1"
CARRIER_ADDR6 = "2001:db8:9::2"
TABLE = 101


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")


def sh(*argv: str, netns: str | None = None, check: bool = True) -> str:
    full = ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
    proc = subprocess.run(full, capture_output=True, text=True, check=False, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(full)}: {proc.stderr.strip()}")
    return proc.stdout


class Scratch:
    def __init__(self, uplink: str | None = None, ipv6: bool = False) -> None:
        n = next(_counter)
        pid = os.getpid()
        self.ns = f"lka{pid}_{n}"
        self.peer_ns = f"lkc{pid}_{n}"
        self.uplink = uplink or f"lkup{pid % 100000}{n}"[:15]
        self.peer = f"lkpe{pid % 100000}{n}"[:15]
        sh("ip", "netns", "add", self.ns)
        sh("ip", "netns", "add", self.peer_ns)
        for ns in (self.ns, self.peer_ns):
            # IPv6 off unless asked for: no router/neighbour solicitations in the counters
            flag = "0" if ipv6 else "1"
            sh("sysctl", "-qw", f"net.ipv6.conf.all.disable_ipv6={flag}", netns=ns)
            sh("sysctl", "-qw", f"net.ipv6.conf.default.disable_ipv6={flag}", netns=ns)
            if ipv6:  # no DAD: a tentative link-local cannot send neighbour solicitations
                sh("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", netns=ns)
                sh("sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", netns=ns)
            sh("ip", "link", "set", "lo", "up", netns=ns)
        sh("ip", "-n", self.ns, "link", "add", self.uplink, "type", "veth", "peer", "name",
           self.peer, "netns", self.peer_ns)
        sh("ip", "-n", self.ns, "addr", "add", f"{AGENT_ADDR}/30", "dev", self.uplink)
        sh("ip", "-n", self.peer_ns, "addr", "add", f"{CARRIER_ADDR}/30", "dev", self.peer)
        sh("ip", "-n", self.ns, "link", "set", self.uplink, "up")
        sh("ip", "-n", self.peer_ns, "link", "set", self.peer, "up")
        sh("ip", "-n", self.ns, "route", "add", "default", "via", CARRIER_ADDR, "dev",
           self.uplink, "table", str(TABLE))
        sh("ip", "-n", self.ns, "rule", "add", "from", AGENT_ADDR, "lookup", str(TABLE))
        sh("ip", "-n", self.ns, "rule", "add", "oif", self.uplink, "lookup", str(TABLE))
        if ipv6:
            sh("ip", "-n", self.ns, "-6", "addr", "add", f"{AGENT_ADDR6}/64", "dev",
               self.uplink, "nodad")
            sh("ip", "-n", self.peer_ns, "-6", "addr", "add", f"{CARRIER_ADDR6}/64", "dev",
               self.peer, "nodad")
            sh("ip", "-n", self.ns, "-6", "route", "add", "default", "via", CARRIER_ADDR6,
               "dev", self.uplink, "table", str(TABLE))
            sh("ip", "-n", self.ns, "-6", "rule", "add", "from", AGENT_ADDR6, "lookup",
               str(TABLE))
        # a route back for the carrier's side (198.51.100.0/24 stands for "the internet")
        sh("ip", "-n", self.peer_ns, "addr", "add", "198.51.100.1/24", "dev", "lo")

    def ip(self, *args: str, peer: bool = False, check: bool = True) -> str:
        return sh("ip", "-n", self.peer_ns if peer else self.ns, *args, check=check)

    def kernel_counters(self, name: str | None = None, peer: bool = False) -> dict[str, int]:
        out = json.loads(self.ip("-s", "-j", "link", "show", "dev", name or self.uplink,
                                 peer=peer))
        stats = out[0]["stats64"]
        return {
            "rx_bytes": stats["rx"]["bytes"], "rx_packets": stats["rx"]["packets"],
            "tx_bytes": stats["tx"]["bytes"], "tx_packets": stats["tx"]["packets"],
        }

    def send_udp(self, count: int, payload_bytes: int, from_peer: bool = False) -> None:
        """count UDP datagrams of payload_bytes across the veth (no ARP: static neighbours)."""
        src_ns, dst = (self.peer_ns, AGENT_ADDR) if from_peer else (self.ns, CARRIER_ADDR)
        dst_ns = self.ns if from_peer else self.peer_ns

        def listen() -> socket.socket:
            sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sink.bind((dst, 9))  # a listener: no ICMP port-unreachable answers
            return sink

        listener = in_netns(dst_ns, listen)

        def send() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                data = b"x" * payload_bytes
                for _ in range(count):
                    s.sendto(data, (dst, 9))

        try:
            in_netns(src_ns, send)
        finally:
            listener.close()

    def static_neighbours(self) -> None:
        mac_up = json.loads(self.ip("-j", "link", "show", "dev", self.uplink))[0]["address"]
        mac_pe = json.loads(self.ip("-j", "link", "show", "dev", self.peer,
                                    peer=True))[0]["address"]
        self.ip("neigh", "replace", CARRIER_ADDR, "lladdr", mac_pe, "dev", self.uplink,
                "nud", "permanent")
        self.ip("neigh", "replace", AGENT_ADDR, "lladdr", mac_up, "dev", self.peer,
                "nud", "permanent", peer=True)

    def close(self) -> None:
        sh("ip", "netns", "del", self.ns, check=False)
        sh("ip", "netns", "del", self.peer_ns, check=False)


def make_config(tmp_path: Path, uplink: str, **carrier: Any) -> Config:
    carrier_table = {"name": carrier.pop("name", "telecom"), "interface": uplink,
                     "source": AGENT_ADDR, "committed_mbps": 50, "table": TABLE}
    carrier_table.update(carrier)
    carrier_table = {k: v for k, v in carrier_table.items() if v is not None}
    return parse_config({
        "agent": {"hostname": "test", "data_dir": str(tmp_path), "interval": "1s"},
        "carriers": [carrier_table],
        "links": {"include": ["*"], "exclude": ["lo"]},
        "billing": {"interval": "1s"},
    })


class Sink:
    """ctx.emit that records points and the monotonic time each arrived."""

    def __init__(self) -> None:
        self.points: list[tuple[float, Point]] = []
        self.lock = threading.Lock()

    def __call__(self, points: Any) -> None:
        now = time.monotonic()
        with self.lock:
            self.points.extend((now, p) for p in points)

    def of(self, measurement: str) -> list[tuple[float, Point]]:
        with self.lock:
            return [(t, p) for t, p in self.points if p.measurement == measurement]


def make_ctx(config: Config, tmp_path: Path, sink: Sink | None = None) -> CollectorContext:
    return CollectorContext(config=config, emit=sink or Sink(), data_dir=tmp_path)
