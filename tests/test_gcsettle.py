"""agent/gcsettle.py: what survived the start is frozen, and a reload thaws it."""

from __future__ import annotations

import asyncio
import gc

import psutil

from agent import gcsettle


def test_freeze_after_the_delay_then_thaw() -> None:
    gc.unfreeze()
    assert gcsettle.frozen_objects() == 0
    kept = [{"n": i} for i in range(5000)]  # long-lived objects of a started agent
    frozen = asyncio.run(gcsettle.freeze_when_settled(0.05))
    try:
        assert frozen >= len(kept) and gcsettle.frozen_objects() >= len(kept)
        assert all(not gc.is_finalized(obj) for obj in kept[:3])
    finally:
        gcsettle.thaw()
    assert gcsettle.frozen_objects() == 0


def test_a_cycle_dropped_after_the_thaw_is_collected() -> None:
    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # type: ignore[attr-defined]
    asyncio.run(gcsettle.freeze_when_settled(0))
    gcsettle.thaw()
    ids = {id(a), id(b)}
    del a, b
    gc.collect()
    assert not ids & {id(o) for o in gc.get_objects() if isinstance(o, Node)}


def test_free_pages_between_live_objects_go_back_to_the_system() -> None:
    def rss_bytes() -> int:
        return int(psutil.Process().memory_info().rss)

    blocks = [bytes(2048) for _ in range(20_000)]  # 40 MB from malloc (over pymalloc's 512)
    kept = blocks[::100]  # live objects all through the heap keep it from shrinking at the top
    del blocks
    before = rss_bytes()
    assert gcsettle.release_free_heap()
    assert before - rss_bytes() > 20_000_000
    assert len(kept) == 200
