"""RPKI in the lab: the BIRD carriers' routes validated against a real StayRTR.

The agent's bgp collectors run as in test_bgp_lab.py (ExaBGP in the agent namespace),
the RTR client on the same loop, StayRTR on 127.0.0.1 serving VRPs written here. A route
that is invalid by the VRPs is announced at one carrier; the `bgp_session` points show it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from collectors.bgp.rib import V4, format_prefix
from tests.lab.agent_bgp import AgentBgp, counts_match
from tests.lab.stayrtr import StayRTR, stayrtr_missing
from tests.rpki_support import brute

pytestmark = pytest.mark.lab

INJECTED = "100.127.5.0/24"
VRPS = [
    ("10.0.0.0/16", 24, 0),  # AS0: the lab's 10.0.x.0/24 routes are invalid ...
    ("10.0.1.0/24", 24, 0),
    ("203.0.113.0/24", 24, 64496),  # the watched destination's real origin: valid
    ("100.127.0.0/16", 24, 64496),  # what the injected route claims to be under
    ("2001:db8:1000::/36", 48, 64496),  # IPv6 routes there: invalid (other origins)
]


def vrp_roas(vrps: list[tuple[str, int, int]]) -> list[dict[str, Any]]:
    return [{"asn": f"AS{a}", "prefix": p, "maxLength": m, "ta": "lab"} for p, m, a in vrps]


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[StayRTR]:
    reason = stayrtr_missing()
    if reason:
        pytest.skip(reason)
    server = StayRTR(tmp_path / "stayrtr")
    server.write(vrp_roas(VRPS))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def rib_truth(agent: AgentBgp, vrps: list[tuple[str, int, int]]) -> dict[str, tuple[int, ...]]:
    """Per carrier (valid, invalid, not_found) of the routes the agent holds, by the RFC
    literally (tests/rpki_support.py: brute)."""
    def collect() -> dict[str, tuple[int, ...]]:
        out = {}
        for name, session in agent.state.sessions.items():
            states = [0, 0, 0]
            for family, table in ((V4, session.rib.v4), (6, session.rib.v6)):
                for key, attrs in table.routes.items():
                    states[brute(vrps, format_prefix(family, key), attrs.origin_as)] += 1
            out[name] = (states[1], states[2], states[0])
        return out
    return agent.call(collect)  # type: ignore[no-any-return]


def session_counts(agent: AgentBgp) -> dict[str, tuple[int, ...]]:
    return {name: (f["rpki_valid"], f["rpki_invalid"], f["rpki_not_found"])
            for name, f in agent.sessions().items()}


def test_invalid_route_from_a_carrier_shows_in_its_counts(
        lab: Any, agent_factory: Callable[..., AgentBgp], cache: StayRTR) -> None:
    agent = agent_factory(rpki={"rtr": [f"127.0.0.1:{cache.port}"]})
    agent.wait(lambda: counts_match(agent, lab), 60, "sessions up with exact counts")
    agent.wait(lambda: "rpki_valid" in agent.sessions()["telecom"], 20, "VRPs from StayRTR")
    before = session_counts(agent)
    assert before == rib_truth(agent, VRPS)
    for carrier in lab.carriers:  # the lab's 10.0.x.0/24 routes under the AS0 ROA
        valid, invalid, _ = before[carrier.name]
        assert valid >= 1 and invalid >= 256
    try:
        lab.announce("telecom", INJECTED, as_path=[65001])  # origin 65001, ROA says 64496
        agent.wait(lambda: session_counts(agent)["telecom"][1] == before["telecom"][1] + 1,
                   10, "the invalid route counted at telecom")
        after = session_counts(agent)
        assert after["telecom"] == (before["telecom"][0], before["telecom"][1] + 1,
                                    before["telecom"][2])
        assert after == rib_truth(agent, VRPS)
        route = agent.control("bgp.lookup", address="100.127.5.1")["telecom"]
        assert (route["prefix"], route["origin_as"]) == (INJECTED, 65001)
        # the same prefix from the ROA's AS at another carrier: valid there
        lab.announce("unicom", INJECTED, as_path=[64496])
        agent.wait(lambda: session_counts(agent)["unicom"][0] > before["unicom"][0], 10,
                   "the valid route counted at unicom")
        assert session_counts(agent) == rib_truth(agent, VRPS)
    finally:
        lab.withdraw("telecom", INJECTED)
        lab.withdraw("unicom", INJECTED)
    agent.wait(lambda: session_counts(agent) == before, 10, "counts back after withdrawal")
