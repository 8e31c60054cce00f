"""RTT statistics of one probe round: pure arithmetic, no I/O.

A round is the list of outcomes of the probes sent for one (carrier, target, method) in one
interval, in send order: an RTT in milliseconds, or None for a probe that got no valid reply
in time. Order matters for jitter (RFC 3550 style: consecutive replies).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class RttStats:
    """Fields of the `probe` measurement (docs/metrics.md); RTT ones are None if none came back."""

    sent: int
    received: int
    loss_pct: float | None  # None when no probe left: nothing was measured
    rtt_min_ms: float | None
    rtt_avg_ms: float | None
    rtt_median_ms: float | None
    rtt_p95_ms: float | None
    rtt_max_ms: float | None
    jitter_ms: float | None
    stddev_ms: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        # by hand: dataclasses.asdict deep-copies field by field, 3 % of the event loop's
        # time in a production-like profile (one call per probe round)
        return {name: getattr(self, name) for name in _RTT_STATS_FIELDS}


_RTT_STATS_FIELDS = tuple(f.name for f in fields(RttStats))


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default, 'type 7').

    `sorted_values` must be sorted ascending and non-empty; `fraction` in [0, 1].
    """
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be within [0, 1], got {fraction}")
    position = (len(sorted_values) - 1) * fraction
    low = math.floor(position)
    high = math.ceil(position)
    if low == high:
        return float(sorted_values[low])
    weight = position - low
    return float(sorted_values[low] * (1.0 - weight) + sorted_values[high] * weight)


def jitter(rtts_ms: Sequence[float]) -> float | None:
    """Mean absolute difference of consecutive RTTs (losses skipped); None below two."""
    if len(rtts_ms) < 2:
        return None
    total = 0.0
    for previous, current in itertools.pairwise(rtts_ms):
        total += abs(current - previous)
    return total / (len(rtts_ms) - 1)


def sample_stddev(values: Sequence[float]) -> float | None:
    """Sample standard deviation (n - 1); None below two values."""
    n = len(values)
    if n < 2:
        return None
    mean = math.fsum(values) / n
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def compute_stats(outcomes: Sequence[float | None]) -> RttStats:
    """Statistics of one round; `outcomes` holds one entry per probe sent."""
    rtts = [r for r in outcomes if r is not None]
    sent = len(outcomes)
    received = len(rtts)
    loss_pct = 100.0 * (sent - received) / sent if sent else None
    if not rtts:
        return RttStats(sent, received, loss_pct, None, None, None, None, None, None, None)
    ordered = sorted(rtts)
    return RttStats(
        sent=sent,
        received=received,
        loss_pct=loss_pct,
        rtt_min_ms=ordered[0],
        rtt_avg_ms=math.fsum(rtts) / received,
        rtt_median_ms=percentile(ordered, 0.5),
        rtt_p95_ms=percentile(ordered, 0.95),
        rtt_max_ms=ordered[-1],
        jitter_ms=jitter(rtts),
        stddev_ms=sample_stddev(rtts),
    )
