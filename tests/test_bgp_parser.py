"""The ExaBGP stream reader: both JSON shapes from real output, and bad input never crashes."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import parse_config
from collectors.bgp.parser import (
    KIND_ACK,
    KIND_BAD,
    KIND_EOR,
    KIND_NOTIFICATION,
    KIND_OTHER,
    KIND_STATE,
    KIND_UPDATE,
    as_path_of,
    communities_of,
    parse_line,
)
from collectors.bgp.rib import V4, V6
from collectors.bgp.state import BgpState
from tests.exabgp_captured import EXABGP_42, EXABGP_50


def config(**bgp: object) -> object:
    return parse_config({
        "agent": {"hostname": "t"},
        "carriers": [{"name": "telecom", "interface": "x", "bgp": {
            "peer": "100.64.50.1", "peer_as": 4134, "local_address": "100.64.50.0"}}],
        "bgp": {"local_as": 64512, "router_id": "100.64.50.0",
                "announce": ["198.51.100.0/24"], **bgp},
    })


@pytest.mark.parametrize("lines,version", [(EXABGP_42, "4.0.1"), (EXABGP_50, "5.0.0")])
def test_captured_kinds(lines: list[str], version: str) -> None:
    messages = [parse_line(line) for line in lines]
    assert all(m.kind != KIND_BAD for m in messages), [m.reason for m in messages]
    assert {m.version for m in messages} == {version}
    states = [m.state for m in messages if m.kind == KIND_STATE]
    assert states[:2] == ["connected", "up"]
    assert "down" in states
    eors = [m.family for m in messages if m.kind == KIND_EOR]
    assert eors[:2] == [V4, V6]
    assert any(m.kind == KIND_NOTIFICATION and "(6,2)" in m.reason for m in messages)
    assert messages[-1].kind == KIND_OTHER and messages[-1].reason == "shutdown"


def test_as_path_shapes_agree() -> None:
    first42 = next(m for m in map(parse_line, EXABGP_42)
                   if m.kind == KIND_UPDATE and m.attributes.get("community"))
    first50 = next(m for m in map(parse_line, EXABGP_50)
                   if m.kind == KIND_UPDATE and m.attributes.get("community"))
    assert first42.attributes["as-path"] == [4134, 3356, 64600]
    assert isinstance(first50.attributes["as-path"], dict)
    assert as_path_of(first42.attributes) == as_path_of(first50.attributes) == (
        "4134 3356 64600", 64600, 3)
    assert communities_of(first50.attributes, "community") == "4134:100"
    assert communities_of(first50.attributes, "large-community") == "4134:1:2"


def test_as_sets_have_no_origin() -> None:
    # 5.0 shape with a trailing AS_SET; 4.2 reports the set under its own key.
    v50 = {"as-path": {"0": {"element": "as-sequence", "value": [4134, 174]},
                       "1": {"element": "as-set", "value": [65001, 65002]}}}
    v42 = {"as-path": [4134, 174], "as-set": [65001, 65002]}
    assert as_path_of(v50) == as_path_of(v42) == ("4134 174 {65001,65002}", 0, 3)
    assert as_path_of({}) == ("", 0, 0)


def test_ipv6_prefix_under_two_next_hops_is_reported_once() -> None:
    line = next(line for line in EXABGP_50 if "ipv6 unicast" in line and "announce" in line)
    message = parse_line(line)
    assert message.announce == [(V6, "2001:db8:50::1", ["2001:db8:1000::/48"])]


@pytest.mark.parametrize("lines", [EXABGP_42, EXABGP_50])
def test_captured_stream_into_state(lines: list[str]) -> None:
    state = BgpState(config(), clock=lambda: 1000.0)  # type: ignore[arg-type]
    kinds = []
    for line in lines:
        for point in state.handle_line(line):
            kinds.append(point.tags["kind"])
    assert state.stats.bad_lines == 0
    assert state.stats.lines == len(lines)
    assert kinds.count("session_up") == kinds.count("session_down") >= 1
    session = state.sessions["telecom"]
    assert session.up is False and len(session.rib) == 0


def test_acks_and_blank_lines() -> None:
    assert parse_line(b"done\n").kind == KIND_ACK
    error = parse_line("error")
    assert error.kind == KIND_ACK and not error.ack_ok
    assert parse_line(b"\n").kind == KIND_OTHER


@pytest.mark.parametrize("line", [
    b"{",  # truncated
    EXABGP_50[3][: len(EXABGP_50[3]) // 2].encode(),  # an update cut in half
    b"[1, 2]",
    b'"text"',
    b'{"type": "update"}',
    b'{"type": "state", "neighbor": {"address": {"peer": "100.64.50.1"}}}',
    b'{"type": "update", "neighbor": {"address": {"peer": "100.64.50.1"}, "message": 5}}',
    b'{"type": "update", "neighbor": {"address": {"peer": "100.64.50.1"}, '
    b'"message": {"update": {"attribute": {"as-path": "x"}, '
    b'"announce": {"ipv4 unicast": {"1.1.1.1": [{"nlri": "10.0.0.0/8"}]}}}}}}',
    b"\xff\xfe garbage",
])
def test_bad_lines_are_counted(line: bytes) -> None:
    state = BgpState(config(), clock=lambda: 1.0)  # type: ignore[arg-type]
    state.handle_line(line)
    assert state.stats.bad_lines == 1
    assert len(state.sessions["telecom"].rib) == 0


def test_bad_prefixes_and_unknown_families_are_counted() -> None:
    state = BgpState(config(), clock=lambda: 1.0)  # type: ignore[arg-type]
    line = json.dumps({"exabgp": "5.0.0", "type": "update", "neighbor": {
        "address": {"peer": "100.64.50.1"}, "message": {"update": {
            "attribute": {"as-path": {"0": {"element": "as-sequence", "value": [4134]}}},
            "announce": {
                "ipv4 unicast": {"100.64.50.1": [{"nlri": "10.0.0.0/8"},
                                                  {"nlri": "10.0.0.0/99"},
                                                  {"nlri": "10.0.0.0/-1"},
                                                  {"nlri": "2001:db8::/32"},
                                                  {"nlri": "banana"},
                                                  {"nlri": 7}, {"prefix": "x"}, 8,
                                                  "10.1.0.0/16", "10.2.0.0/16 junk"]},
                "ipv4 flow": {"x": [{"nlri": "whatever"}]},
                "l2vpn evpn": {},
            }}}}})
    assert state.handle_line(line) == []
    assert state.stats.bad_prefixes == 8
    assert state.stats.bad_lines == 0
    assert state.stats.unknown_family == 2
    assert sorted(state.sessions["telecom"].rib.v4.routes) == [
        (0x0A000000 << 8) | 8, (0x0A010000 << 8) | 16]
    other_peer = line.replace("100.64.50.1\"}", "192.0.2.9\"}")
    state.handle_line(other_peer)
    assert state.stats.unknown_peer == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from([
        "type", "neighbor", "address", "peer", "message", "update", "announce", "withdraw",
        "attribute", "as-path", "nlri", "eor", "afi", "safi", "state", "ipv4 unicast",
        "ipv6 unicast", "ipv4 flow", "element", "value", "0", "community", "med",
        "local-preference", "origin", "notification", "reason", "as-set"]) | st.text(max_size=8),
        children, max_size=5),
    max_leaves=30,
)


def _mutate(line: str, data: st.DataObject) -> bytes:
    raw = line.encode()
    cut = data.draw(st.integers(0, len(raw)))
    mode = data.draw(st.sampled_from(["truncate", "flip", "insert", "keep"]))
    if mode == "truncate":
        return raw[:cut]
    if mode == "flip" and raw:
        index = min(cut, len(raw) - 1)
        return raw[:index] + bytes([raw[index] ^ data.draw(st.integers(1, 255))]) + raw[index + 1:]
    if mode == "insert":
        return raw[:cut] + data.draw(st.binary(max_size=8)) + raw[cut:]
    return raw


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_mutated_real_lines_never_crash(data: st.DataObject) -> None:
    state = BgpState(config(watch=["198.18.0.0/24"]), clock=lambda: 5.0)  # type: ignore[arg-type]
    lines = data.draw(st.lists(st.sampled_from(EXABGP_42 + EXABGP_50), min_size=1, max_size=12))
    fed = [_mutate(line, data) for line in lines]
    for line in fed:
        state.handle_line(line)
    assert state.stats.lines == len(fed)
    unparsable = sum(1 for line in fed if not _is_valid(line))
    # Every line the parser rejects is counted once; lines that parse but carry bad
    # attributes are counted when applied; no line is counted twice.
    assert unparsable <= state.stats.bad_lines <= len(fed)
    assert unparsable >= sum(1 for line in fed if not _json_object(line))


@settings(max_examples=400, deadline=None)
@given(value=json_values)
def test_fuzz_arbitrary_json_never_crashes(value: object) -> None:
    state = BgpState(config(watch=["198.18.0.0/24"]), clock=lambda: 5.0)  # type: ignore[arg-type]
    message = {"exabgp": "5.0.0", "type": "update",
               "neighbor": {"address": {"peer": "100.64.50.1"}, "message": {"update": value}}}
    state.handle_line(json.dumps(message))
    state.handle_line(json.dumps(value))
    assert state.stats.lines == 2
    state.session_points()
    state.prefix_points()


def _json_object(line: bytes) -> bool:
    stripped = line.strip()
    if stripped in (b"", b"done", b"error"):
        return True
    try:
        return isinstance(json.loads(stripped), dict)
    except ValueError:
        return False


def _is_valid(line: bytes) -> bool:
    return parse_line(line).kind != KIND_BAD
