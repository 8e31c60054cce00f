"""The agent host's own kernel time inside each TCP handshake, from the kernel's tracepoints.

A TCP probe reports the kernel's RTT sample of its handshake (`tcpi_rtt`): from the SYN's
stamp in connect() to the processing of the SYN-ACK. The uplink's tap sees only the wire
between the two. They differ by the host's own time on either side: tens of µs, unless the
hypervisor takes the vCPU away inside it. A loaded CI run had a probe 2.5 ms above the tap
while the lab's SCHED_FIFO delay line ran 18 ms late.

`HandshakeTrace(device, port)` measures that time per handshake, in a tracefs instance of
its own (so nothing else's tracing is touched), on the kernel's monotonic clock:

- send side: from the socket entering SYN_SENT (just before its port is chosen and its SYN
  stamped) to the first start of transmission on `device` after it;
- receive side: from the last arrival on `device` (netif_rx, where the tap stamps a frame)
  to the socket entering ESTABLISHED, where the kernel takes its sample.

A frame of something else on the uplink in between (a BGP keepalive) can only shorten
what is measured, never lengthen it. `host_ms` is None where tracefs cannot be used; the
parsing is pure (`handshake_host_ms`) and tested on its own.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

TRACEFS = Path("/sys/kernel/tracing")
INSTANCE_PREFIX = "egress-test-"
EVENTS = ("sock/inet_sock_set_state", "net/net_dev_start_xmit", "net/netif_rx")
_LINE = re.compile(r"\s(\d+\.\d+): (\w+): (.*)$")


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


def handshake_host_ms(trace_text: str, source: str) -> list[Handshake]:
    """Handshakes from `source` in the order their SYNs left, from the instance's `trace`
    (the filters already keep only the probe port and the uplink)."""
    opened: dict[int, float] = {}
    handshakes: list[tuple[int, float, float]] = []
    transmits: list[float] = []
    arrivals: list[float] = []
    for line in trace_text.splitlines():
        match = _LINE.search(line)
        if match is None:
            continue
        time_s, event, fields = float(match[1]), match[2], _fields(match[3])
        if event == "net_dev_start_xmit":
            transmits.append(time_s)
        elif event == "netif_rx":
            arrivals.append(time_s)
        elif event == "inet_sock_set_state" and fields.get("saddr") == source:
            sport = int(fields["sport"])
            if fields.get("newstate") == "TCP_SYN_SENT":
                opened[sport] = time_s
            elif fields.get("oldstate") == "TCP_SYN_SENT" and sport in opened:
                if fields.get("newstate") == "TCP_ESTABLISHED":
                    handshakes.append((sport, opened[sport], time_s))
                del opened[sport]
    result = []
    for sport, syn_sent_s, established_s in sorted(handshakes, key=lambda h: h[1]):
        sent = next((t for t in transmits if syn_sent_s <= t <= established_s), None)
        arrived = max((t for t in arrivals if syn_sent_s <= t <= established_s), default=None)
        send_ms = (sent - syn_sent_s) * 1000.0 if sent is not None else 0.0
        receive_ms = (established_s - arrived) * 1000.0 if arrived is not None else 0.0
        result.append(Handshake(sport, syn_sent_s, send_ms, receive_ms))
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


class HandshakeTrace:
    """`with HandshakeTrace(uplink, 443, source) as trace: ...` then `trace.handshakes`
    (None when tracefs is not there or not writable)."""

    def __init__(self, device: str, port: int, source: str) -> None:
        self.device = device
        self.port = port
        self.source = source
        self.handshakes: list[Handshake] | None = None
        self._path: Path | None = None

    def __enter__(self) -> HandshakeTrace:
        gc_instances()
        path = TRACEFS / "instances" / f"{INSTANCE_PREFIX}{os.getpid()}"
        try:
            path.mkdir()
        except OSError:
            return self
        self._path = path
        try:
            (path / "trace_clock").write_text("mono")
            filters = {EVENTS[0]: f"dport == {self.port}",
                       EVENTS[1]: f'name == "{self.device}"',
                       EVENTS[2]: f'name == "{self.device}"'}
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
