"""Rounds that start together send their k-th probes together (collectors/probes/pacing.py):
the pure grid, paced rounds (TCP, DNS, HTTP) and the ICMP prober on a real raw socket."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collectors.probes.icmp import IcmpProber
from collectors.probes.methods import paced_round
from collectors.probes.pacing import SEND_GRID_S, grid_start
from tests.lab.scripted_peer import run_in

INTERVAL_S = 0.05
OFFSET_S = 0.01  # the second round starts this much later, in the same grid step
LATE_S = 0.01  # how late a loaded host may run a timer


def test_grid_start_is_the_next_boundary() -> None:
    assert grid_start(1.0, 0.025) == pytest.approx(1.0)
    assert grid_start(1.001, 0.025) == pytest.approx(1.025)
    assert grid_start(1.024, 0.025) == pytest.approx(1.025)


@given(st.floats(min_value=0.0, max_value=1e7, allow_nan=False))
def test_grid_start_is_never_earlier_and_at_most_one_step_later(now_s: float) -> None:
    start = grid_start(now_s)
    assert now_s <= start < now_s + SEND_GRID_S + 1e-6


async def _two_rounds_started_apart(run_round: Any) -> tuple[list[float], list[float]]:
    """Two rounds, the second started OFFSET_S after the first, both within one grid step;
    returns the loop times at which each sent its probes."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(grid_start(loop.time()) + 0.001 - loop.time())  # just past a boundary
    first: list[float] = []
    second: list[float] = []
    one = asyncio.ensure_future(run_round(first))
    await asyncio.sleep(OFFSET_S)
    await asyncio.gather(one, run_round(second))
    return first, second


def _assert_sent_together(first: list[float], second: list[float]) -> None:
    assert len(first) == len(second) == 4
    start = first[0]
    late_by_s = start - grid_start(start - LATE_S)  # the loop may wake a little late
    assert 0 <= late_by_s < LATE_S, first  # the first probe on a boundary
    for index, (a, b) in enumerate(zip(first, second, strict=True)):
        # Together (one loop iteration), not OFFSET_S apart; half of it is left for a host
        # that pauses the process between two callbacks.
        assert abs(a - b) < OFFSET_S / 2, (index, first, second)
        assert abs(a - (start + index * INTERVAL_S)) < LATE_S


def test_paced_rounds_started_apart_send_together() -> None:
    async def run_round(sent: list[float]) -> None:
        async def one(_timeout_s: float) -> float:
            sent.append(asyncio.get_running_loop().time())
            return 1.0

        await paced_round(4, INTERVAL_S, 1.0, one)

    _assert_sent_together(*asyncio.run(_two_rounds_started_apart(run_round)))


def test_icmp_rounds_started_apart_send_together(
        scripted_peer: dict[str, Any]) -> None:
    async def go() -> tuple[list[float], list[float]]:
        prober = IcmpProber(scripted_peer["binding"], socket.AF_INET)
        send = prober._send
        sent_by_address: dict[str, list[float]] = {"100.64.250.2": [], "100.64.250.4": []}

        async def timed_send(packet: bytes, destination: tuple[Any, ...], session: Any) -> bool:
            sent_by_address[str(destination[0])].append(asyncio.get_running_loop().time())
            return await send(packet, destination, session)

        prober._send = timed_send  # type: ignore[method-assign]
        addresses = iter(sent_by_address)

        async def run_round(sent: list[float]) -> None:
            address = next(addresses)
            await prober.probe(address, 4, INTERVAL_S, 0.2)
            sent.extend(sent_by_address[address])

        try:
            return await _two_rounds_started_apart(run_round)
        finally:
            prober.close()

    _assert_sent_together(*run_in(scripted_peer["ns"], go))
