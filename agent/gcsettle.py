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

Then the C heap's free pages go back to the system (glibc's `malloc_trim`): the start's
temporaries (imports, config validation, the first dumps) are freed by then but their
pages stay resident between the live objects, about 1 MB of the agent's RSS.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc

SETTLE_AFTER_FIRST_POLL_S = 5.0


async def freeze_when_settled(delay_s: float) -> int:
    """After `delay_s`: collect, then freeze; returns how many objects are frozen."""
    await asyncio.sleep(delay_s)
    gc.collect()
    gc.freeze()
    release_free_heap()
    return gc.get_freeze_count()


def release_free_heap() -> bool:
    """Return the free pages of the C heap to the system; False where the C library has
    no `malloc_trim` (not glibc) or nothing was returned."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    return bool(trim(0))


def thaw() -> None:
    gc.unfreeze()


def frozen_objects() -> int:
    return gc.get_freeze_count()
