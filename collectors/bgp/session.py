"""One BGP session with a carrier: its state, counters and RIB, and what the operator or
ExaBGP did to our announcements on it."""

from __future__ import annotations

from dataclasses import dataclass, field

from collectors.bgp.prefixes import Prefix
from collectors.bgp.rib import V4, V6, Attrs, CarrierRib


@dataclass
class Session:
    carrier: str
    peer: str
    peer_as: int
    local_address: str
    state: str = "idle"
    up: bool = False
    up_since_s: float = 0.0
    down_since_s: float = 0.0
    flaps: int = 0
    updates: int = 0
    withdrawals: int = 0
    last_reason: str = ""
    last_notification: str = ""
    converge_s: dict[int, float] = field(default_factory=dict)  # family → End-of-RIB delay
    rib: CarrierRib = field(default_factory=CarrierRib)
    withdrawn_by_operator: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)  # ExaBGP answered `error`
    watch_best: dict[int, tuple[int, Attrs] | None] = field(default_factory=dict)

    def announceable(self, prefix: Prefix) -> str:
        """'' when ExaBGP can send `prefix` on this session, else why not."""
        session_family = V6 if ":" in self.local_address else V4
        if prefix.family != session_family:
            names = {V4: "IPv4", V6: "IPv6"}
            return (f"{names[prefix.family]} prefix on an {names[session_family]} session: "
                    "no next hop to announce it with")
        if prefix.text in self.withdrawn_by_operator:
            return "withdrawn by operator (bgp.withdraw)"
        if prefix.text in self.refused:
            return "ExaBGP refused to announce it"
        return ""
