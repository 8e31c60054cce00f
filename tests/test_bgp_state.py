"""Sessions, RIB application and detectors of BgpState, fed ExaBGP-shaped lines."""

from __future__ import annotations

import json

import pytest

from agent.config import parse_config
from collectors.bgp.state import BgpState
from tests.bgp_support import (
    PEERS,
    Clock,
    eor_line,
    kinds,
    make_config,
    state_line,
    up,
    update_line,
)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_session_life_counts_and_points(clock: Clock) -> None:
    state = BgpState(make_config(), clock=clock)
    assert kinds(up(state, "telecom")) == ["session_up"]
    assert kinds(state.handle_line(state_line("telecom", "up"))) == []  # no duplicate
    state.handle_line(update_line("telecom", ["10.0.0.0/24", "10.0.1.0/24"], [4134, 174]))
    state.handle_line(update_line("telecom", ["2001:db8:1000::/48"], [4134, 6939],
                                  next_hop="2001:db8:1::1"))
    state.handle_line(update_line("telecom", ["10.0.0.0/24"], [4134, 3356]))  # replaces
    state.handle_line(update_line("telecom", [], withdraw=["10.0.1.0/24", "10.9.9.0/24"]))
    clock.now += 2.5
    state.handle_line(eor_line("telecom"))
    clock.now += 7.5
    [telecom, unicom] = state.session_points()
    assert telecom.tags == {"carrier": "telecom", "peer": "100.64.1.1", "peer_as": "4134"}
    assert telecom.fields == {
        "state": "up", "up": True, "uptime_s": 10.0, "flaps": 0, "prefixes_v4": 1,
        "prefixes_v6": 1, "updates": 4, "withdrawals": 2, "converge_v4_s": 2.5}
    assert unicom.fields["state"] == "idle" and unicom.fields["up"] is False
    assert state.lookup("10.0.0.9")["telecom"]["as_path"] == "4134 3356"
    assert state.lookup("10.0.1.9") == {"telecom": None, "unicom": None}
    assert state.lookup("2001:db8:1000::1")["telecom"]["next_hop"] == "2001:db8:1::1"

    # a failed reconnect attempt while up is impossible; a real down drops everything
    down = state.handle_line(state_line("telecom", "down", "notification received (6,2)"))
    assert kinds(down) == ["session_down"]
    assert down[0].fields["detail"] == "notification received (6,2)"
    [telecom, _] = state.session_points()
    assert telecom.fields["prefixes_v4"] == telecom.fields["prefixes_v6"] == 0
    assert telecom.fields["flaps"] == 1 and telecom.fields["up"] is False
    # connection attempts that fail are not flaps
    state.handle_line(state_line("telecom", "connected"))
    assert kinds(state.handle_line(state_line("telecom", "down", "closing"))) == []
    assert state.sessions["telecom"].flaps == 1


def test_both_shapes_give_the_same_rib(clock: Clock) -> None:
    ribs = []
    for v42 in (True, False):
        state = BgpState(make_config(), clock=clock)
        state.handle_line(state_line("telecom", "up", v42=v42))
        state.handle_line(update_line("telecom", ["10.0.0.0/24"], [4134, 174, 9808], v42=v42,
                                      community=[[4134, 100]], med=7,
                                      **{"local-preference": 200}))
        ribs.append(dict(state.sessions["telecom"].rib.v4.items()))
    assert ribs[0] == ribs[1]
    [attrs] = ribs[0].values()
    assert (attrs.as_path, attrs.origin_as, attrs.communities, attrs.med, attrs.local_pref) == (
        "4134 174 9808", 9808, "4134:100", 7, 200)


def test_origin_mismatch_and_more_specific(clock: Clock) -> None:
    state = BgpState(make_config(), clock=clock)
    up(state, "telecom", "unicom")
    # our prefix through the other carrier, originated by us: no event
    assert state.handle_line(update_line("telecom", ["198.51.100.0/24"], [4134, 4837, 64512])) == []
    [hijack] = state.handle_line(update_line("unicom", ["198.51.100.0/24"], [4837, 65001]))
    assert hijack.tags == {"carrier": "unicom", "kind": "origin_mismatch"}
    assert hijack.fields["prefix"] == "198.51.100.0/24" and hijack.fields["origin_as"] == 65001
    assert hijack.fields["as_path"] == "4837 65001"
    # the same announcement again is not a new event; another origin is
    assert state.handle_line(update_line("unicom", ["198.51.100.0/24"], [4837, 65001])) == []
    assert kinds(state.handle_line(update_line("unicom", ["198.51.100.0/24"], [4837, 65002]))) \
        == ["origin_mismatch"]
    # more-specifics from anyone, even with our origin; unrelated and covering ones: none
    [ms] = state.handle_line(update_line("telecom", ["198.51.100.128/25"], [4134, 64512]))
    assert ms.tags["kind"] == "more_specific" and ms.fields["prefix"] == "198.51.100.128/25"
    assert "198.51.100.0/24" in str(ms.fields["detail"])
    assert state.handle_line(update_line(
        "telecom", ["198.51.101.0/24", "198.51.0.0/16", "198.51.100.0/23", "10.0.0.0/8"],
        [4134, 1])) == []
    both = state.handle_line(update_line("telecom", ["198.51.100.7/32", "198.51.100.64/26"],
                                         [4134, 65009]))
    assert kinds(both) == ["more_specific", "more_specific"]
    # visible in bgp_prefix, per carrier
    points = {p.tags["carrier"]: p.fields for p in state.prefix_points()}
    assert points["telecom"]["visible"] is True and points["telecom"]["origin_as"] == 64512
    assert points["telecom"]["as_path_len"] == 3
    assert points["unicom"]["origin_as"] == 65002
    state.handle_line(update_line("unicom", [], withdraw=["198.51.100.0/24"]))
    points = {p.tags["carrier"]: p.fields for p in state.prefix_points()}
    assert points["unicom"] == {"visible": False, "announced": True, "origin_as": 0,
                                "as_path": "", "as_path_len": 0, "next_hop": ""}


def test_own_prefix_missing(clock: Clock) -> None:
    state = BgpState(make_config(announce=["198.51.100.0/24", "2001:db8:ff::/48"],
                                 local6=True), clock=clock)
    # telecom's session is IPv4: the IPv6 prefix cannot be announced; unicom's is IPv6
    points = up(state, "telecom", "unicom")
    assert kinds(points) == ["session_up", "own_prefix_missing", "session_up",
                             "own_prefix_missing"]
    assert points[1].fields["prefix"] == "2001:db8:ff::/48"
    assert points[3].fields["prefix"] == "198.51.100.0/24"
    # operator withdrawal: event now, command to send, ack matched in order
    command, events = state.command_for("withdraw", "telecom", "198.51.100.0/24")
    assert command == "neighbor 100.64.1.1 withdraw route 198.51.100.0/24 next-hop self"
    assert kinds(events) == ["own_prefix_missing"]
    assert state.handle_line(b"done") == []
    fields = {(p.tags["carrier"], p.tags["prefix"]): p.fields for p in state.prefix_points()}
    assert fields[("telecom", "198.51.100.0/24")]["announced"] is False
    command, events = state.command_for("announce", "telecom", "198.51.100.0/24")
    assert events == []
    [refused] = state.handle_line(b"error")
    assert refused.tags["kind"] == "own_prefix_missing"
    assert refused.fields["detail"] == "ExaBGP refused to announce it"
    assert state.stats.acks == 2 and state.stats.ack_errors == 1
    with pytest.raises(ValueError):
        state.command_for("withdraw", "telecom", "192.0.2.0/24")
    with pytest.raises(ValueError):
        state.command_for("withdraw", "nobody", "198.51.100.0/24")


def test_watch_path_change(clock: Clock) -> None:
    state = BgpState(make_config(watch=["203.0.113.0/24"]), clock=clock)
    up(state, "telecom")
    [first] = state.handle_line(update_line("telecom", ["203.0.0.0/16"], [4134, 174]))
    assert first.tags["kind"] == "path_change" and first.fields["prefix"] == "203.0.113.0/24"
    assert first.fields["as_path"] == "4134 174"
    # a longer match takes over; an unrelated or more-specific route does not matter
    [second] = state.handle_line(update_line("telecom", ["203.0.113.0/24"], [4134, 3356, 64496]))
    assert second.fields["as_path"] == "4134 3356 64496"
    assert second.fields["detail"] == \
        "203.0.0.0/16 [4134 174] -> 203.0.113.0/24 [4134 3356 64496]"
    assert state.handle_line(update_line("telecom", ["203.0.113.128/25", "203.0.114.0/24"],
                                         [4134, 9])) == []
    # same path again: nothing; withdrawn: falls back to the /16
    assert state.handle_line(update_line("telecom", ["203.0.113.0/24"], [4134, 3356, 64496])) == []
    [back] = state.handle_line(update_line("telecom", [], withdraw=["203.0.113.0/24"]))
    assert back.fields["as_path"] == "4134 174"
    # the session going down loses it
    points = state.handle_line(state_line("telecom", "down", "hold timer expired"))
    assert kinds(points) == ["session_down", "path_change"]
    assert points[1].fields["detail"] == "203.0.0.0/16 [4134 174] -> no route"


def test_exabgp_lost_marks_everything_down(clock: Clock) -> None:
    state = BgpState(make_config(), clock=clock)
    up(state, "telecom", "unicom")
    state.handle_line(update_line("telecom", ["10.0.0.0/24"]))
    state.handle_line(update_line("unicom", ["10.0.0.0/24"]))
    state.command_for("withdraw", "telecom", "198.51.100.0/24")
    points = state.exabgp_lost("ExaBGP exited with code -9")
    assert kinds(points) == ["session_down", "session_down"]
    assert all(p.fields["detail"] == "ExaBGP exited with code -9" for p in points)
    assert all(len(s.rib) == 0 and s.state == "exabgp_down" for s in state.sessions.values())
    assert not state.pending  # acks of a dead ExaBGP never come
    # a restarted ExaBGP re-sends the full table: counts are exact, not doubled
    up(state, "telecom")
    state.handle_line(update_line("telecom", ["10.0.0.0/24"]))
    assert len(state.sessions["telecom"].rib) == 1
    assert state.exabgp_lost("again") and state.exabgp_lost("again") == []


def test_status_shape(clock: Clock) -> None:
    state = BgpState(make_config(), clock=clock)
    up(state, "telecom")
    state.handle_line("{broken")
    status = state.status()
    assert status["exabgp_version"] == "5.0.0"
    assert [s["carrier"] for s in status["sessions"]] == ["telecom", "unicom"]
    assert status["reader"]["bad_lines"] == 1 and status["reader"]["last_bad"]
    assert status["last_events"][-1]["kind"] == "session_up"
    json.dumps(status)


def test_inline_bookkeeping_matches_the_table(clock: Clock) -> None:
    """The hot path's inlined length and bucket counts equal a recount from the routes."""
    state = BgpState(make_config(), clock=clock)
    up(state, "telecom")
    prefixes = [f"10.{i // 256}.{i % 256}.0/24" for i in range(600)]
    prefixes += ["10.0.0.128/25", "10.0.0.4/30", "10.1.0.0/16", "10.2.0.0/20", "0.0.0.0/0",
                 "11.0.0.0/8", "10.0.0.0/24"]
    state.handle_line(update_line("telecom", prefixes, [4134, 1]))
    state.handle_line(update_line("telecom", [], withdraw=prefixes[::3]))
    state.handle_line(update_line("telecom", prefixes[::6], [4134, 2]))
    table = state.sessions["telecom"].rib.v4
    counts = [0] * 33
    count16: dict[int, int] = {}
    long24: dict[int, int] = {}
    for key in table.routes:
        network, length = key >> 8, key & 0xFF
        counts[length] += 1
        if length > 16:
            count16[network >> 16] = count16.get(network >> 16, 0) + 1
        if length > 24:
            long24[network >> 8] = long24.get(network >> 8, 0) + 1
    assert table.length_counts == counts
    assert table.lengths == tuple(n for n in range(32, -1, -1) if counts[n])
    assert table.count16 is not None
    assert {i: c for i, c in enumerate(table.count16) if c} == count16
    assert table.long24 == long24


def test_direct_path_equals_parser_path(clock: Clock) -> None:
    """handle_line's direct UPDATE path gives what the general parser path gives."""
    from collectors.bgp.parser import parse_line
    from tests.exabgp_captured import EXABGP_42, EXABGP_50

    lines = [state_line("telecom", "up"), state_line("unicom", "up")]
    lines += [update_line("telecom", [f"10.{i}.0.0/16", "198.51.100.0/24"], [4134, i + 1],
                          community=[[4134, i]]) for i in range(50)]
    lines += [update_line("unicom", ["2001:db8:1::/48", "198.51.100.0/25"], [4837, 65001],
                          next_hop="2001:db8:2::1")]
    lines += [update_line("telecom", [], withdraw=["10.3.0.0/16", "10.99.0.0/16"])]
    lines += [line.replace("100.64.50.1", "100.64.1.1") for line in EXABGP_42 + EXABGP_50]
    direct = BgpState(make_config(watch=["10.7.0.0/24"]), clock=clock)
    general = BgpState(make_config(watch=["10.7.0.0/24"]), clock=clock)
    direct_points = [p.as_record() for line in lines for p in direct.handle_line(line)]
    general_points = [p.as_record() for line in lines for p in general.handle(parse_line(line))]
    assert direct_points == general_points and direct_points
    for name in PEERS:
        a, b = direct.sessions[name], general.sessions[name]
        assert a.rib.v4.routes == b.rib.v4.routes and a.rib.v6.routes == b.rib.v6.routes
        assert (a.updates, a.withdrawals, a.flaps) == (b.updates, b.withdrawals, b.flaps)


def test_reconfigure_keeps_unchanged_sessions(clock: Clock) -> None:
    state = BgpState(make_config(watch=["10.7.0.0/24"]), clock=clock)
    up(state, "telecom", "unicom")
    state.handle_line(update_line("telecom", ["10.7.0.0/16", "10.8.0.0/16"], [4134, 1]))
    state.command_for("withdraw", "telecom", "198.51.100.0/24")
    telecom = state.sessions["telecom"]
    # unicom re-addressed (a new session), a second watch, a second own prefix
    new = parse_config({
        "agent": {"hostname": "t"},
        "carriers": [
            {"name": "telecom", "interface": "t", "bgp": {
                "peer": "100.64.1.1", "peer_as": 4134, "local_address": "100.64.1.2"}},
            {"name": "unicom", "interface": "u", "bgp": {
                "peer": "100.64.9.1", "peer_as": 4837, "local_address": "100.64.9.2"}}],
        "bgp": {"local_as": 64512, "router_id": "100.64.1.2",
                "announce": ["192.0.2.0/24"], "watch": ["10.8.0.0/24", "10.7.0.0/24"]},
    })
    points = state.reconfigure(new)
    assert [(p.tags["carrier"], p.tags["kind"]) for p in points] == [
        ("unicom", "session_down"), ("telecom", "path_change")]
    assert points[1].fields["prefix"] == "10.8.0.0/24"
    assert state.sessions["telecom"] is telecom and len(telecom.rib) == 2
    assert telecom.withdrawn_by_operator == set()  # no longer one of ours
    assert state.sessions["unicom"].peer == "100.64.9.1" and not state.sessions["unicom"].up
    assert set(state.by_peer) == {"100.64.1.1", "100.64.9.1"}
    # the new own prefix is watched for more-specifics, the old one no longer
    assert kinds(state.handle_line(update_line("telecom", ["192.0.2.128/25"]))) == [
        "more_specific"]
    assert state.handle_line(update_line("telecom", ["198.51.100.0/25"])) == []
    # the watch moved from index 0 to 1 and kept its best route: no spurious event
    assert kinds(state.handle_line(update_line("telecom", ["10.7.0.0/24"], [4134, 2]))) == [
        "path_change"]


def test_ipv6_prefixes_of_ours(clock: Clock) -> None:
    """An IPv6 prefix of ours on an IPv6 session: origin check and more-specifics too."""
    state = BgpState(make_config(announce=["2001:db8:ff::/48"], local6=True), clock=clock)
    points = up(state, "unicom")  # its session is IPv6: the prefix can be announced
    assert kinds(points) == ["session_up"]
    assert state.handle_line(update_line("unicom", ["2001:db8:ff::/48"], [4837, 4134, 64512],
                                         next_hop="2001:db8:2::1")) == []
    [hijack] = state.handle_line(update_line("unicom", ["2001:db8:ff::/48"], [4837, 65001],
                                             next_hop="2001:db8:2::1"))
    assert hijack.tags["kind"] == "origin_mismatch"
    [ms] = state.handle_line(update_line("unicom", ["2001:db8:ff:8000::/49"], [4837, 65002],
                                         next_hop="2001:db8:2::1"))
    assert ms.tags["kind"] == "more_specific" and ms.fields["prefix"] == "2001:db8:ff:8000::/49"
    assert state.handle_line(update_line("unicom", ["2001:db8:fe::/48", "2001:db8::/32"],
                                         [4837, 1], next_hop="2001:db8:2::1")) == []
    found = state.lookup("2001:db8:ff:8000::1")["unicom"]
    assert found["prefix"] == "2001:db8:ff:8000::/49" and found["origin_as"] == 65002
    assert state.lookup("2001:db8:1::1")["unicom"]["prefix"] == "2001:db8::/32"
