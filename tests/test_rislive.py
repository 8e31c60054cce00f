"""RIS Live over a real websocket: the client and collectors against a RIS Live stand-in
(tests/rislive/server.py) on 127.0.0.1, replaying real BGP updates (rrc18, MRT) with our
prefixes spliced in. Timings are scaled down through the config."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from agent.collector import CollectorContext
from agent.config import Config
from agent.points import Point
from collectors.bgp.prefixes import Prefix
from collectors.bgp.rislive import RisLiveStreamCollector, RisVisibilityCollector, create
from collectors.bgp.rislive.client import effective_url, subscribe_message
from tests.rislive import replay
from tests.rislive.config import make_config
from tests.rislive.replay import LOCAL_AS, OWN4, OWN6, ris_update
from tests.rislive.server import RisLiveServer

# Silence is judged only where a test sets its own timeout: at 1 s, a loaded host that held
# the loop (the filtered replay's 40,000 frames) made the client reconnect mid-test.
FAST = {"warmup": "0s", "silence_timeout": "30s", "ping_interval": "200ms",
        "reconnect_min": "50ms", "reconnect_max": "400ms", "proxy": "none"}


class Harness:
    """The two RIS Live collectors as the agent builds them, emitting into a list."""

    def __init__(self, config: Config) -> None:
        self.points: list[Point] = []
        self.ctx = CollectorContext(config, self.points.extend, Path("/nonexistent"))
        self.built = create(self.ctx)
        collectors = self.built.collectors
        assert [c.name for c in collectors] == ["ris_live", "bgp_visibility"]
        self.stream = collectors[0]
        self.poll = collectors[1]
        assert isinstance(self.stream, RisLiveStreamCollector)
        assert isinstance(self.poll, RisVisibilityCollector)
        self.shared = self.stream.shared
        self.client = self.shared.client
        self.view = self.shared.view
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.stream.run())

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    def tick(self) -> list[Point]:
        """One interval of the polled collector; its points go where the agent's would."""
        points = self.poll.collect()
        self.points.extend(points)
        return points

    def events(self, kind: str | None = None) -> list[Point]:
        return [p for p in self.points if p.measurement == "bgp_event"
                and (kind is None or p.tags["kind"] == kind)]

    def status(self) -> dict[str, Any]:
        return self.built.status["ris_live"]()


async def until(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.01)


def run(scenario: Callable[[RisLiveServer], Coroutine[Any, Any, None]]) -> None:
    async def main() -> None:
        server = RisLiveServer()
        await server.start()
        try:
            await asyncio.wait_for(scenario(server), 120)
        finally:
            await server.stop()

    asyncio.run(main())


def config_for(server: RisLiveServer, **ris: Any) -> Config:
    return make_config(**{"url": server.url, **FAST, **ris})


async def connected(h: Harness, server: RisLiveServer, subscriptions: int = 2) -> None:
    await until(lambda: server.live and len(server.live[-1].subscriptions) == subscriptions
                and h.client.connected, what="subscriptions")


async def drained(h: Harness, server: RisLiveServer) -> None:
    """Every frame the server sent has reached the view."""
    await until(lambda: h.view.stats.messages >= server.sent, 60, "frames to arrive")


def counts(h: Harness) -> dict[str, dict[str, int]]:
    result = {}
    for own in (OWN4, OWN6):
        c = h.view.counts(Prefix.parse(own))
        result[own] = {"any": c.any, "other": c.other, **c.carriers}
    return result


# ------------------------------------------------------------------ counts


@pytest.mark.parametrize("firehose", [False, True], ids=["filtered", "firehose"])
def test_replayed_updates_give_exact_counts_per_carrier(firehose: bool) -> None:
    frames = replay.spliced()

    async def scenario(server: RisLiveServer) -> None:
        server.firehose = firehose
        h = Harness(config_for(server, hijack_min_peers=50))
        h.start()
        await connected(h, server)
        # what the client subscribed with: RIS Live's documented ris_subscribe
        subscribes = [m for m in server.live[-1].received if m["type"] == "ris_subscribe"]
        assert [m["data"]["prefix"] for m in subscribes] == [OWN4, OWN6]
        assert all(m["data"]["moreSpecific"] is True and m["data"]["type"] == "UPDATE"
                   for m in subscribes)
        sent = await server.broadcast(frames)
        await drained(h, server)
        assert counts(h) == replay.truth(frames)
        assert h.view.stats.bad_messages == 0
        assert h.view.stats.subscribe_ok == 2
        if firehose:
            assert sent == len(frames)
            assert h.view.stats.unrelated > 40000
        else:
            assert sent < 100  # only frames with our prefixes (cut down to them)
        points = h.tick()
        by_key = {(p.tags["prefix"], p.tags["via"]): p.fields["peers"] for p in points
                  if p.measurement == "bgp_visibility"}
        for own, expected in replay.truth(frames).items():
            for via, peers in expected.items():
                assert by_key[(own, via)] == peers, (own, via)
        feed = next(p for p in points if p.measurement == "bgp_feed")
        assert feed.tags == {"feed": "ris_live"}
        assert feed.fields["connected"] is True and feed.fields["messages"] >= sent
        assert feed.fields["vantage_points"] == 32  # 35 peers, 3 withdrew
        status = h.status()
        assert status["feed"]["connected"] is True
        assert status["prefixes"][0]["carriers"] == {
            k: v for k, v in replay.truth(frames)[OWN4].items()
            if k not in ("any", "other")}
        await h.stop()

    run(scenario)


# ------------------------------------------------------------------ events


def test_hijack_by_n_vantage_points_raises_the_event_and_n_minus_1_does_not() -> None:
    async def scenario(server: RisLiveServer) -> None:
        h = Harness(config_for(server, hijack_min_peers=4))
        h.start()
        await connected(h, server)
        real = replay.peers()[:5]
        frames = [ris_update(p.address, p.asn, [*p.first_path[:2], 64666], [OWN4 if ":" not in
                  p.address else OWN6]) for p in real]
        # the real peers' first hops, another origin, 3 = N - 1 of them for each family...
        v4 = [p for p in replay.peers() if ":" not in p.address][:4]
        hijack = [ris_update(p.address, p.asn, [*p.first_path[:2], 64666], ["198.51.100.0/25"])
                  for p in v4]
        await server.broadcast(hijack[:3])
        await drained(h, server)
        assert h.events("ris_hijack") == []
        await server.broadcast(hijack[3:])
        await drained(h, server)
        [event] = h.events("ris_hijack")
        assert event.fields["prefix"] == "198.51.100.0/25"
        assert event.fields["origin_as"] == 64666 and event.fields["peers"] == 4
        assert h.status()["hijacks"] == [{"prefix": OWN4, "seen": "198.51.100.0/25",
                                          "origin_as": 64666, "peers": 4}]
        await server.broadcast([ris_update(v4[0].address, v4[0].asn,
                                           withdraw=["198.51.100.0/25"])])
        await drained(h, server)
        assert len(h.events("ris_hijack_end")) == 1
        del frames
        await h.stop()

    run(scenario)


def test_carrier_whose_vantage_points_switch_away_is_lost_then_restored() -> None:
    frames = replay.spliced()

    async def scenario(server: RisLiveServer) -> None:
        h = Harness(config_for(server, drop_fraction=0.5, min_usual_peers=2,
                               hijack_min_peers=50))
        h.start()
        await connected(h, server)
        await server.broadcast(frames)
        await drained(h, server)
        truth = replay.truth(frames)
        h.tick()
        h.tick()  # the usual level is learnt
        assert h.events("ris_visibility_lost") == []
        # every vantage point that reaches OWN4 through telecom moves to unicom
        via_telecom = [(peer, route) for peer, route in
                       h.view.seen[(4, Prefix.parse(OWN4).key)].items() if route.upstream == 4134]
        assert len(via_telecom) == truth[OWN4]["telecom"] > 0
        by_address = {p.address: p for p in replay.peers()}
        away = [ris_update(peer, by_address[peer].asn,
                           replay.spliced_path(by_address[peer], 4837), [OWN4])
                for peer, _ in via_telecom]
        await server.broadcast(away)
        await drained(h, server)
        points = h.tick()
        [lost] = h.events("ris_visibility_lost")
        assert lost.tags["carrier"] == "telecom" and lost.fields["prefix"] == OWN4
        assert lost.fields["peers"] == 0
        vis = {(p.tags["prefix"], p.tags["via"]): p.fields for p in points
               if p.measurement == "bgp_visibility"}
        assert vis[(OWN4, "telecom")]["lost"] is True
        assert vis[(OWN4, "unicom")]["peers"] == truth[OWN4]["unicom"] + len(via_telecom)
        assert vis[(OWN4, "any")]["lost"] is False
        assert h.status()["prefixes"][0]["lost"] == ["telecom"]
        back = [ris_update(peer, by_address[peer].asn,
                           replay.spliced_path(by_address[peer], 4134), [OWN4])
                for peer, _ in via_telecom]
        await server.broadcast(back)
        await drained(h, server)
        h.tick()
        [restored] = h.events("ris_visibility_restored")
        assert restored.tags["carrier"] == "telecom"
        assert restored.fields["peers"] == len(via_telecom)
        await h.stop()

    run(scenario)


def test_nothing_is_judged_lost_during_warmup() -> None:
    async def scenario(server: RisLiveServer) -> None:
        h = Harness(config_for(server, warmup="1h", min_usual_peers=1))
        h.start()
        await connected(h, server)
        peer = replay.peers()[1]
        await server.broadcast([ris_update(peer.address, peer.asn,
                                           replay.spliced_path(peer, 4134), [OWN4])])
        await drained(h, server)
        h.tick()
        await server.broadcast([ris_update(peer.address, peer.asn, withdraw=[OWN4])])
        await drained(h, server)
        points = h.tick()
        assert h.events() == []
        feed = next(p for p in points if p.measurement == "bgp_feed")
        assert feed.fields["warmed_up"] is False
        assert h.status()["feed"]["warmup_left_s"] > 3500
        await h.stop()

    run(scenario)


# ------------------------------------------------------------------ the connection


def test_closed_connections_are_reconnected_with_backoff_and_state_kept() -> None:
    async def scenario(server: RisLiveServer) -> None:
        h = Harness(config_for(server, silence_timeout="5s"))
        h.start()
        await connected(h, server)
        peer = replay.peers()[1]
        await server.broadcast([ris_update(peer.address, peer.asn,
                                           replay.spliced_path(peer, 4134), [OWN4])])
        await drained(h, server)
        server.mode = "close"  # every new connection is closed after its subscriptions
        await server.drop_all()
        await until(lambda: len(server.accepted) >= 7, 15, "reconnect attempts")
        gaps = [b - a for a, b in zip(server.accepted[1:], server.accepted[2:], strict=False)]
        # 50 ms doubling to the 400 ms cap (plus connection set-up)
        assert 0.04 < gaps[0] < 0.3, gaps
        assert gaps[1] > gaps[0] * 1.5 and gaps[2] > gaps[1] * 1.5, gaps
        assert all(g < 0.8 for g in gaps), gaps
        assert gaps[-1] > 0.35, gaps
        assert h.client.failures >= 5
        server.mode = "normal"
        await until(lambda: h.client.connected and server.live
                    and len(server.live[-1].subscriptions) == 2, 5, "reconnected")
        assert h.client.reconnects >= 1
        assert h.view.counts(Prefix.parse(OWN4)).carriers["telecom"] == 1  # kept
        feed = next(p for p in h.tick() if p.measurement == "bgp_feed")
        assert feed.fields["reconnects"] == h.client.reconnects
        await h.stop()

    run(scenario)


def test_silent_feed_is_seen_reconnected_and_reported_back() -> None:
    async def scenario(server: RisLiveServer) -> None:
        h = Harness(config_for(server, silence_timeout="500ms", ping_interval="100ms"))
        h.start()
        await connected(h, server)
        await asyncio.sleep(0.8)  # pongs keep a quiet feed alive
        assert h.events() == [] and h.client.view.stats.pongs >= 3
        first = len(server.accepted)
        server.mode = "mute"
        await server.drop_all()
        await until(lambda: h.events("ris_feed_silent"), 5, "silence to be seen")
        assert "no message from RIS Live" in str(h.events("ris_feed_silent")[0].fields["detail"])
        feed = next(p for p in h.tick() if p.measurement == "bgp_feed")
        assert feed.fields["silent"] is True
        await until(lambda: len(server.accepted) >= first + 2, 5, "reconnects while silent")
        assert len(h.events("ris_feed_silent")) == 1  # once per silence
        server.mode = "normal"
        await until(lambda: h.events("ris_feed_restored"), 10, "the feed to come back")
        assert h.client.silent is False
        await h.stop()

    run(scenario)


def test_malformed_frames_over_the_wire_are_counted_and_the_rest_applied() -> None:
    rng = random.Random(7)
    good = ris_update(replay.peers()[1].address, 65001, [65001, 4837, LOCAL_AS], [OWN4])
    garbage: list[str | bytes] = []
    for _ in range(700):
        garbage.append(good[: rng.randrange(len(good))])
        garbage.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 100))))
        garbage.append(json.dumps({"type": "ris_message", "data": rng.choice(
            [None, 1, "x", [], {"peer": "x"}, {"peer": "192.0.2.1", "type": "UPDATE",
                                              "announcements": [{"prefixes": [1]}]}])}))

    async def scenario(server: RisLiveServer) -> None:
        h = Harness(config_for(server))
        h.start()
        await connected(h, server)
        stats = h.view.stats
        base = stats.messages - stats.pongs
        await server.broadcast([*garbage, good], raw=True)
        await drained(h, server)
        assert stats.messages - stats.pongs - base == len(garbage) + 1
        assert h.view.stats.bad_messages == len(garbage)
        assert h.view.counts(Prefix.parse(OWN4)).carriers["unicom"] == 1
        assert h.client.connected and h.client.reconnects == 0
        feed = next(p for p in h.tick() if p.measurement == "bgp_feed")
        assert feed.fields["bad_messages"] == len(garbage)
        await h.stop()

    run(scenario)


def test_ris_error_is_counted_and_logged() -> None:
    async def scenario(server: RisLiveServer) -> None:
        h = Harness(config_for(server))
        h.start()
        await connected(h, server)
        await server.broadcast([json.dumps({"type": "ris_error",
                                            "data": {"message": "Invalid subscription"}})],
                               raw=True)
        await drained(h, server)
        assert h.view.stats.ris_errors == 1
        assert h.status()["messages"]["last_errors"] == ["Invalid subscription"]
        await h.stop()

    run(scenario)


def test_unreachable_server_is_retried_and_goes_silent() -> None:
    async def scenario(server: RisLiveServer) -> None:
        await server.stop()
        h = Harness(config_for(server, silence_timeout="300ms", ping_interval="100ms"))
        h.start()
        await until(lambda: h.client.failures >= 3, 5, "failed attempts")
        assert not h.client.connected and h.client.last_error
        await until(lambda: h.events("ris_feed_silent"), 5, "silence")
        feed = next(p for p in h.tick() if p.measurement == "bgp_feed")
        assert feed.fields["connected"] is False and "last_message_age_s" not in feed.fields
        await h.stop()
        await server.start()  # for the harness's own stop

    run(scenario)


def test_url_client_and_subscription_shape() -> None:
    config = make_config(url="wss://ris-live.ripe.net/v1/ws/?client=x&a=1", client="edge-1")
    assert config.bgp is not None and config.bgp.ris_live is not None
    assert effective_url(config.bgp.ris_live) == \
        "wss://ris-live.ripe.net/v1/ws/?a=1&client=edge-1"
    default = make_config()
    assert default.bgp is not None and default.bgp.ris_live is not None
    assert effective_url(default.bgp.ris_live) == \
        "wss://ris-live.ripe.net/v1/ws/?client=egress-agent"
    assert json.loads(subscribe_message(OWN4)) == {"type": "ris_subscribe", "data": {
        "prefix": OWN4, "moreSpecific": True, "lessSpecific": False, "type": "UPDATE",
        "socketOptions": {"acknowledge": True}}}


def test_reload_with_a_new_prefix_resubscribes() -> None:
    async def scenario(server: RisLiveServer) -> None:
        h = Harness(config_for(server))
        h.start()
        await connected(h, server)
        new = config_for(server, hijack_min_peers=7)
        assert await h.stream.reconfigure(new) and await h.poll.reconfigure(new)
        assert h.view.settings.hijack_min_peers == 7
        assert len(server.accepted) == 1  # thresholds only: same connection
        bigger = make_config(announce=[OWN4, OWN6, "192.0.2.0/24"],
                             **{"url": server.url, **FAST})
        assert await h.stream.reconfigure(bigger)
        await until(lambda: len(server.accepted) == 2 and server.live
                    and len(server.live[-1].subscriptions) == 3, 5, "resubscription")
        await h.stop()

    run(scenario)


# ------------------------------------------------------------------ the agent, end to end


def test_agent_writes_bgp_visibility_from_ris_live(tmp_path: Path) -> None:
    """The real daemon (bgp collector with ExaBGP, [bgp.ris_live] at the stand-in) writes
    bgp_visibility points equal to the replayed truth, bgp_feed, and shows both in
    `status`."""
    import sys

    from agent.control import call
    from tests.agentproc import AgentProcess, spool_points, write_config
    from tests.rislive.server import ThreadedServer

    exabgp = Path(sys.executable).parent / "exabgp"
    if not exabgp.exists():
        pytest.skip("exabgp is not installed in this venv")
    frames = replay.spliced()
    truth = replay.truth(frames)
    served = ThreadedServer()
    try:
        carriers = "".join(f"""
[[carriers]]
name = "{name}"
interface = "lo"
  [carriers.bgp]
  peer = "127.0.0.{i + 2}"
  peer_as = {asn}
  local_address = "127.0.0.1"
""" for i, (name, asn) in enumerate(replay.CARRIERS.items()))
        body = carriers + f"""
[bgp]
local_as = {LOCAL_AS}
router_id = "192.0.2.1"
announce = ["{OWN4}", "{OWN6}"]
exabgp = "{exabgp}"

[bgp.ris_live]
url = "{served.server.url}"
proxy = "none"
warmup = "0s"
interval = "500ms"
"""
        config = write_config(tmp_path, body, interval="1s", collectors='["bgp"]')
        agent = AgentProcess(config, duration_s=20)
        try:
            deadline = time.monotonic() + 15
            while not (served.server.live and len(served.server.live[-1].subscriptions) == 2):
                assert time.monotonic() < deadline, agent.log()
                time.sleep(0.05)
            served.call(served.server.broadcast(frames))
            socket_path = tmp_path / "run" / "control.sock"

            def ris_status() -> dict[str, Any]:
                status: dict[str, Any] = call(socket_path, "status", timeout_s=5.0)
                return status["ris_live"]

            deadline = time.monotonic() + 15
            while ris_status()["prefixes"][0]["any"] != truth[OWN4]["any"]:
                assert time.monotonic() < deadline, agent.log()
                time.sleep(0.1)
            status = ris_status()
            assert status["feed"]["connected"] is True
            assert status["prefixes"][1]["any"] == truth[OWN6]["any"]
            # `egress-agent status` shows the feed and each prefix per carrier
            from agent.cli import render_status

            text = render_status(call(socket_path, "status", timeout_s=5.0))
            assert "ris_live: connected, 32 vantage points" in text, text
            t4 = truth[OWN4]
            assert (f"  {OWN4}: any {t4['any']}  |  telecom {t4['telecom']}  unicom "
                    f"{t4['unicom']}  mobile {t4['mobile']}  other {t4['other']}  |  "
                    "foreign origin 0  more-specific 0") in text, text
            assert "UNEXPECTED UPSTREAM AS64499 for 2001:db8:100::/48" in text, text
            time.sleep(1.5)  # a few intervals of points with the final counts
            agent.terminate()
        finally:
            if agent.proc.poll() is None:
                agent.kill()
    finally:
        served.close()
    points = spool_points(tmp_path / "data", "bgp_visibility")
    assert points, agent.log()
    latest: dict[tuple[str, str], Any] = {}
    for point in sorted(points, key=lambda p: p.time_ns):
        assert point.tags["host"] == "test-host"
        latest[(point.tags["prefix"], point.tags["via"])] = point.fields["peers"]
    for own, expected in truth.items():
        for via, peers in expected.items():
            assert latest[(own, via)] == peers, (own, via)
    feed = spool_points(tmp_path / "data", "bgp_feed")
    assert feed and feed[-1].fields["connected"] is True
    assert isinstance(feed[-1].fields["messages"], int) and feed[-1].fields["messages"] > 40
    # 3 vantage points reach our IPv6 prefix through AS64499 (none of ours): at the default
    # hijack_min_peers = 3 that is an unexpected upstream
    events = spool_points(tmp_path / "data", "bgp_event")
    assert [(e.tags["kind"], e.fields["prefix"]) for e in events] == [
        ("ris_unexpected_upstream", OWN6)], agent.log()
