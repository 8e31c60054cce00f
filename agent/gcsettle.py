"""Keeping the garbage collector's full passes off the agent's long-lived objects.

Once started, the agent holds tens of thousands of objects that live as long as it does:
modules, the config models, caches of links and routes. Every full (oldest-generation)
pass of the cyclic garbage collector walks all of them again, and at 5,000 interfaces those
passes averaged 6-7 ms of a 1 s poll's ~30 ms (collectors/links/netlink.py). A short
while after the start, when the collectors have made their first collection,
`gc.collect()` then `gc.freeze()` moves what survived to the permanent generation, which
the collector never walks. They are still freed by reference counting when dropped; only
cycles among them would stay, so a reload thaws first (what the old config's collectors
leave is collected as usual) and freezes again once the new ones have settled.
"""

from __future__ import annotations

import asyncio
import gc

SETTLE_AFTER_FIRST_POLL_S = 5.0


async def freeze_when_settled(delay_s: float) -> int:
    """After `delay_s`: collect, then freeze; returns how many objects are frozen."""
    await asyncio.sleep(delay_s)
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def thaw() -> None:
    gc.unfreeze()


def frozen_objects() -> int:
    return gc.get_freeze_count()
