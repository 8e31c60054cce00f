"""ICMP engine edge cases against the scripted responder of `tests/lab/scripted_peer.py`
in a scratch namespace pair: per destination address, duplicates, late replies, every
second request lost, replies from another source and with a foreign identifier.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from collectors.probes.engine import ProbeEngine
from collectors.probes.icmp import IcmpProber
from tests.lab.scripted_peer import run_in

pytestmark = pytest.mark.lab


def test_duplicates_are_counted_once(scripted_peer: dict[str, Any]) -> None:
    async def go() -> Any:
        prober = IcmpProber(scripted_peer["binding"], socket.AF_INET)
        try:
            result = await prober.probe("100.64.250.2", 20, 0.01, 0.5)
            await asyncio.sleep(0.2)
            prober._on_readable()  # copies arriving after the round are not counted either
            return result, prober.received_total
        finally:
            prober.close()

    result, total = run_in(scripted_peer["ns"], go)
    assert all(r is not None for r in result.rtts_ms)
    assert total == 20
    assert result.duplicates >= 1  # the second copy of most replies lands within the round


def test_late_replies_are_not_counted(scripted_peer: dict[str, Any]) -> None:
    async def go() -> Any:
        prober = IcmpProber(scripted_peer["binding"], socket.AF_INET)
        try:
            # 40 probes 10 ms apart with a 100 ms timeout: replies come 300 ms after each
            # request, so early ones land while the round still runs (late), the rest after
            # it ended (unmatched).
            first = await prober.probe("100.64.250.3", 40, 0.01, 0.1)
            await asyncio.sleep(0.5)
            prober._on_readable()
            second = await prober.probe("100.64.250.2", 5, 0.01, 0.5)
            return first, second, prober.unmatched
        finally:
            prober.close()

    first, second, unmatched = run_in(scripted_peer["ns"], go)
    assert first.rtts_ms == [None] * 40
    assert first.late >= 5
    assert unmatched >= 5
    assert first.late + unmatched <= 40
    assert all(r is not None and r < 100 for r in second.rtts_ms)


def test_partial_loss_is_per_probe(scripted_peer: dict[str, Any]) -> None:
    async def go() -> Any:
        engine = ProbeEngine()
        try:
            return await engine.run_round(scripted_peer["binding"], "100.64.250.4", "icmp",
                                          20, 0.005, 0.3)
        finally:
            engine.close()

    result = run_in(scripted_peer["ns"], go)
    assert result.stats.received == 10 and result.stats.loss_pct == 50.0
    # the peer answers every second request: answered ones alternate, probe by probe
    answered = [r is not None for r in result.round.rtts_ms]
    assert answered.count(True) == 10
    assert all(answered[i] != answered[i + 1] for i in range(19))


@pytest.mark.parametrize("address", ["100.64.250.5", "100.64.250.6"])
def test_foreign_replies_never_match(scripted_peer: dict[str, Any], address: str) -> None:
    async def go() -> Any:
        engine = ProbeEngine()
        try:
            return await engine.run_round(scripted_peer["binding"], address, "icmp", 5, 0.01,
                                          0.3)
        finally:
            engine.close()

    result = run_in(scripted_peer["ns"], go)
    assert result.stats.received == 0


def test_many_targets_share_one_socket(scripted_peer: dict[str, Any]) -> None:
    async def go() -> Any:
        engine = ProbeEngine()
        try:
            return await asyncio.gather(*(
                engine.run_round(scripted_peer["binding"], a, "icmp", 20, 0.005, t)
                for a, t in (("100.64.250.2", 3.0), ("100.64.250.4", 3.0), ("100.64.250.3", 0.1))
            ))
        finally:
            engine.close()

    dup, half, late = run_in(scripted_peer["ns"], go)
    assert dup.stats.received == 20
    assert half.stats.received == 10
    assert late.stats.received == 0
