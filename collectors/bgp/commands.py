"""Operator commands on our announcements (`bgp.withdraw`, `bgp.announce`): the ExaBGP
API command for each, and ExaBGP's acks matched to them in order."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from agent.points import Point
from collectors.bgp.events import EventLog
from collectors.bgp.metrics import EVENT_OWN_MISSING
from collectors.bgp.prefixes import Prefix
from collectors.bgp.reader_stats import ReaderStats
from collectors.bgp.session import Session


class OperatorCommands:
    def __init__(self, log: EventLog, stats: ReaderStats, clock: Callable[[], float]) -> None:
        self.log = log
        self.stats = stats
        self.clock = clock
        self.pending: deque[tuple[str, str, str]] = deque()  # (action, carrier, prefix)

    def command_for(self, sessions: dict[str, Session], own: list[Prefix], action: str,
                    carrier: str, prefix_text: str) -> tuple[str, list[Point]]:
        """`bgp.withdraw` / `bgp.announce` of one of ours toward one carrier.

        Returns the ExaBGP API command to send (its ack is matched in order) and events.
        Raises ValueError for an unknown carrier or a prefix that is not ours.
        """
        session = sessions.get(carrier)
        if session is None:
            raise ValueError(f"unknown carrier {carrier!r}")
        prefix = Prefix.parse(prefix_text)
        if prefix not in own:
            raise ValueError(f"{prefix.text} is not in bgp.announce")
        now = self.clock()
        points: list[Point] = []
        if action == "withdraw":
            session.withdrawn_by_operator.add(prefix.text)
            command = f"neighbor {session.peer} withdraw route {prefix.text} next-hop self"
            if session.up:
                points.append(self.log.event(session, EVENT_OWN_MISSING, now,
                                             prefix=prefix.text,
                                             detail=session.announceable(prefix)))
        elif action == "announce":
            session.withdrawn_by_operator.discard(prefix.text)
            session.refused.discard(prefix.text)
            command = f"neighbor {session.peer} announce route {prefix.text} next-hop self"
        else:
            raise ValueError(f"unknown action {action!r}")
        self.pending.append((action, carrier, prefix.text))
        return command, points

    def ack(self, sessions: dict[str, Session], ok: bool) -> list[Point]:
        self.stats.acks += 1
        if not self.pending:
            return []
        action, carrier, prefix = self.pending.popleft()
        if ok:
            return []
        self.stats.ack_errors += 1
        session = sessions[carrier]
        if action == "announce":
            session.refused.add(prefix)
            if session.up:
                return [self.log.event(session, EVENT_OWN_MISSING, self.clock(), prefix=prefix,
                                       detail="ExaBGP refused to announce it")]
        return []
