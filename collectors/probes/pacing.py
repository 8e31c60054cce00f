"""When the probes of a round leave: one every `interval_s` from a start on a shared grid.

The collector starts every (carrier, method) round of every entry on the same tick, but
each round begins a little later than the one before (tens of rounds: a few ms). Started
on the next SEND_GRID_S boundary instead, rounds of one tick send their k-th probes at the
same instant: one wake-up of the event loop sends them all, and the answers through one
carrier come back together, so the loop wakes once per carrier rather than once per probe.
The agent's CPU is mostly such wake-ups (a thread switch costs tens of µs on a VM). RTTs
do not move: they are the kernel's stamps (icmp.py, connecting.connect_time_ms).
"""

from __future__ import annotations

import asyncio
import math

SEND_GRID_S = 0.025  # a round starts at most this much later


def grid_start(now_s: float, grid_s: float = SEND_GRID_S) -> float:
    """The first grid boundary at or after `now_s`."""
    return math.ceil(now_s / grid_s) * grid_s


def round_start() -> float:
    """The loop time (`loop.time()`) at which a round starting now sends its first probe."""
    return grid_start(asyncio.get_running_loop().time())
