"""Access quality per (carrier, target): a status, a score, and the best carrier.

Pure functions plus a small tracker that remembers the last status and best carrier so a
change can be logged once. Thresholds come from `[quality]` (docs/configuration.md).

Status:
- `down`      no reply at all, or loss_pct >= loss_down_pct;
- `degraded`  loss_pct >= loss_degraded_pct, or median RTT > rtt_degraded_ms,
              or jitter > jitter_degraded_ms;
- `ok`        otherwise.

Score (0-100, higher is better): 100 minus penalties that each reach 25 at their degraded
threshold and grow linearly beyond it (median RTT, loss, jitter), clamped to [0, 100];
a `down` carrier scores 0. So a carrier at every threshold scores 25, and one that is
twice over the loss threshold already loses half its score: loss hurts users most.

Best: the carrier with the highest score among those not `down`; ties go to the lower
median RTT, then to the name, so the choice is deterministic. No carrier is best when all
are down.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agent.points import Point
from collectors.probes.config import QualityConfig
from collectors.probes.rounds import ProbeResult
from collectors.probes.stats import RttStats

log = logging.getLogger(__name__)

STATUS_OK = "ok"
STATUS_DEGRADED = "degraded"
STATUS_DOWN = "down"

_PENALTY_AT_THRESHOLD = 25.0


@dataclass(frozen=True, slots=True)
class Quality:
    carrier: str
    target: str
    status: str
    score: float
    best: bool


def status_of(stats: RttStats, thresholds: QualityConfig) -> str:
    loss_pct = stats.loss_pct
    if loss_pct is None or stats.received == 0 or loss_pct >= thresholds.loss_down_pct:
        return STATUS_DOWN
    if loss_pct >= thresholds.loss_degraded_pct:
        return STATUS_DEGRADED
    if stats.rtt_median_ms is not None and stats.rtt_median_ms > thresholds.rtt_degraded_ms:
        return STATUS_DEGRADED
    if stats.jitter_ms is not None and stats.jitter_ms > thresholds.jitter_degraded_ms:
        return STATUS_DEGRADED
    return STATUS_OK


def score_of(stats: RttStats, thresholds: QualityConfig) -> float:
    if stats.loss_pct is None or status_of(stats, thresholds) == STATUS_DOWN:
        return 0.0
    penalty = _PENALTY_AT_THRESHOLD * stats.loss_pct / thresholds.loss_degraded_pct
    if stats.rtt_median_ms is not None:
        penalty += _PENALTY_AT_THRESHOLD * stats.rtt_median_ms / thresholds.rtt_degraded_ms
    if stats.jitter_ms is not None:
        penalty += _PENALTY_AT_THRESHOLD * stats.jitter_ms / thresholds.jitter_degraded_ms
    return round(min(100.0, max(0.0, 100.0 - penalty)), 3)


def assess(
    target: str, per_carrier: Mapping[str, RttStats], thresholds: QualityConfig
) -> list[Quality]:
    """Quality of each carrier for one target, with `best` marked on at most one."""
    rated = []
    for carrier, stats in per_carrier.items():
        rated.append((carrier, stats, status_of(stats, thresholds), score_of(stats, thresholds)))
    candidates = [r for r in rated if r[2] != STATUS_DOWN]
    best_name = None
    if candidates:
        best_name = min(
            candidates,
            key=lambda r: (
                -r[3],
                r[1].rtt_median_ms if r[1].rtt_median_ms is not None else float("inf"),
                r[0],
            ),
        )[0]
    return [
        Quality(carrier, target, status, score, carrier == best_name)
        for carrier, _stats, status, score in rated
    ]


def quality_method(methods: tuple[str, ...]) -> str:
    """The method a probe entry's quality is judged on: `icmp` when it has it, else its
    first."""
    return "icmp" if "icmp" in methods else methods[0]


def judged_stats(results: Iterable[ProbeResult], methods: tuple[str, ...]) -> dict[str, RttStats]:
    """Per carrier, the statistics quality is judged on. A carrier none of whose probes
    left (the agent's own failure) was not measured: it gets no quality this round rather
    than a "down" the network did not cause."""
    wanted = quality_method(methods)
    return {r.carrier: r.stats for r in results if r.method == wanted and r.stats.sent > 0}


def quality_point(quality: Quality, time_ns: int = 0) -> Point:
    """The `quality` point (docs/metrics.md); time 0: stamped by the scheduler's tick."""
    return Point(
        "quality",
        {"carrier": quality.carrier, "target": quality.target},
        {"status": quality.status, "score": quality.score, "best": quality.best},
        time_ns,
    )


def best_carrier(qualities: list[Quality]) -> str | None:
    return next((q.carrier for q in qualities if q.best), None)


class QualityTracker:
    """Remembers status per (carrier, target) and best per target; logs each change once."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._status: dict[tuple[str, str], str] = {}
        self._best: dict[str, str | None] = {}
        self._log = logger or log

    def update(self, target: str, qualities: list[Quality]) -> list[str]:
        """Record one round; returns the change messages (also logged at WARNING/INFO)."""
        messages = []
        for q in qualities:
            key = (q.carrier, target)
            previous = self._status.get(key)
            if previous is not None and previous != q.status:
                message = (
                    f"quality of carrier {q.carrier} to {target}: {previous} -> {q.status}"
                    f" (score {q.score:g})"
                )
                messages.append(message)
                level = logging.INFO if q.status == STATUS_OK else logging.WARNING
                self._log.log(level, message)
            self._status[key] = q.status
        best = best_carrier(qualities)
        if target in self._best and self._best[target] != best:
            message = (
                f"best carrier to {target}: {self._best[target] or 'none'} -> {best or 'none'}"
            )
            messages.append(message)
            self._log.info(message)
        self._best[target] = best
        return messages
