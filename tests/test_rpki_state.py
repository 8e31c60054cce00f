"""RPKI counts kept by BgpState as routes come and go, our prefixes' states and events.
Pure: ExaBGP-shaped lines in, points out (the helpers of test_bgp_state.py)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from agent.points import Point
from collectors.bgp.rib import V4, format_prefix, parse_prefix
from collectors.bgp.rpki.rov import VrpIndex
from collectors.bgp.rpki.validation import RovState
from collectors.bgp.state import BgpState
from tests.bgp_support import Clock, make_config, state_line, up, update_line
from tests.rpki_support import ROUTES, VRPS, brute, build


def attach(state: BgpState, index: VrpIndex | None, clock: Clock,
           expires: dict[Any, int] | None = None) -> list[Point]:
    rov = state.rov or RovState(state.local_as, clock)
    state.rov = rov
    return rov.set_vrps(index, expires or {}, "test", state.sessions.values(), state.own)


def session_rpki(state: BgpState, carrier: str) -> tuple[int, int, int]:
    [point] = [p for p in state.session_points() if p.tags["carrier"] == carrier]
    f = point.fields
    return f["rpki_valid"], f["rpki_invalid"], f["rpki_not_found"]  # type: ignore[return-value]


def expected(routes: dict[str, int]) -> tuple[int, int, int]:
    states = [brute(VRPS, p, o) for p, o in routes.items()]
    return states.count(1), states.count(2), states.count(0)


def test_counts_follow_announce_replace_withdraw_and_drop() -> None:
    clock = Clock()
    state = BgpState(make_config(), clock=clock)
    attach(state, build(), clock)
    up(state, "telecom", "unicom")
    held: dict[str, int] = {}
    rng = random.Random(7)
    pool = [p for p, _, _ in ROUTES if p != "0.0.0.0/0"]
    origins = [0, 64500, 64501, 64502, 64503, 64504, 64505, 64506, 64507, 64999]
    for _ in range(300):
        prefix = rng.choice(pool)
        if prefix in held and rng.random() < 0.4:
            state.handle_line(update_line("telecom", [], withdraw=[prefix]))
            del held[prefix]
        else:
            origin = rng.choice(origins)
            path = [4134, origin] if origin else [4134]
            state.handle_line(update_line("telecom", [prefix], path=path))
            held[prefix] = origin if origin else 4134
        assert session_rpki(state, "telecom") == expected(held)
    assert session_rpki(state, "unicom") == (0, 0, 0)
    # a VRP change: everything validated again, with the same answers as brute force
    attach(state, build(VRPS[:3]), clock)
    states = [brute(VRPS[:3], p, o) for p, o in held.items()]
    assert session_rpki(state, "telecom") == (states.count(1), states.count(2), states.count(0))
    attach(state, build(), clock)
    assert session_rpki(state, "telecom") == expected(held)
    state.handle_line(state_line("telecom", "down", "hold timer"))
    assert session_rpki(state, "telecom") == (0, 0, 0)


def test_v4_and_v6_twins_and_no_fields_before_a_vrp_set() -> None:
    clock = Clock()
    state = BgpState(make_config(), clock=clock)
    state.rov = RovState(state.local_as, clock)
    up(state, "telecom")
    state.handle_line(update_line("telecom", ["192.0.2.0/24"], path=[4134, 64500]))
    [point] = [p for p in state.session_points() if p.tags["carrier"] == "telecom"]
    assert "rpki_valid" not in point.fields  # no VRPs yet: nothing to say
    attach(state, build(), clock)
    state.handle_line(update_line("telecom", ["2001:db8:2::/49"], path=[4134, 64500],
                                  next_hop="2001:db8::1"))
    [point] = [p for p in state.session_points() if p.tags["carrier"] == "telecom"]
    f = point.fields
    assert (f["rpki_valid_v4"], f["rpki_invalid_v6"], f["rpki_valid"], f["rpki_invalid"]) == (
        1, 1, 1, 1)


@pytest.mark.parametrize(("vrps", "state_name", "kind"), [
    ([("198.51.100.0/24", 24, 64512)], "valid", None),
    ([("198.51.100.0/22", 23, 64512)], "invalid", "rpki_own_invalid"),  # maxLength too short
    ([("198.51.100.0/24", 24, 0)], "invalid", "rpki_own_invalid"),  # AS0
    ([("198.51.100.0/24", 24, 64999)], "invalid", "rpki_own_invalid"),
    ([("192.0.2.0/24", 24, 64512)], "not_found", "rpki_own_not_found"),
])
def test_own_prefix_state_and_events(vrps: list[tuple[str, int, int]], state_name: str,
                                     kind: str | None) -> None:
    clock = Clock()
    state = BgpState(make_config(), clock=clock)
    points = attach(state, build(vrps), clock)
    assert [p.tags["kind"] for p in points] == ([kind] if kind else [])
    assert all("carrier" not in p.tags for p in points)
    for p in state.prefix_points():
        assert p.fields["rpki"] == state_name
    # repaired: valid again, said once
    points = attach(state, build([("198.51.100.0/24", 24, 64512)]), clock)
    assert [p.tags["kind"] for p in points] == (["rpki_own_valid"] if kind else [])
    assert attach(state, build([("198.51.100.0/24", 24, 64512)]), clock) == []


def test_roa_expiry_field_and_event() -> None:
    clock = Clock()
    clock.now = 1_800_000_000.0
    state = BgpState(make_config(), clock=clock)
    _, network, length = parse_prefix("198.51.100.0/22")
    key = (V4, network, length, 24, 64512)
    far = int(clock.now + 3 * 86400)
    points = attach(state, build([("198.51.100.0/22", 24, 64512)]), clock, {key: far})
    assert points == []
    for p in state.prefix_points():  # one per carrier, the same answer
        assert (p.fields["rpki"], p.fields["rpki_expires"]) == ("valid", far)
    clock.now = far - 3600  # an hour left
    assert state.rov is not None
    points = state.rov.check_own(state.own)
    assert [p.tags["kind"] for p in points] == ["rpki_roa_expiring"]
    assert points[0].fields["prefix"] == "198.51.100.0/24"
    assert "(1.0 h)" in str(points[0].fields["detail"])
    assert state.rov.check_own(state.own) == []  # once per ROA expiry


def test_reconfigure_revalidates_new_own_prefixes() -> None:
    clock = Clock()
    state = BgpState(make_config(), clock=clock)
    attach(state, build([("198.51.100.0/24", 24, 64512)]), clock)
    points = state.reconfigure(make_config(announce=["198.51.100.0/24", "203.0.113.0/24"]))
    assert [(p.tags["kind"], p.fields["prefix"]) for p in points] == [
        ("rpki_own_not_found", "203.0.113.0/24")]


def test_rpki_config_errors_name_their_key() -> None:
    from agent.config import ConfigError, parse_config

    def config(rpki: dict[str, Any]) -> dict[str, Any]:
        return {"agent": {"hostname": "t"},
                "carriers": [{"name": "telecom", "interface": "eth1", "bgp": {
                    "peer": "100.64.1.1", "peer_as": 4134, "local_address": "100.64.1.2"}}],
                "bgp": {"local_as": 64512, "router_id": "100.64.1.2", "rpki": rpki}}

    good = parse_config(config({"rtr": ["127.0.0.1:3323", "[2001:db8::1]:323",
                                        "rpki.example.net:8282"], "vrp_file": "/x.json",
                                "refresh": "5s"}))
    assert good.bgp is not None and good.bgp.rpki is not None
    assert good.bgp.rpki.rtr == (("127.0.0.1", 3323), ("2001:db8::1", 323),
                                 ("rpki.example.net", 8282))
    assert good.bgp.rpki.refresh_s == 5.0 and good.bgp.rpki.stale_after_s == 7200.0
    for rpki, line in [
        ({}, "f.toml: bgp.rpki: needs a VRP source: rtr, vrp_file or vrp_url"),
        ({"rtr": ["127.0.0.1"]}, "f.toml: bgp.rpki.rtr: [0]: expected HOST:PORT, got "
                                 "'127.0.0.1'"),
        ({"rtr": ["2001:db8::1:323"]}, "f.toml: bgp.rpki.rtr: [0]: write an IPv6 cache as "
                                       "[ADDRESS]:PORT, got '2001:db8::1:323'"),
        ({"rtr": ["a:1", "a:1"]}, "f.toml: bgp.rpki.rtr: the same cache is listed twice"),
        ({"vrp_url": "ftp://x"}, "f.toml: bgp.rpki.vrp_url: not an http(s) URL: 'ftp://x'"),
        ({"vrp_file": "/x", "stale_after": "1s"},
         "f.toml: bgp.rpki.stale_after: must be between 60s and 2.592e+06s, got '1s'"),
        ({"vrp_file": "/x", "cache": "x"}, "f.toml: bgp.rpki.cache: unknown key"),
    ]:
        with pytest.raises(ConfigError) as raised:
            parse_config(config(rpki), "f.toml")
        assert str(raised.value) == line


def test_status_text_of_the_rpki_section() -> None:
    from agent.cli import render_status

    clock = Clock()
    state = BgpState(make_config(), clock=clock)
    attach(state, build([("198.51.100.0/24", 24, 64512)]), clock)
    up(state, "telecom")
    state.handle_line(update_line("telecom", ["198.51.100.0/25"], path=[4134, 64999]))
    assert state.rov is not None
    section = {"sources": [{"source": "rtr://127.0.0.1:3323", "in_force": True, "vrps": 1,
                            "serial": 7, "last_update_s": None, "connected": True,
                            "stale": False, "version": 1, "last_errors": []}],
               **state.rov.status()}
    text = render_status({"host": "h", "config": "c", "queue_points": 0,
                          "spool": {"bytes": 0}, "rpki": section})
    assert "rpki: 1 VRPs in force (v4 1, v6 0) from test" in text
    assert "  * rtr://127.0.0.1:3323: 1 VRPs, serial 7, last update never, RTR v1" in text
    assert "  telecom  valid 0  invalid 1  not found 0" in text
    assert "  own 198.51.100.0/24: valid" in text


def test_alert_own_prefix_rpki_invalid(tmp_path: Any) -> None:
    """The built-in condition fires on the event and on bgp_prefix.rpki, and resolves."""
    from tests.alerts_support import Harness

    h = Harness(tmp_path)
    h.point("bgp_event", {"kind": "rpki_own_invalid"},
            {"prefix": "198.51.100.0/24", "as_path": "", "origin_as": 64512,
             "detail": "covered by 198.51.100.0/22-23 AS64512"})
    [alert] = h.firing("OwnPrefixRpkiInvalid")
    assert alert["labels"]["prefix"] == "198.51.100.0/24"
    assert "carrier" not in alert["labels"] and alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["summary"] == (
        "our prefix 198.51.100.0/24 is RPKI-invalid: covered by 198.51.100.0/22-23 AS64512")
    h.clock.advance(10)
    for carrier in ("telecom", "unicom"):
        h.point("bgp_prefix", {"carrier": carrier, "prefix": "198.51.100.0/24"},
                {"visible": False, "rpki": "invalid"})
    assert len(h.firing("OwnPrefixRpkiInvalid")) == 1
    h.point("bgp_prefix", {"carrier": "telecom", "prefix": "198.51.100.0/24"},
            {"visible": False, "rpki": "valid"})
    assert not h.firing()
    h.point("bgp_prefix", {"carrier": "telecom", "prefix": "198.51.100.0/24"},
            {"visible": False, "rpki": "invalid"})
    assert h.firing("OwnPrefixRpkiInvalid")
    h.clock.advance(10)
    h.point("bgp_event", {"kind": "rpki_own_not_found"},
            {"prefix": "198.51.100.0/24", "as_path": "", "origin_as": 64512, "detail": ""})
    assert not h.firing()


def test_partial_revalidation_equals_a_full_one() -> None:
    """After a VRP change only routes in touched buckets are validated again (the rest
    keep their remembered answer): the counts equal a validation from scratch, for a
    new index (file) and for one changed in place with the list of changes (RTR)."""
    rng = random.Random(3)
    clock = Clock()
    state = BgpState(make_config(), clock=clock)
    vrps = list(VRPS)
    attach(state, build(vrps), clock)
    up(state, "telecom", "unicom")
    pool = [p for p, _, _ in ROUTES if p != "0.0.0.0/0"] + [
        f"10.{a}.{b}.0/24" for a in range(4) for b in range(0, 256, 16)]
    for carrier in ("telecom", "unicom"):
        for prefix in pool:
            origin = rng.choice([64500, 64501, 64503, 64505, 64506])
            state.handle_line(update_line(carrier, [prefix], path=[4134, origin],
                                          next_hop="2001:db8::1" if ":" in prefix else None))
    assert state.rov is not None
    for step in range(20):
        before_memo = len(state.rov._memo[V4])
        if step % 2:  # a new index (a file read again)
            vrps = [v for v in vrps if rng.random() > 0.2]
            vrps.append((f"10.{rng.randrange(4)}.0.0/16", rng.choice([16, 20, 24]),
                         rng.choice([0, 64505, 64506])))
            vrps = list(dict.fromkeys(vrps))
            attach(state, build(vrps), clock)
        else:  # changed in place, with its changes (an RTR serial update)
            index = state.rov.index
            assert index is not None
            changes = []
            for _ in range(3):
                prefix, max_length, asn = (
                    f"10.{rng.randrange(4)}.{rng.randrange(256)}.0/24", 24,
                    rng.choice([64505, 64506]))
                family, network, length = parse_prefix(prefix)
                if index.family(family).add(network, length, max_length, asn):
                    vrps.append((prefix, max_length, asn))
                    changes.append((True, family, network, length, max_length, asn))
            gone = rng.choice(vrps)
            family, network, length = parse_prefix(gone[0])
            assert index.family(family).remove(network, length, gone[1], gone[2])
            vrps.remove(gone)
            changes.append((False, family, network, length, gone[1], gone[2]))
            state.rov.set_vrps(index, {}, "rtr", state.sessions.values(), state.own, changes)
        partial = {c: session_rpki(state, c) for c in ("telecom", "unicom")}
        assert before_memo and state.rov._memo[V4]  # the memo was kept, not rebuilt
        state.rov.revalidate(state.sessions.values())  # from scratch
        assert partial == {c: session_rpki(state, c) for c in ("telecom", "unicom")}
        held = {p: a.origin_as for s in state.sessions.values() if s.carrier == "telecom"
                for p, a in ((format_prefix(f, k), a) for f, t in ((4, s.rib.v4), (6, s.rib.v6))
                             for k, a in t.routes.items())}
        states = [brute(vrps, p, o) for p, o in held.items()]
        assert partial["telecom"] == (states.count(1), states.count(2), states.count(0))


def test_reload_keeps_counts_of_kept_sessions_and_zeroes_replaced_ones() -> None:
    from agent.config import parse_config

    clock = Clock()
    state = BgpState(make_config(), clock=clock)
    attach(state, build(), clock)
    up(state, "telecom", "unicom")
    for carrier in ("telecom", "unicom"):
        state.handle_line(update_line(carrier, ["192.0.2.0/24", "192.0.2.0/25"],
                                      path=[4134, 64500]))
    assert session_rpki(state, "telecom") == session_rpki(state, "unicom") == (1, 1, 0)
    revalidations = state.rov.revalidations if state.rov else 0
    new = parse_config({
        "agent": {"hostname": "t"},
        "carriers": [
            {"name": "telecom", "interface": "t", "bgp": {
                "peer": "100.64.1.1", "peer_as": 4134, "local_address": "100.64.1.2"}},
            {"name": "unicom", "interface": "u", "bgp": {  # re-addressed: a new session
                "peer": "100.64.9.1", "peer_as": 4837, "local_address": "100.64.9.2"}}],
        "bgp": {"local_as": 64512, "router_id": "100.64.1.2", "announce": ["192.0.2.0/24"]},
    })
    points = state.reconfigure(new)
    assert session_rpki(state, "telecom") == (1, 1, 0)
    assert session_rpki(state, "unicom") == (0, 0, 0)
    assert state.rov is not None and state.rov.revalidations == revalidations  # no rescan
    # our new prefix 192.0.2.0/24 is covered by AS64500's ROA, we are AS64512
    assert [(p.tags["kind"], p.fields["prefix"]) for p in points
            if p.tags["kind"].startswith("rpki")] == [("rpki_own_invalid", "192.0.2.0/24")]
