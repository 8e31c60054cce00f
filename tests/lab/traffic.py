"""A paced UDP generator: a known rate through one uplink of the lab.

Rates are on-the-wire bits (Ethernet + IP + UDP + payload), what interface counters see.
Pacing is by byte credit against a monotonic clock, checked every ~0.5 ms, so the mean
rate is exact over any window longer than a few milliseconds.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

WIRE_OVERHEAD_BYTES = 14 + 20 + 8  # Ethernet header + IPv4 + UDP (veth counts no FCS)


@dataclass
class TrafficResult:
    asked_mbps: float
    seconds: float  # between the two counter reads
    sent_bytes: int  # on the wire, by the generator
    carrier_bytes: int  # delta of the carrier-side counter
    packets: int

    @property
    def mbps(self) -> float:
        """Rate measured on the carrier side."""
        return self.carrier_bytes * 8 / self.seconds / 1e6 if self.seconds > 0 else 0.0

    @property
    def sent_mbps(self) -> float:
        return self.sent_bytes * 8 / self.seconds / 1e6 if self.seconds > 0 else 0.0


class TrafficGenerator:
    """Sends UDP from `sock` (already bound, in the right namespace) to `dest` at `mbps`."""

    def __init__(self, make_socket: Callable[[], socket.socket], dest: tuple[str, int],
                 mbps: float, payload_bytes: int = 1400) -> None:
        self.sock = make_socket()
        self.dest = dest
        self.mbps = mbps
        self.payload = b"\x00" * payload_bytes
        self.wire_bytes = payload_bytes + WIRE_OVERHEAD_BYTES
        self.sent_bytes = 0
        self.packets = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self, seconds: float | None) -> None:
        rate_bps = self.mbps * 1e6 / 8  # bytes per second
        start = time.monotonic()
        end = start + seconds if seconds is not None else float("inf")
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= end:
                break
            due = int((now - start) * rate_bps)
            while self.sent_bytes + self.wire_bytes <= due:
                try:
                    self.sock.sendto(self.payload, self.dest)
                except OSError:
                    self.errors += 1
                    break
                self.sent_bytes += self.wire_bytes
                self.packets += 1
            time.sleep(0.0005)

    def start(self, seconds: float | None = None) -> None:
        self._thread = threading.Thread(target=self._run, args=(seconds,), daemon=True,
                                        name="lab-traffic")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.join()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.sock.close()
