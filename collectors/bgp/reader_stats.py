"""Counters of what was read from ExaBGP's stream (`status` → `bgp.reader`): nothing
malformed is dropped without being counted here."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ReaderStats:
    lines: int = 0
    bad_lines: int = 0
    bad_prefixes: int = 0
    unknown_family: int = 0
    unknown_peer: int = 0
    acks: int = 0
    ack_errors: int = 0
    last_bad: deque[str] = field(default_factory=lambda: deque(maxlen=5))

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "bad_lines": self.bad_lines,
            "bad_prefixes": self.bad_prefixes,
            "unknown_family": self.unknown_family,
            "unknown_peer": self.unknown_peer,
            "acks": self.acks,
            "ack_errors": self.ack_errors,
            "last_bad": list(self.last_bad),
        }
