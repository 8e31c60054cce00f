"""The RIS Live view without I/O: paths, counts per carrier, hijack / upstream / lost and
restored events, malformed frames (fuzzed), reconfiguration."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.points import Point
from collectors.bgp import metrics
from collectors.bgp.prefixes import Prefix
from collectors.bgp.rislive.messages import UPSTREAM_NONE, UPSTREAM_SET, BadMessage, parse_path
from collectors.bgp.rislive.settings import ViewSettings
from collectors.bgp.rislive.view import RisView
from tests.rislive import replay
from tests.rislive.config import make_config
from tests.rislive.replay import LOCAL_AS, OWN4, OWN6, ris_update

WATCH = "203.0.113.0/24"


def make_view(**kw: Any) -> RisView:
    return RisView(ViewSettings.from_config(make_config(**kw)))


def peer(i: int) -> str:
    return f"192.0.2.{i}"


def kinds(points: list[Point]) -> list[str]:
    return [p.tags["kind"] for p in points if p.measurement == "bgp_event"]


def visibility(points: list[Point]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(p.tags["prefix"], p.tags["via"]): p.fields for p in points
            if p.measurement == "bgp_visibility"}


# ------------------------------------------------------------------ paths


@pytest.mark.parametrize(("path", "origin", "ours", "upstream"), [
    ([3356, 4134, 64512], 64512, True, 4134),
    ([3356, 4134, 64512, 64512, 64512], 64512, True, 4134),  # our prepends skipped
    ([64512], 64512, True, UPSTREAM_NONE),  # a vantage point in our own AS
    ([64512, 64512], 64512, True, UPSTREAM_NONE),
    ([3356, [4837, 9808], 64512], 64512, True, UPSTREAM_SET),
    ([3356, 4134, [64512, 64513]], 64512, True, 4134),  # aggregate whose set holds us
    ([3356, 4134, [64600, 64601]], 0, False, UPSTREAM_NONE),
    ([3356, 4134, 64666], 64666, False, UPSTREAM_NONE),
    ([64512, 4134, 64666], 64666, False, UPSTREAM_NONE),
])
def test_path_origin_and_upstream(path: list[Any], origin: int, ours: bool,
                                  upstream: int) -> None:
    route = parse_path(path, LOCAL_AS)
    assert (route.origin_as, route.ours, route.upstream) == (origin, ours, upstream)


@pytest.mark.parametrize("path", [[], None, "3356 64512", [True], [-1], [2**32], [[]],
                                  [1.5], [3356, ["x"]], {"0": 1}])
def test_bad_paths_are_refused(path: Any) -> None:
    with pytest.raises(BadMessage):
        parse_path(path, LOCAL_AS)


def test_path_text_shows_sets() -> None:
    assert parse_path([1, [3, 2], 64512], LOCAL_AS).path == "1 {2,3} 64512"


# ------------------------------------------------------------------ counts


def test_counts_per_carrier_other_foreign_and_more_specific() -> None:
    view = make_view(watch=[WATCH])
    frames = [
        ris_update(peer(1), 65001, [65001, 4134, LOCAL_AS], [OWN4]),
        ris_update(peer(2), 65002, [65002, 3356, 4134, LOCAL_AS, LOCAL_AS], [OWN4]),
        ris_update(peer(3), 65003, [65003, 4837, LOCAL_AS], [OWN4]),
        ris_update(peer(4), 65004, [65004, 9808, LOCAL_AS], [OWN4]),
        ris_update(peer(5), 65005, [65005, 64499, LOCAL_AS], [OWN4]),  # other
        ris_update(peer(6), LOCAL_AS, [LOCAL_AS], [OWN4]),  # inside our AS: any only
        ris_update(peer(7), 65007, [65007, 64666], [OWN4]),  # foreign origin
        ris_update(peer(8), 65008, [65008, 4134, LOCAL_AS], ["198.51.100.128/25"]),
        ris_update(peer(1), 65001, [65001, 64666], ["198.51.100.0/25"]),  # foreign more-sp.
        ris_update(peer(9), 65009, [65009, 3356, 64496], [WATCH]),
        ris_update(peer(10), 65010, [65010, 64496], [WATCH, "203.0.113.0/25"]),
    ]
    for frame in frames:
        view.handle_text(frame, 1.0)
    assert view.stats.bad_messages == 0
    counts = view.counts(Prefix.parse(OWN4))
    assert counts.any == 6
    assert counts.carriers == {"telecom": 2, "unicom": 1, "mobile": 1}
    assert counts.other == 1
    assert counts.foreign_origin == 2  # peer 7 (the prefix), peer 1 (a more-specific)
    assert counts.more_specific == 2  # peers 8 and 1
    assert view.counts(Prefix.parse(WATCH), own=False).any == 2
    points = visibility(view.evaluate(2.0, judging=False))
    assert points[(OWN4, "any")]["peers"] == 6
    assert points[(OWN4, "any")]["peers_foreign_origin"] == 2
    assert points[(OWN4, "any")]["peers_more_specific"] == 2
    assert points[(OWN4, "telecom")]["peers"] == 2
    assert points[(OWN4, "other")] == {"peers": 1}
    assert points[(OWN6, "any")]["peers"] == 0
    assert set(points[(WATCH, "any")]) == {"peers", "lost", "usual_peers"}
    assert (WATCH, "telecom") not in points
    # a withdrawal, a move to another carrier, a peer going down
    view.handle_text(ris_update(peer(1), 65001, withdraw=[OWN4]), 3.0)
    view.handle_text(ris_update(peer(3), 65003, [65003, 4134, LOCAL_AS], [OWN4]), 3.0)
    view.handle_text(json.dumps({"type": "ris_message", "data": {
        "peer": peer(4), "peer_asn": "65004", "host": "rrc00", "type": "RIS_PEER_STATE",
        "state": "down"}}), 3.0)
    counts = view.counts(Prefix.parse(OWN4))
    assert (counts.any, counts.carriers) == (4, {"telecom": 2, "unicom": 0, "mobile": 0})
    assert counts.foreign_origin == 2  # peer 1 still holds its foreign more-specific


def test_replayed_mrt_counts_are_exact() -> None:
    """The real rrc18 stream with our prefixes spliced in, straight into the view."""
    view = make_view()
    frames = replay.spliced()
    for frame in frames:
        view.handle_text(frame, 1.0)
    assert view.stats.bad_messages == 0
    for own, expected in replay.truth(frames).items():
        counts = view.counts(Prefix.parse(own))
        assert {"any": counts.any, "other": counts.other, **counts.carriers} == expected


def test_unrelated_prefixes_are_ignored_and_cheap_to_skip() -> None:
    view = make_view()
    view.handle_text(ris_update(peer(1), 65001, [65001, 64496], ["203.0.113.0/24",
                                                                  "198.51.0.0/16"]), 1.0)
    assert view.seen == {}
    assert view.stats.unrelated == 2  # a less-specific of ours is not ours either


# ------------------------------------------------------------------ events


@pytest.mark.parametrize("seen", [OWN4, "198.51.100.0/25"])
def test_hijack_needs_n_vantage_points_and_ends(seen: str) -> None:
    view = make_view(hijack_min_peers=3)
    events: list[Point] = []
    for i in (1, 2):
        events += view.handle_text(ris_update(peer(i), 65000 + i, [65000 + i, 64666], [seen]),
                                   1.0)
    assert kinds(events) == []  # N - 1
    events += view.handle_text(ris_update(peer(3), 65003, [65003, 3356, 64666], [seen]), 2.0)
    assert kinds(events) == [metrics.EVENT_RIS_HIJACK]
    hijack = events[-1]
    assert hijack.fields["prefix"] == seen and hijack.fields["origin_as"] == 64666
    assert hijack.fields["peers"] == 3 and "carrier" not in hijack.tags
    assert "seen by 3 RIS vantage points" in str(hijack.fields["detail"])
    events += view.handle_text(ris_update(peer(4), 65004, [65004, 64666], [seen]), 2.0)
    assert kinds(events) == [metrics.EVENT_RIS_HIJACK]  # once
    for i in (1, 2):
        events += view.handle_text(ris_update(peer(i), 65000 + i, withdraw=[seen]), 3.0)
    assert kinds(events) == [metrics.EVENT_RIS_HIJACK, metrics.EVENT_RIS_HIJACK_END]
    assert events[-1].fields["peers"] == 2


def test_our_own_more_specific_is_no_hijack() -> None:
    view = make_view(announce=[OWN4, "198.51.100.0/25"], hijack_min_peers=1)
    events = view.handle_text(ris_update(peer(1), 65001, [65001, 4134, LOCAL_AS],
                                         ["198.51.100.0/25"]), 1.0)
    assert kinds(events) == []
    assert view.counts(Prefix.parse(OWN4)).more_specific == 0


def test_unexpected_upstream() -> None:
    view = make_view(hijack_min_peers=2)
    events = view.handle_text(ris_update(peer(1), 65001, [65001, 64499, LOCAL_AS], [OWN4]), 1.0)
    events += view.handle_text(ris_update(peer(2), 65002, [65002, 4134, LOCAL_AS], [OWN4]), 1.0)
    assert kinds(events) == []
    events += view.handle_text(ris_update(peer(3), 65003, [65003, 64499, LOCAL_AS], [OWN4]),
                               1.0)
    assert kinds(events) == [metrics.EVENT_RIS_UPSTREAM]
    assert "AS64499" in str(events[-1].fields["detail"])
    events += view.handle_text(ris_update(peer(3), 65003, [65003, 4837, LOCAL_AS], [OWN4]), 2.0)
    assert kinds(events) == [metrics.EVENT_RIS_UPSTREAM, metrics.EVENT_RIS_UPSTREAM_END]


def _announce_via(view: RisView, peers: range, carrier_as: int, now: float) -> None:
    for i in peers:
        view.handle_text(ris_update(peer(i), 65000 + i, [65000 + i, carrier_as, LOCAL_AS],
                                    [OWN4]), now)


def test_carrier_lost_and_restored() -> None:
    view = make_view(drop_fraction=0.5, min_usual_peers=3, baseline="1h")
    _announce_via(view, range(1, 7), 4134, 1.0)  # 6 via telecom
    _announce_via(view, range(7, 11), 4837, 1.0)  # 4 via unicom
    # not judging (warm-up): nothing judged, nothing learnt
    assert kinds(view.evaluate(10.0, judging=False)) == []
    _announce_via(view, range(1, 7), 4837, 11.0)  # all of telecom's move away
    assert kinds(view.evaluate(12.0, judging=False)) == []
    _announce_via(view, range(1, 7), 4134, 13.0)
    assert kinds(view.evaluate(20.0, judging=True)) == []  # the first judged sample
    points = view.evaluate(30.0, judging=True)
    assert visibility(points)[(OWN4, "telecom")] == {"peers": 6, "lost": False,
                                                     "usual_peers": 6}
    _announce_via(view, range(1, 5), 4837, 31.0)  # 2 of 6 left: below 0.5
    points = view.evaluate(40.0, judging=True)
    assert kinds(points) == [metrics.EVENT_RIS_LOST]
    lost = points[0]
    assert lost.tags["carrier"] == "telecom" and lost.fields["via"] == "telecom"
    assert lost.fields["peers"] == 2 and "usually 6" in str(lost.fields["detail"])
    assert visibility(points)[(OWN4, "telecom")] == {"peers": 2, "lost": True, "usual_peers": 6}
    assert visibility(points)[(OWN4, "any")]["lost"] is False  # still seen by 10
    assert kinds(view.evaluate(50.0, judging=True)) == []  # once
    _announce_via(view, range(1, 2), 4134, 51.0)  # 3 of 6: back at 0.5
    points = view.evaluate(60.0, judging=True)
    assert kinds(points) == [metrics.EVENT_RIS_RESTORED]
    assert points[0].tags["carrier"] == "telecom" and points[0].fields["peers"] == 3


def test_small_levels_are_not_judged_and_any_is() -> None:
    view = make_view(min_usual_peers=3)
    _announce_via(view, range(1, 3), 4134, 1.0)  # 2 via telecom: below min_usual_peers
    _announce_via(view, range(3, 6), 9808, 1.0)
    view.evaluate(10.0, judging=True)
    for i in range(1, 6):
        view.handle_text(ris_update(peer(i), 65000 + i, withdraw=[OWN4]), 11.0)
    points = view.evaluate(20.0, judging=True)
    lost = [p for p in points if p.measurement == "bgp_event"]
    assert sorted((p.tags.get("carrier", ""), p.fields["via"]) for p in lost) == [
        ("", "any"), ("mobile", "mobile")]


def test_baseline_forgets_old_levels() -> None:
    view = make_view(baseline="60s", min_usual_peers=1)
    _announce_via(view, range(1, 11), 4134, 1.0)
    view.evaluate(10.0, judging=True)
    for i in range(1, 8):
        view.handle_text(ris_update(peer(i), 65000 + i, [65000 + i, 4837, LOCAL_AS], [OWN4]),
                         11.0)
    # 3 of 10 after the window forgot the 10: the usual is now what was seen since
    view.series[(OWN4, "telecom")].history.clear()
    view.series[(OWN4, "telecom")].history.append((80.0, 3))
    assert metrics.EVENT_RIS_LOST not in kinds(view.evaluate(100.0, judging=True))


# ------------------------------------------------------------------ bad input


def _snapshot(view: RisView) -> Any:
    return ({k: dict(v) for k, v in view.seen.items()}, view.stats.updates)


GOOD = ris_update(peer(1), 65001, [65001, 4134, LOCAL_AS], [OWN4, "198.51.100.0/25"],
                  withdraw=[OWN6])


def _mutations(rng: random.Random) -> list[str | bytes]:
    base = json.loads(GOOD)
    cases: list[str | bytes] = []
    junk: list[Any] = [None, True, 1, -1, 2**70, 1.5, "x", "", [], {}, [1, "a"], {"a": 1},
                       "300.1.1.1/24", "198.51.100.0/33", "::/129", [[]], [None]]
    paths = [("type",), ("data",), ("data", "peer"), ("data", "type"), ("data", "path"),
             ("data", "announcements"), ("data", "withdrawals"),
             ("data", "announcements", 0), ("data", "announcements", 0, "prefixes"),
             ("data", "announcements", 0, "prefixes", 0), ("data", "path", 0),
             ("data", "withdrawals", 0)]
    for _ in range(1500):
        message = json.loads(json.dumps(base))
        where = rng.choice(paths)
        target = message
        for step in where[:-1]:
            target = target[step]
        target[where[-1]] = rng.choice(junk)
        cases.append(json.dumps(message))
    for _ in range(1500):
        cut = rng.randrange(len(GOOD))
        cases.append(GOOD[:cut])
    for _ in range(1500):
        cases.append(bytes(rng.randrange(256) for _ in range(rng.randrange(200))))
    cases += ["null", "[]", "1", '"s"', '{"type": 1}', '{"type": "ris_message"}',
              '{"type": "ris_message", "data": []}', "[" * 100000, '{"type": "bogus"}',
              '{"type":"ris_message","data":{"peer":"192.0.2.1","type":"UPDATE",'
              '"announcements":[{"prefixes":["198.51.100.0/24"]}]}}', b"\xff\xfe"]
    return cases


def test_malformed_frames_never_raise_and_change_nothing() -> None:
    view = make_view()
    view.handle_text(GOOD, 1.0)
    before = _snapshot(view)
    rng = random.Random(15)
    bad = valid = 0
    for case in _mutations(rng):
        bad_before = view.stats.bad_messages
        try_view = view
        try_view.handle_text(case, 2.0)
        if view.stats.bad_messages == bad_before + 1:
            bad += 1
            assert _snapshot(view)[0] == before[0], case
        else:
            valid += 1
            view = make_view()  # a mutation that is still valid RIS Live: start again
            view.handle_text(GOOD, 1.0)
            before = _snapshot(view)
    assert bad > 4000, (bad, valid)
    assert view.stats.messages >= 1


_FUZZ_VIEW: list[RisView] = []


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
                    max_leaves=20))
def test_arbitrary_json_never_raises(value: Any) -> None:
    if not _FUZZ_VIEW:
        _FUZZ_VIEW.append(make_view())
    view = _FUZZ_VIEW[0]
    stats = view.stats
    before = (stats.messages, stats.bad_messages + stats.updates + stats.peer_states)
    for message in (value, {"type": "ris_message", "data": value}):
        view.handle_text(json.dumps(message), 1.0)
    assert stats.messages == before[0] + 2
    assert stats.bad_messages + stats.updates + stats.peer_states <= before[1] + 2


def test_ris_error_and_pong_are_counted_not_bad() -> None:
    view = make_view()
    view.handle_text('{"type": "pong", "data": null}', 1.0)
    view.handle_text('{"type": "ris_error", "data": {"message": "slow consumer"}}', 1.0)
    view.handle_text('{"type": "ris_subscribe_ok", "data": {}}', 1.0)
    assert (view.stats.pongs, view.stats.ris_errors, view.stats.subscribe_ok) == (1, 1, 1)
    assert view.stats.bad_messages == 0
    assert list(view.stats.last_errors) == ["slow consumer"]


def test_reconfigure_drops_what_is_no_longer_ours() -> None:
    view = make_view()
    _announce_via(view, range(1, 4), 4134, 1.0)
    view.handle_text(ris_update(peer(9), 65009, [65009, 4134, LOCAL_AS], [OWN6]), 1.0)
    view.evaluate(2.0, judging=True)
    view.reconfigure(ViewSettings.from_config(make_config(announce=[OWN6])))
    assert list(view.seen) == [(6, Prefix.parse(OWN6).key)]
    assert {k[0] for k in view.series} == {OWN6}
    assert ViewSettings.from_config(make_config(announce=[OWN6], watch=[WATCH])
                                    ).subscriptions() == [OWN6, WATCH]
