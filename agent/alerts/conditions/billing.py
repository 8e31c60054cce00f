"""Conditions on the 95th-percentile billing: `commit` (month to date) and
`commit_projected` (from the billing collector's sample files)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from agent.alerts.conditions.base import (
    Condition,
    _mbps,
    _pct,
    _t,
)
from agent.alerts.engine import format_duration
from agent.points import Point


class Commit(Condition):
    name = "commit"
    measurements = ("billing",)

    def on_point(self, point: Point) -> None:
        carrier = point.tags.get("carrier")
        p95, committed = point.fields.get("p95_bps"), point.fields.get("committed_bps")
        if not carrier or not isinstance(p95, float | int) or not isinstance(
                committed, float | int) or committed <= 0:
            return
        if self.engine.clock() - _t(point) > 3600:  # a closed month's final figure
            return
        extra = {"carrier": carrier, "interface": point.tags.get("interface", "")}
        ratio = float(p95) / float(committed)
        threshold = 1.0 - self.p("hysteresis_pct") / 100 if self.active(extra) else 1.0
        self.set(extra, ratio > threshold,
                 f"{carrier}: month-to-date 95th percentile {_mbps(p95)} is above the commit "
                 f"of {_mbps(committed)} ({_pct(ratio)})",
                 f"This month's billable rate of {carrier} already exceeds what is "
                 "contracted: overage charges apply unless traffic moves to other carriers.",
                 value=float(p95))


def read_billing_rates(data_dir: Any, carrier: str, mode: str, now: float,
                       window_s: float) -> tuple[list[float], list[float], int]:
    """(this month's rates, the rates of the last window_s, 5-minute slots left this month)
    from the billing collector's sample files."""
    from collectors.links.billing import SAMPLE_PERIOD_S, BillingStore, _safe_name, month_of
    from collectors.links.rates import billing_rate

    store = BillingStore(data_dir / "billing" / _safe_name(carrier))
    month = month_of(now)
    samples = dict(store.samples(month))
    month_rates = [billing_rate(rx, tx, mode) for rx, tx in samples.values()]
    start = now - window_s
    if month_of(start) != month:
        samples.update(BillingStore(data_dir / "billing" / _safe_name(carrier))
                       .samples(month_of(start)))
    window_rates = [billing_rate(rx, tx, mode) for slot, (rx, tx) in sorted(samples.items())
                    if slot >= start]
    begin = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    end = (begin.replace(year=begin.year + 1, month=1) if begin.month == 12
           else begin.replace(month=begin.month + 1)).timestamp()
    left = max(0, int((end - now) // SAMPLE_PERIOD_S))
    return month_rates, window_rates, left


def p95(values: list[float]) -> float | None:
    """The billing collector's rule: sort, discard the top 5 %, the highest remaining."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[len(ordered) - 1 - len(ordered) * 5 // 100]


class CommitProjected(Condition):
    name = "commit_projected"
    measurements = ("billing",)

    def on_point(self, point: Point) -> None:
        carrier = point.tags.get("carrier")
        committed = point.fields.get("committed_bps")
        if not carrier or not isinstance(committed, float | int) or committed <= 0:
            return
        now = self.engine.clock()
        if now - _t(point) > 3600:
            return
        reader: Callable[..., tuple[list[float], list[float], int]] = (
            self.engine.billing_reader or self._read)
        month_rates, window_rates, left = reader(carrier, now, self.p("window"))
        if not window_rates:
            return
        repeated = [window_rates[i % len(window_rates)] for i in range(left)]
        projected = p95(month_rates + repeated)
        if projected is None:
            return
        extra = {"carrier": carrier, "interface": point.tags.get("interface", "")}
        ratio = projected / float(committed)
        threshold = 1.0 - self.p("hysteresis_pct") / 100 if self.active(extra) else 1.0
        self.set(extra, ratio > threshold,
                 f"{carrier}: projected p95 {_mbps(projected)} of {_mbps(committed)} committed "
                 f"({_pct(ratio)}) if the rest of the month looks like the last "
                 f"{format_duration(self.p('window'))}",
                 f"At this rate {carrier}'s 95th percentile ends the month above the commit; "
                 "move traffic to other carriers or raise the commit before it is billed.",
                 value=projected)

    def _read(self, carrier: str, now: float, window_s: float
              ) -> tuple[list[float], list[float], int]:
        return read_billing_rates(self.config.agent.data_dir, carrier,
                                  self.config.billing.rate, now, window_s)
