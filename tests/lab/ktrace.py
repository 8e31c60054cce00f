"""The agent host's own kernel time inside each TCP handshake, from the kernel's tracepoints.

A TCP probe reports the kernel's RTT sample of its handshake (`tcpi_rtt`): from the SYN's
stamp in connect() to the processing of the SYN-ACK. The uplink's tap sees only the wire
between the two. They differ by the host's own time on either side: tens of µs, unless the
hypervisor takes the vCPU away inside it. A loaded CI run had a probe 2.5 ms above the tap
while the lab's SCHED_FIFO delay line ran 18 ms late.

`HandshakeTrace(device, port, source)` measures that time per handshake, in a tracefs
instance of its own (so nothing else's tracing is touched), on the kernel's monotonic
clock, following each packet by its buffer's address:

- send side: the socket enters SYN_SENT (just before its port is chosen and its SYN
  stamped); the next packet queued on `device` by the same CPU (still inside connect())
  is the SYN, and its start of transmission is where the tap stamps it;
- receive side: the socket enters ESTABLISHED while its CPU processes the SYN-ACK, the
  last packet that CPU took from `device`; the SYN-ACK's arrival on `device` (netif_rx)
  is where the tap stamps it. A loaded host can leave a batch of arrivals waiting for the
  CPU, so "the last arrival before" would be another packet: the address is followed.

A side whose packet was not traced adds nothing (the strict reading). tracefs is mounted
for the trace when nothing has mounted it (and unmounted after); `handshakes` is None
where it cannot be used; the parsing is pure (`handshake_host_ms`) and tested
on its own.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

TRACEFS = Path("/sys/kernel/tracing")
INSTANCE_PREFIX = "egress-test-"
EVENTS = ("sock/inet_sock_set_state", "net/net_dev_queue", "net/net_dev_start_xmit",
          "net/netif_rx", "net/netif_receive_skb")
_LINE = re.compile(r"\[(\d+)\]\s+\S+\s+(\d+\.\d+): (\w+): (.*)$")


@dataclass(frozen=True, slots=True)
class Handshake:
    """One traced handshake: the host's own time on the send and on the receive side."""

    sport: int
    syn_sent_s: float
    send_ms: float
    receive_ms: float

    @property
    def host_ms(self) -> float:
        return self.send_ms + self.receive_ms


def _fields(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split() if "=" in item)


@dataclass(slots=True)
class _Open:
    sport: int
    syn_sent_s: float
    sent_s: float | None = None
    arrived_s: float | None = None


def handshake_host_ms(trace_text: str, source: str) -> list[Handshake]:
    """Handshakes from `source` in the order their SYNs left, from the instance's `trace`
    (its filters keep only the probe port and the uplink's packets)."""
    opened: dict[int, _Open] = {}  # by local port: a refused probe's port is used again
    syn_on_cpu: dict[int, _Open] = {}  # SYN_SENT seen, its SYN not yet queued
    syn_by_skb: dict[str, _Open] = {}  # SYN queued, not yet transmitted
    arrived_by_skb: dict[str, float] = {}
    taken_by_cpu: dict[int, str] = {}  # the packet each CPU took from the device last
    done: list[tuple[_Open, float]] = []  # with the time it was ESTABLISHED
    for line in trace_text.splitlines():
        match = _LINE.search(line)
        if match is None:
            continue
        cpu, time_s, event = int(match[1]), float(match[2]), match[3]
        fields = _fields(match[4])
        skb = fields.get("skbaddr", "")
        if event == "net_dev_queue":
            if cpu in syn_on_cpu:
                syn_by_skb[skb] = syn_on_cpu.pop(cpu)
        elif event == "net_dev_start_xmit":
            if skb in syn_by_skb:
                syn_by_skb.pop(skb).sent_s = time_s
        elif event == "netif_rx":
            arrived_by_skb[skb] = time_s
        elif event == "netif_receive_skb":
            taken_by_cpu[cpu] = skb
        elif event == "inet_sock_set_state" and fields.get("saddr") == source:
            sport = int(fields["sport"])
            if fields.get("newstate") == "TCP_SYN_SENT":
                opened[sport] = syn_on_cpu[cpu] = _Open(sport, time_s)
            elif fields.get("oldstate") == "TCP_SYN_SENT" and sport in opened:
                handshake = opened.pop(sport)
                if fields.get("newstate") == "TCP_ESTABLISHED":
                    handshake.arrived_s = arrived_by_skb.get(taken_by_cpu.get(cpu, ""))
                    done.append((handshake, time_s))
    result = []
    for handshake, established_s in sorted(done, key=lambda d: d[0].syn_sent_s):
        sent, arrived = handshake.sent_s, handshake.arrived_s
        send_ms = (sent - handshake.syn_sent_s) * 1000.0 if sent is not None else 0.0
        receive_ms = (established_s - arrived) * 1000.0 \
            if arrived is not None and sent is not None and sent <= arrived else 0.0
        result.append(Handshake(handshake.sport, handshake.syn_sent_s, send_ms, receive_ms))
    return result


def _remove_instance(path: Path) -> None:
    for event in EVENTS:
        with contextlib.suppress(OSError):
            (path / "events" / event / "enable").write_text("0")
    with contextlib.suppress(OSError):
        path.rmdir()


def gc_instances() -> None:
    """Removes the instances of test processes that are gone (killed before cleaning up)."""
    with contextlib.suppress(OSError):
        for path in (TRACEFS / "instances").glob(INSTANCE_PREFIX + "*"):
            pid = path.name.removeprefix(INSTANCE_PREFIX)
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                _remove_instance(path)


def mount_tracefs() -> bool:
    """Mounts tracefs where it is looked for, if it is not there yet (a new machine, a CI
    run: nothing mounts it at boot, and without it every handshake was read strictly);
    True when this call mounted it, so the caller unmounts it again."""
    if (TRACEFS / "instances").is_dir():
        return False
    done = subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)],
                          capture_output=True, check=False)
    return done.returncode == 0


class HandshakeTrace:
    """`with HandshakeTrace(uplink, 443, source) as trace: ...` then `trace.handshakes`
    (None when tracefs cannot be mounted or written: not root, or a kernel without it)."""

    def __init__(self, device: str, port: int, source: str) -> None:
        self.device = device
        self.port = port
        self.source = source
        self.handshakes: list[Handshake] | None = None
        self._path: Path | None = None
        self._mounted = False

    def __enter__(self) -> HandshakeTrace:
        self._mounted = mount_tracefs()
        gc_instances()
        path = TRACEFS / "instances" / f"{INSTANCE_PREFIX}{os.getpid()}"
        try:
            path.mkdir()
        except OSError:
            self._close()
            return self
        self._path = path
        try:
            (path / "trace_clock").write_text("mono")
            filters = {event: f'name == "{self.device}"' for event in EVENTS[1:]}
            filters[EVENTS[0]] = f"dport == {self.port}"
            for event, expression in filters.items():
                (path / "events" / event / "filter").write_text(expression)
                (path / "events" / event / "enable").write_text("1")
        except OSError:
            self._close()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._path is None:
            return
        try:
            text = (self._path / "trace").read_text()
        finally:
            self._close()
        self.handshakes = handshake_host_ms(text, self.source)

    def _close(self) -> None:
        if self._path is not None:
            _remove_instance(self._path)
            self._path = None
        if self._mounted:
            subprocess.run(["umount", str(TRACEFS)], capture_output=True, check=False)
            self._mounted = False
