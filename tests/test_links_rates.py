"""Pure arithmetic of collectors/links/rates.py: no I/O."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from collectors.links.rates import (
    WRAP_32,
    WRAP_64,
    billing_rate,
    counter_delta,
    percentile_95,
    rate_bps,
    utilization,
)


def test_rate_uses_real_elapsed_time() -> None:
    assert rate_bps(1_000, 1_000 + 125_000, 1.0) == 1_000_000.0
    assert rate_bps(1_000, 1_000 + 125_000, 2.5) == 400_000.0


def test_no_time_no_rate() -> None:
    assert rate_bps(0, 100, 0.0) is None
    assert rate_bps(0, 100, -1.0) is None


def test_cleared_counter_is_no_rate_not_a_spike_or_negative() -> None:
    assert counter_delta(5_000_000_000_000, 1_000, 10.0) is None
    assert rate_bps(5_000_000_000_000, 1_000, 10.0) is None
    # a small counter cleared: below the 32-bit upper half, never taken for a wrap
    assert counter_delta(1_000_000, 10, 10.0) is None


def test_64_bit_wrap() -> None:
    prev = WRAP_64 - 1_000
    assert counter_delta(prev, 500, 1.0) == 1_500
    assert rate_bps(prev, 500, 1.0) == 12_000.0


def test_32_bit_wrap_only_when_physically_possible() -> None:
    prev = WRAP_32 - 10_000
    assert counter_delta(prev, 20_000, 1.0, max_bps=1e9) == 30_000
    # 3 GB "wrapped" in one second on a 1 Gbit/s link cannot be: a reset
    assert counter_delta(WRAP_32 - 1, 3_000_000_000, 1.0, max_bps=1e9) is None


@given(prev=st.integers(0, WRAP_64 - 1), cur=st.integers(0, WRAP_64 - 1),
       elapsed=st.floats(0.01, 3600), speed=st.sampled_from([None, 1e9, 1e10, 1e11]))
def test_never_negative_never_faster_than_possible_after_a_decrease(
        prev: int, cur: int, elapsed: float, speed: float | None) -> None:
    rate = rate_bps(prev, cur, elapsed, speed)
    if rate is None:
        return
    assert rate >= 0
    if cur < prev:  # believed as a wrap: within the plausible bound
        assert rate <= (speed or 400e9) * 1.1 + 1e-6


@given(prev=st.integers(0, WRAP_64 - 1), cur=st.integers(0, WRAP_64 - 1),
       elapsed_s=st.floats(1e-3, 1e5), max_bps=st.one_of(st.none(), st.floats(1e3, 1e12)),
       committed_mbps=st.one_of(st.none(), st.floats(1.0, 1e6)),
       speed_mbps=st.one_of(st.none(), st.integers(1, 400_000)))
def test_rate_and_utilization_equal_the_collectors_former_inline_arithmetic(
        prev: int, cur: int, elapsed_s: float, max_bps: float | None,
        committed_mbps: float | None, speed_mbps: int | None) -> None:
    """The collectors call rate_bps/utilization; what they computed inline before must come
    out bit for bit (its fast path for a counter that did not decrease included)."""
    delta = counter_delta(prev, cur, elapsed_s, max_bps)
    bps = rate_bps(prev, cur, elapsed_s, max_bps)
    assert bps == (None if delta is None else delta * 8.0 / elapsed_s)
    if bps is None:
        return
    capacity_mbps = committed_mbps or speed_mbps
    former = bps / (capacity_mbps * 1e6) if capacity_mbps else None
    assert utilization(bps, committed_mbps, speed_mbps) == former


def test_utilization_prefers_committed_then_speed() -> None:
    assert utilization(50e6, 100, 1000) == 0.5
    assert utilization(50e6, None, 1000) == 0.05
    assert utilization(50e6, None, None) is None
    assert utilization(None, 100, 1000) is None


def test_p95_hand_computed() -> None:
    # 20 samples 1..20: discard 20*5//100 = 1 (the 20) → 19
    assert percentile_95([float(v) for v in range(1, 21)]) == 19.0
    # 100 samples shuffled: discard 5 (96..100) → 95
    values = [float((v * 37) % 100 + 1) for v in range(100)]
    assert sorted(values) == [float(v) for v in range(1, 101)]
    assert percentile_95(values) == 95.0
    # a 30-day month of 5-minute samples: 8640, discard 432, the 433rd highest
    month = [float(v) for v in range(8640)]
    assert percentile_95(month) == 8640 - 433
    # fewer than 20 samples: nothing discarded, the maximum
    assert percentile_95([3.0, 1.0, 2.0]) == 3.0
    assert percentile_95([]) is None


def test_billing_rate_modes() -> None:
    assert billing_rate(10.0, 20.0, "max") == 20.0
    assert billing_rate(10.0, 20.0, "rx") == 10.0
    assert billing_rate(10.0, 20.0, "tx") == 20.0
    assert not math.isnan(billing_rate(0.0, 0.0, "max"))
