"""A scratch namespace pair whose far side answers ICMP echo as a script says, per
destination address (the kernel's own echo is off there):

- 100.64.250.2: every request answered twice (duplicates);
- 100.64.250.3: every request answered after 300 ms (late for a 100 ms timeout);
- 100.64.250.4: every second request it gets answered at once, the others not at all;
- 100.64.250.5: answered from another source address (must not count);
- 100.64.250.6: answered with a foreign identifier (must not count).

`scripted_peer()` yields {"ns": near namespace, "binding": a Binding on its veth}; the
fixture of the same name (tests/conftest.py) holds one per test module.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from collectors.probes.sockets import Binding

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


@contextlib.contextmanager
def scripted_peer() -> Iterator[dict[str, Any]]:
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


