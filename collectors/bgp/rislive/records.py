"""The view's records: feed counters (`status`, `bgp_feed`), one count's history over
time (lost/restored), and the counts of one prefix."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FeedStats:
    """Counters of what came in (the client adds the connection's own)."""

    messages: int = 0  # every frame received
    bad_messages: int = 0  # frames not in RIS Live's format (nothing of them applied)
    updates: int = 0  # ris_message UPDATEs applied
    announcements: int = 0  # prefixes announced in them that concern us
    withdrawals: int = 0  # prefixes withdrawn in them that concern us
    unrelated: int = 0  # prefixes in them outside our subscriptions (ignored)
    peer_states: int = 0
    pongs: int = 0
    ris_errors: int = 0
    subscribe_ok: int = 0
    last_bad: deque[str] = field(default_factory=lambda: deque(maxlen=5))
    last_errors: deque[str] = field(default_factory=lambda: deque(maxlen=5))

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, deque) else v) for k, v in self.__dict__.items()}


@dataclass
class Series:
    """One (prefix, via) count over time, for the lost/restored judgement."""

    history: deque[tuple[float, int]] = field(default_factory=deque)
    lost: bool = False
    lost_from: int = 0  # the usual level it fell from (frozen while lost)
    last: int = 0
    usual: int = 0


@dataclass
class Counts:
    any: int = 0
    carriers: dict[str, int] = field(default_factory=dict)
    other: int = 0
    foreign_origin: int = 0
    more_specific: int = 0
