"""ICMP engine edge cases against a scripted responder in a scratch namespace pair.

The far side ignores echo in its kernel (`icmp_echo_ignore_all=1`) and a raw-socket
responder answers instead, per destination address:
- 100.64.250.2: every request answered twice (duplicates);
- 100.64.250.3: every request answered after 300 ms (late for a 100 ms timeout);
- 100.64.250.4: odd sequences answered at once, even ones not at all;
- 100.64.250.5: answered from another source address (must not count);
- 100.64.250.6: answered with a foreign identifier (must not count).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from collectors.probes.engine import ProbeEngine
from collectors.probes.icmp import IcmpProber
from collectors.probes.sockets import Binding

pytestmark = pytest.mark.lab

RESPONDER = r"""
import socket, threading, time
from scapy.layers.inet import IP, ICMP
rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
half = [0]
print("ready", flush=True)

def reply(req, src=None, ident=None):
    icmp = req[ICMP]
    pkt = IP(src=src or req.dst, dst=req.src) / ICMP(
        type=0, id=icmp.id if ident is None else ident, seq=icmp.seq) / bytes(icmp.payload)
    tx.sendto(bytes(pkt), (req.src, 0))

while True:
    data = rx.recv(4096)
    req = IP(data)
    if ICMP not in req or req[ICMP].type != 8:
        continue
    last = req.dst.rsplit(".", 1)[1]
    if last == "2":
        reply(req); reply(req)
    elif last == "3":
        threading.Timer(0.3, reply, (req,)).start()
    elif last == "4":  # every second request it gets (not by sequence parity: rounds
        half[0] += 1    # sharing the socket interleave their sequence numbers)
        if half[0] % 2:
            reply(req)
    elif last == "5":
        reply(req, src="100.64.250.2")
    elif last == "6":
        reply(req, ident=(req[ICMP].id + 1) % 65536)
"""


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture(scope="module")
def scripted_peer() -> Iterator[dict[str, Any]]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, raw sockets)")
    tag = f"pe{os.getpid() % 100000}"
    near, far = f"{tag}a", f"{tag}b"
    _run("ip", "netns", "add", near)
    _run("ip", "netns", "add", far)
    proc = None
    try:
        _run("ip", "link", "add", f"{tag}x", "type", "veth", "peer", "name", f"{tag}y")
        _run("ip", "link", "set", f"{tag}x", "netns", near)
        _run("ip", "link", "set", f"{tag}y", "netns", far)
        _run("ip", "-n", near, "addr", "add", "100.64.250.1/24", "dev", f"{tag}x")
        for last in range(2, 7):
            _run("ip", "-n", far, "addr", "add", f"100.64.250.{last}/24", "dev", f"{tag}y")
        for ns, dev in ((near, f"{tag}x"), (far, f"{tag}y")):
            _run("ip", "-n", ns, "link", "set", dev, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "netns", "exec", far, "sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1")
        proc = subprocess.Popen(["ip", "netns", "exec", far, sys.executable, "-c", RESPONDER],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield {"ns": near, "binding": Binding("scratch", f"{tag}x", "100.64.250.1")}
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(5)
        subprocess.run(["ip", "netns", "del", near], check=False)
        subprocess.run(["ip", "netns", "del", far], check=False)


def run_in(ns: str, coro_fn: Any) -> Any:
    from tests.lab.netns import in_netns

    return in_netns(ns, lambda: asyncio.run(coro_fn()))


def test_duplicates_are_counted_once(scripted_peer: dict[str, Any]) -> None:
    async def go() -> Any:
        prober = IcmpProber(scripted_peer["binding"], socket.AF_INET)
        try:
            result = await prober.probe("100.64.250.2", 20, 0.01, 0.5)
            await asyncio.sleep(0.2)
            prober._on_readable()  # copies arriving after the round are not counted either
            return result, prober.received_total
        finally:
            prober.close()

    result, total = run_in(scripted_peer["ns"], go)
    assert all(r is not None for r in result.rtts_ms)
    assert total == 20
    assert result.duplicates >= 1  # the second copy of most replies lands within the round


def test_late_replies_are_not_counted(scripted_peer: dict[str, Any]) -> None:
    async def go() -> Any:
        prober = IcmpProber(scripted_peer["binding"], socket.AF_INET)
        try:
            # 40 probes 10 ms apart with a 100 ms timeout: replies come 300 ms after each
            # request, so early ones land while the round still runs (late), the rest after
            # it ended (unmatched).
            first = await prober.probe("100.64.250.3", 40, 0.01, 0.1)
            await asyncio.sleep(0.5)
            prober._on_readable()
            second = await prober.probe("100.64.250.2", 5, 0.01, 0.5)
            return first, second, prober.unmatched
        finally:
            prober.close()

    first, second, unmatched = run_in(scripted_peer["ns"], go)
    assert first.rtts_ms == [None] * 40
    assert first.late >= 5
    assert unmatched >= 5
    assert first.late + unmatched <= 40
    assert all(r is not None and r < 100 for r in second.rtts_ms)


def test_partial_loss_is_per_probe(scripted_peer: dict[str, Any]) -> None:
    async def go() -> Any:
        engine = ProbeEngine()
        try:
            return await engine.run_round(scripted_peer["binding"], "100.64.250.4", "icmp",
                                          20, 0.005, 0.3)
        finally:
            engine.close()

    result = run_in(scripted_peer["ns"], go)
    assert result.stats.received == 10 and result.stats.loss_pct == 50.0
    # the peer answers every second request: answered ones alternate, probe by probe
    answered = [r is not None for r in result.round.rtts_ms]
    assert answered.count(True) == 10
    assert all(answered[i] != answered[i + 1] for i in range(19))


@pytest.mark.parametrize("address", ["100.64.250.5", "100.64.250.6"])
def test_foreign_replies_never_match(scripted_peer: dict[str, Any], address: str) -> None:
    async def go() -> Any:
        engine = ProbeEngine()
        try:
            return await engine.run_round(scripted_peer["binding"], address, "icmp", 5, 0.01,
                                          0.3)
        finally:
            engine.close()

    result = run_in(scripted_peer["ns"], go)
    assert result.stats.received == 0


def test_many_targets_share_one_socket(scripted_peer: dict[str, Any]) -> None:
    async def go() -> Any:
        engine = ProbeEngine()
        try:
            return await asyncio.gather(*(
                engine.run_round(scripted_peer["binding"], a, "icmp", 20, 0.005, t)
                for a, t in (("100.64.250.2", 3.0), ("100.64.250.4", 3.0), ("100.64.250.3", 0.1))
            ))
        finally:
            engine.close()

    dup, half, late = run_in(scripted_peer["ns"], go)
    assert dup.stats.received == 20
    assert half.stats.received == 10
    assert late.stats.received == 0
