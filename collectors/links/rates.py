"""Pure arithmetic of the links collector: counter deltas, rates, utilization, 95th percentile.

No I/O here; everything is tested with plain numbers (tests/test_links_rates.py).
"""

from __future__ import annotations

from collections.abc import Sequence

WRAP_32 = 1 << 32
WRAP_64 = 1 << 64
# Without a known link speed, a wrapped delta is believed only up to this rate.
DEFAULT_MAX_BPS = 400e9


def counter_delta(prev: int, cur: int, elapsed_s: float,
                  max_bps: float | None = None) -> int | None:
    """Bytes counted between two readings of one counter of the same interface.

    cur >= prev: the difference. cur < prev: either the counter wrapped (64-bit, or 32-bit
    for drivers that still keep 32-bit counters) or it was cleared. A wrap is believed only
    when the wrapped delta is physically possible at `max_bps` (the link speed, else
    400 Gbit/s) and, for 32 bits, the previous value was in the upper half of the range;
    anything else is a reset and gives None: no spike, never a negative rate.
    """
    if cur >= prev:
        return cur - prev
    limit_bytes = (max_bps or DEFAULT_MAX_BPS) / 8.0 * max(elapsed_s, 0.0) * 1.1
    if prev >= WRAP_32 // 2 and prev < WRAP_32 and cur < WRAP_32:
        wrapped = cur + WRAP_32 - prev
        if wrapped <= limit_bytes:
            return wrapped
    if prev >= WRAP_64 // 2:
        wrapped = cur + WRAP_64 - prev
        if wrapped <= limit_bytes:
            return wrapped
    return None


def rate_bps(prev_bytes: int, cur_bytes: int, elapsed_s: float,
             max_bps: float | None = None) -> float | None:
    """Bits per second between two readings over the real elapsed time; None on a reset
    or when no time passed."""
    if elapsed_s <= 0:
        return None
    if cur_bytes >= prev_bytes:  # the usual case, without a call (5,000 links a poll)
        return (cur_bytes - prev_bytes) * 8.0 / elapsed_s
    delta = counter_delta(prev_bytes, cur_bytes, elapsed_s, max_bps)
    if delta is None:
        return None
    return delta * 8.0 / elapsed_s


def utilization(bps: float | None, committed_mbps: float | None,
                speed_mbps: float | None) -> float | None:
    """Fraction of the committed bandwidth, else of the link speed; None if neither known."""
    if bps is None:
        return None
    capacity_mbps = committed_mbps or speed_mbps
    if not capacity_mbps or capacity_mbps <= 0:
        return None
    return bps / (capacity_mbps * 1e6)


def percentile_95(samples: Sequence[float]) -> float | None:
    """Burstable-billing 95th percentile: sort, discard the top 5 % (rounded down), the
    highest remaining. 8,640 five-minute samples (30 days) discard the 432 highest and
    return the 433rd highest. None without samples."""
    n = len(samples)
    if n == 0:
        return None
    ordered = sorted(samples)
    discard = n * 5 // 100
    return float(ordered[n - 1 - discard])


def billing_rate(rx_bps: float, tx_bps: float, mode: str) -> float:
    """The rate a five-minute sample is billed at: max of rx and tx (default), rx or tx."""
    if mode == "rx":
        return rx_bps
    if mode == "tx":
        return tx_bps
    return max(rx_bps, tx_bps)
