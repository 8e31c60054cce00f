"""A user-space delay line on a tun device (netem does not exist on these kernels).

Runs in the lab's transit namespace: policy routing sends every packet towards the
targets through tun `dl` (their replies go straight back); this process reads each packet
and writes it back after the delay of the carrier it came through (by source address), or
drops it with the carrier's loss probability. A packet to a carrier network would pass at
once. The delay counts from the packet's entry into the tun by the kernel's clock
(`ArrivalClock`), packets wait on a heap, and the last 0.3 ms before one is due is waited
out awake, so the process's own wake-ups do not add to the delay: on these virtual
machines they had added 0.4 ms to every RTT, and the replies' pass through the tun another
0.25 ms. What it still adds, against each packet's due time, is reported on SIGUSR1 (to
FILE.stats, as JSON: `Lateness`). TTL / hop limit is given back the one the extra pass
through the router costs, so traceroute sees the transit router once.

Config (JSON file, re-read on SIGHUP; after each load the text loaded is written to
FILE.loaded, so whoever changed it can wait for it instead of guessing):
  {"carriers": [{"net": "100.64.1.0/24", "net6": "2001:db8:1::/64", "delay_ms": 10,
                 "jitter_ms": 0, "loss_pct": 0}],
   "only_via": {"203.0.113.11": "100.64.1.0/24", "2001:db8:ffff::11": "2001:db8:1::/64"}}

Run: python delayline.py --tun dl --config FILE   (standalone: no project imports)
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import fcntl
import heapq
import ipaddress
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from typing import Any

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def ipv4_checksum(header: bytes) -> int:
    total = 0
    for i in range(0, len(header), 2):
        total += (header[i] << 8) + header[i + 1]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def give_back_hop(packet: bytes) -> bytes:
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 20 and packet[8] < 255:
        ihl = (packet[0] & 0x0F) * 4
        header = bytearray(packet[:ihl])
        header[8] += 1
        header[10:12] = b"\0\0"
        header[10:12] = struct.pack("!H", ipv4_checksum(bytes(header)))
        return bytes(header) + packet[ihl:]
    if version == 6 and len(packet) >= 40 and packet[7] < 255:
        return packet[:7] + bytes([packet[7] + 1]) + packet[8:]
    return packet


class Carrier:
    """Delay parameters of one carrier and its source networks (as raw address bytes)."""

    def __init__(self, c: dict[str, Any]) -> None:
        self.nets = [ipaddress.ip_network(c[key]) for key in ("net", "net6") if c.get(key)]
        self.delay_ms = float(c.get("delay_ms", 0))
        self.jitter_ms = float(c.get("jitter_ms", 0))
        self.loss_pct = float(c.get("loss_pct", 0))


class Rules:
    """Which carrier a packet came through, by its source address. Per packet this is a
    dict lookup on the address bytes masked to the carriers' prefix lengths (cheap
    enough for tens of thousands of packets per second)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.carriers = [Carrier(c) for c in config.get("carriers", [])]
        # (version, prefix length) -> {network address bytes: carrier}
        self.by_net: dict[tuple[int, int], dict[bytes, Carrier]] = {}
        for carrier in self.carriers:
            for net in carrier.nets:
                key = (net.version, net.prefixlen)
                self.by_net.setdefault(key, {})[net.network_address.packed] = carrier
        self.only_via: dict[bytes, Carrier | None] = {}
        for target, net_text in config.get("only_via", {}).items():
            net = ipaddress.ip_network(net_text)
            self.only_via[ipaddress.ip_address(target).packed] = next(
                (c for c in self.carriers if net in c.nets), None)

    def carrier_of(self, version: int, address: bytes) -> Carrier | None:
        for (v, length), table in self.by_net.items():
            if v != version:
                continue
            whole, rest = divmod(length, 8)
            key = address[:whole]
            if rest:
                key += bytes([address[whole] & (0xFF << (8 - rest)) & 0xFF])
            key += bytes(len(address) - len(key))
            carrier = table.get(key)
            if carrier is not None:
                return carrier
        return None

    def delay_s(self, packet: bytes) -> float | None:
        """Seconds to hold the packet, 0 to pass it at once, None to drop it."""
        version = packet[0] >> 4
        if version == 4 and len(packet) >= 20:
            src, dst = packet[12:16], packet[16:20]
        elif version == 6 and len(packet) >= 40:
            src, dst = packet[8:24], packet[24:40]
        else:
            return 0.0
        if self.carrier_of(version, dst) is not None:
            return 0.0  # a reply towards the agent
        carrier = self.carrier_of(version, src)
        if dst in self.only_via and (carrier is None or carrier is not self.only_via[dst]):
            return None  # this target is reachable through one carrier only
        if carrier is None:
            return 0.0
        delay_ms = carrier.delay_ms
        if carrier.loss_pct > 0 and random.random() * 100.0 < carrier.loss_pct:
            return None
        if carrier.jitter_ms > 0:
            delay_ms += random.uniform(-carrier.jitter_ms, carrier.jitter_ms)
        return max(0.0, delay_ms) / 1000.0


SO_TIMESTAMPNS = 35
SO_ATTACH_FILTER = 26
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
STAMP_SNAP_BYTES = 64
# the last stretch before a packet is due is waited out awake: a timer wake-up on this
# virtual machine came 0.1-0.2 ms late (median), a spin of 0.3 ms costs ~1 % of a core at
# the lab's probe rates
SPIN_S = 0.0003


class ArrivalClock:
    """When each packet read from the tun entered it, by the kernel's clock.

    The delay is counted from there, not from when this process got round to reading the
    packet: waking it took 0.25-0.35 ms (median) on these virtual machines, which the
    delay line used to add to every delay. A packet socket on the tun with a filter that
    keeps the first bytes of packets the kernel sends into it gets each one, stamped, in
    the same order as the tun's queue; a record that does not match the packet read
    (its packet was dropped by the tun's full queue) is skipped and counted."""

    def __init__(self, iface: str) -> None:
        import ctypes

        # protocol 0 until bound: no frame of another interface is queued before bind()
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        program = [  # classic BPF: ld pkttype; jeq OUTGOING; ret snap; ret 0
            (0x28, 0, 0, 0xFFFFF004), (0x15, 0, 1, PACKET_OUTGOING),
            (0x06, 0, 0, STAMP_SNAP_BYTES), (0x06, 0, 0, 0)]
        code = b"".join(struct.pack("HBBI", *insn) for insn in program)
        self._code = ctypes.create_string_buffer(code, len(code))
        fprog = struct.pack("HL", len(program), ctypes.addressof(self._code))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        self.sock.bind((iface, ETH_P_ALL))
        self._cmsg_bytes = socket.CMSG_SPACE(16)
        self.skipped = 0  # records whose packet never reached this process
        self.unstamped = 0  # packets held from when they were read

    def arrival(self, packet: bytes) -> float:
        """time.monotonic() of the packet's entry into the tun (of now when unknown)."""
        while True:
            try:
                data, ancdata, _flags, _addr = self.sock.recvmsg(STAMP_SNAP_BYTES,
                                                                 self._cmsg_bytes)
            except BlockingIOError:
                self.unstamped += 1
                return time.monotonic()
            if not packet.startswith(data):
                self.skipped += 1
                continue
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", value[:16])
                    return time.monotonic() - (time.time() - (sec + nsec / 1e9))
            self.unstamped += 1
            return time.monotonic()


class Lateness:
    """How late the held packets left, against their due time (arrival + delay), since
    the last report: what the delay line itself added, so a test that sees a slow RTT
    can tell this process from the rest of the machine."""

    def __init__(self) -> None:
        self.held = 0
        self.late_s: collections.deque[float] = collections.deque(maxlen=100_000)  # latest
        self.dropped = 0  # by the loss setting, or sent to a target through another carrier

    def report(self, clock: ArrivalClock) -> dict[str, Any]:
        late_ms = sorted(x * 1000.0 for x in self.late_s)

        def at(q: float) -> float | None:
            return round(late_ms[min(len(late_ms) - 1, int(len(late_ms) * q))], 3) \
                if late_ms else None

        report = {"held": self.held, "late_ms_median": at(0.5), "late_ms_p99": at(0.99),
                  "late_ms_max": at(1.0), "dropped": self.dropped,
                  "unstamped": clock.unstamped, "skipped": clock.skipped}
        self.late_s.clear()
        self.held = self.dropped = clock.unstamped = clock.skipped = 0
        return report


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tun", default="dl")
    parser.add_argument("--config", required=True)
    args = parser.parse_args()

    def load() -> Rules:
        with open(args.config) as fh:
            text = fh.read()
        rules = Rules(json.loads(text))
        # in effect from the next packet on (this loop is the only reader of the tun)
        with open(args.config + ".loaded.tmp", "w") as fh:
            fh.write(text)
        os.replace(args.config + ".loaded.tmp", args.config + ".loaded")
        return rules

    state = {"rules": load(), "reload": False, "report": False, "stop": False}

    def on_hup(_sig: int, _frm: object) -> None:
        state["reload"] = True

    def on_usr1(_sig: int, _frm: object) -> None:
        state["report"] = True

    def on_term(_sig: int, _frm: object) -> None:
        raise SystemExit(0)  # interrupts select() at once

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGUSR1, on_usr1)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:  # wake from select() on time, not up to 50 us late (the default timer slack)
        import ctypes

        ctypes.CDLL(None).prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK, 1 ns
    except (OSError, AttributeError):
        pass
    # The lab stands in for a network, which a busy agent host does not slow down: real-time
    # priority runs this process the moment a packet is due, ahead of every busy process
    # (nice alone left it 10+ ms late with three busy processes on two cores; the kernel
    # still keeps 5 % of each second for the others). Nice where real-time is not allowed.
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(20))
    except OSError:
        with contextlib.suppress(OSError):
            os.nice(-15)
    fd = open_tun(args.tun)
    # a signal wakes select() at once (its handler alone would not: select is retried)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    clock = ArrivalClock(args.tun)
    lateness = Lateness()
    heap: list[tuple[float, int, bytes]] = []
    seq = 0
    while not state["stop"]:
        if state["reload"]:
            state["reload"] = False
            try:
                state["rules"] = load()
            except (OSError, ValueError) as exc:
                print(f"delayline: reload failed: {exc}", file=sys.stderr)
        if state["report"]:
            state["report"] = False
            with open(args.config + ".stats.tmp", "w") as fh:
                json.dump(lateness.report(clock), fh)
            os.replace(args.config + ".stats.tmp", args.config + ".stats")
        rules: Rules = state["rules"]  # type: ignore[assignment]
        timeout = max(0.0, heap[0][0] - time.monotonic() - SPIN_S) if heap else 1.0
        try:
            readable, _, _ = select.select([fd, wake_r], [], [], timeout)
        except InterruptedError:
            continue
        if wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 512)
        if fd in readable:
            for _ in range(256):
                try:
                    packet = os.read(fd, 65535)
                except BlockingIOError:
                    break
                arrived = clock.arrival(packet)
                delay = rules.delay_s(packet)
                if delay is None:
                    lateness.dropped += 1
                    continue
                packet = give_back_hop(packet)
                if delay <= 0:
                    os.write(fd, packet)
                else:
                    seq += 1
                    heapq.heappush(heap, (arrived + delay, seq, packet))
        elif heap and heap[0][0] - time.monotonic() <= SPIN_S:
            due = heap[0][0]
            while time.monotonic() < due:
                pass
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            due, _, packet = heapq.heappop(heap)
            lateness.held += 1
            lateness.late_s.append(time.monotonic() - due)
            try:
                os.write(fd, packet)
            except OSError as exc:
                print(f"delayline: write: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
