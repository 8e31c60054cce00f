"""Conditions on the probes' access quality: quality bad, loss per carrier, latency
shift against the carrier's own baseline."""

from __future__ import annotations

import collections
import statistics
from typing import Any

from agent.alerts.conditions.base import (
    Condition,
    _t,
)
from agent.alerts.engine import AlertEngine, format_duration
from agent.points import Point


class QualityBad(Condition):
    name = "quality_bad"
    measurements = ("quality",)

    def __init__(self, engine: AlertEngine, config: Any) -> None:
        super().__init__(engine, config)
        self.runs: dict[tuple[str, str], list[int]] = {}  # [bad in a row, good in a row]

    def on_point(self, point: Point) -> None:
        status = point.fields.get("status")
        if not isinstance(status, str):
            return
        carrier, target = point.tags.get("carrier", ""), point.tags.get("target", "")
        bad = status == "down" if self.p("status") == "down" else status in ("degraded", "down")
        runs = self.runs.setdefault((carrier, target), [0, 0])
        if bad:
            runs[0] += 1
            runs[1] = 0
        else:
            runs[1] += 1
            runs[0] = 0
        extra = {"carrier": carrier, "target": target}
        if self.active(extra):
            active = runs[1] < self.p("clear_rounds")
        else:
            active = runs[0] >= self.p("rounds")
        self.set(extra, active,
                 f"{target} through {carrier}: quality {status} for {runs[0]} rounds "
                 f"(score {point.fields.get('score', '-')})",
                 f"Users reaching {target} through {carrier} see loss or delay above the "
                 "[quality] thresholds.")


class CarrierLoss(Condition):
    name = "carrier_loss"
    measurements = ("probe",)
    MIN_SAMPLES = 3

    def __init__(self, engine: AlertEngine, config: Any) -> None:
        super().__init__(engine, config)
        self.samples: dict[tuple[str, str], dict[str, collections.deque[tuple[float, float]]]] = {}

    def on_point(self, point: Point) -> None:
        loss = point.fields.get("loss_pct")
        if not isinstance(loss, float | int) or isinstance(loss, bool):
            return
        target, method = point.tags.get("target", ""), point.tags.get("method", "")
        carrier = point.tags.get("carrier", "")
        now = _t(point)
        window = self.p("window")
        per_carrier = self.samples.setdefault((target, method), {})
        per_carrier.setdefault(carrier, collections.deque()).append((now, float(loss)))
        means: dict[str, float] = {}
        for name, history in per_carrier.items():
            while history and history[0][0] <= now - window:
                history.popleft()
            if len(history) >= self.MIN_SAMPLES:
                means[name] = sum(v for _, v in history) / len(history)
        for name in per_carrier:
            others = [m for other, m in means.items() if other != name]
            extra = {"carrier": name, "target": target, "method": method}
            if name not in means or not others:
                if name not in means:
                    self.set(extra, False)
                continue
            best = min(others)
            diff = means[name] - best
            threshold = self.p("diff_pp")
            if self.active(extra):
                threshold -= self.p("hysteresis_pp")
            self.set(extra, diff >= threshold,
                     f"{target} ({method}) through {name}: loss {means[name]:.1f} % over "
                     f"{format_duration(window)}, {diff:.1f} points worse than the best other "
                     f"carrier ({best:.1f} %)",
                     f"{name} loses packets to {target} that other carriers deliver: a "
                     "problem in or behind that carrier, not at the target.",
                     value=diff)


class LatencyShift(Condition):
    name = "latency_shift"
    measurements = ("probe",)

    def __init__(self, engine: AlertEngine, config: Any) -> None:
        super().__init__(engine, config)
        self.samples: dict[tuple[str, str, str], collections.deque[tuple[float, float]]] = {}

    def on_point(self, point: Point) -> None:
        rtt = point.fields.get("rtt_median_ms")
        if not isinstance(rtt, float | int) or isinstance(rtt, bool):
            return
        carrier, target = point.tags.get("carrier", ""), point.tags.get("target", "")
        method = point.tags.get("method", "")
        now = _t(point)
        recent_s, baseline_s = self.p("recent"), self.p("baseline")
        history = self.samples.setdefault((carrier, target, method), collections.deque())
        history.append((now, float(rtt)))
        while history and history[0][0] <= now - recent_s - baseline_s:
            history.popleft()
        recent = [v for t, v in history if t > now - recent_s]
        base = [v for t, v in history if t <= now - recent_s]
        extra = {"carrier": carrier, "target": target, "method": method}
        if len(recent) < self.p("min_samples") or len(base) < self.p("min_samples"):
            return
        recent_median, base_median = statistics.median(recent), statistics.median(base)
        tolerance = max(self.p("min_ms"), self.p("pct") / 100 * base_median)
        shift = recent_median - base_median
        threshold = tolerance / 2 if self.active(extra) else tolerance
        self.set(extra, shift > threshold,
                 f"{target} ({method}) through {carrier}: median RTT {recent_median:.1f} ms over "
                 f"the last {format_duration(recent_s)}, was {base_median:.1f} ms "
                 f"(+{shift:.1f} ms, tolerance {tolerance:.1f} ms)",
                 f"The path from {carrier} to {target} got slower: a reroute or congestion.",
                 value=shift)
