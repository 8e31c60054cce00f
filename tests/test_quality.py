"""Quality status, score and best carrier: pure, no I/O."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collectors.probes.config import QualityConfig
from collectors.probes.quality import QualityTracker, assess, score_of, status_of
from collectors.probes.stats import compute_stats

Q = QualityConfig(rtt_degraded_ms=100, loss_degraded_pct=2.0, loss_down_pct=50.0,
                  jitter_degraded_ms=30)


def rtts(value: float, count: int = 100, lost: int = 0) -> list[float | None]:
    return [value] * (count - lost) + [None] * lost


def test_status_thresholds() -> None:
    assert status_of(compute_stats(rtts(20)), Q) == "ok"
    assert status_of(compute_stats(rtts(101)), Q) == "degraded"
    assert status_of(compute_stats(rtts(100)), Q) == "ok"  # "over" the threshold degrades
    assert status_of(compute_stats(rtts(20, lost=2)), Q) == "degraded"
    assert status_of(compute_stats(rtts(20, lost=1)), Q) == "ok"
    assert status_of(compute_stats(rtts(20, lost=50)), Q) == "down"
    assert status_of(compute_stats([None] * 3), Q) == "down"
    jittery = [10.0, 50.0] * 10  # consecutive differences of 40 ms
    assert status_of(compute_stats(jittery), Q) == "degraded"


def test_score_values() -> None:
    assert score_of(compute_stats(rtts(0.0)), Q) == 100.0
    # 40 ms median: penalty 25 * 40/100 = 10
    assert score_of(compute_stats(rtts(40)), Q) == pytest.approx(90.0)
    # 1 % loss: 12.5; 40 ms: 10
    assert score_of(compute_stats(rtts(40, lost=1)), Q) == pytest.approx(77.5)
    assert score_of(compute_stats(rtts(40, lost=60)), Q) == 0.0
    assert score_of(compute_stats(rtts(10_000)), Q) == 0.0


def test_best_is_highest_score_and_unique() -> None:
    result = assess("t", {
        "telecom": compute_stats(rtts(30)),
        "unicom": compute_stats(rtts(10)),
        "mobile": compute_stats(rtts(5, lost=10)),
    }, Q)
    best = [q.carrier for q in result if q.best]
    assert best == ["unicom"]
    assert {q.carrier: q.status for q in result} == {
        "telecom": "ok", "unicom": "ok", "mobile": "degraded"}


def test_no_best_when_all_down_and_ties_are_deterministic() -> None:
    down = assess("t", {"a": compute_stats([None]), "b": compute_stats([None])}, Q)
    assert not any(q.best for q in down)
    tie = assess("t", {"b": compute_stats(rtts(10)), "a": compute_stats(rtts(10))}, Q)
    assert [q.carrier for q in tie if q.best] == ["a"]


@given(st.dictionaries(
    st.text(min_size=1, max_size=5),
    st.lists(st.one_of(st.none(), st.floats(0, 1000)), min_size=1, max_size=30),
    min_size=1, max_size=5))
def test_assess_properties(rounds: dict[str, list[float | None]]) -> None:
    result = assess("t", {c: compute_stats(r) for c, r in rounds.items()}, Q)
    assert len(result) == len(rounds)
    assert sum(q.best for q in result) <= 1
    for q in result:
        assert 0.0 <= q.score <= 100.0
        assert q.status in ("ok", "degraded", "down")
        if q.status == "down":
            assert q.score == 0.0 and not q.best
    if any(q.status != "down" for q in result):
        best = next(q for q in result if q.best)
        assert best.score == max(q.score for q in result)


def test_tracker_logs_changes_once(caplog: pytest.LogCaptureFixture) -> None:
    tracker = QualityTracker()
    good = {"a": compute_stats(rtts(10)), "b": compute_stats(rtts(20))}
    assert tracker.update("t", assess("t", good, Q)) == []  # first round: nothing changed
    assert tracker.update("t", assess("t", good, Q)) == []
    caplog.set_level(logging.INFO)
    worse = {"a": compute_stats(rtts(10, lost=60)), "b": compute_stats(rtts(20))}
    messages = tracker.update("t", assess("t", worse, Q))
    assert messages == [
        "quality of carrier a to t: ok -> down (score 0)",
        "best carrier to t: a -> b",
    ]
    assert "ok -> down" in caplog.text
    assert tracker.update("t", assess("t", worse, Q)) == []
