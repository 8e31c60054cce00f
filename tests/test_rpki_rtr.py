"""RPKI sources against real things: a real StayRTR (Debian `stayrtr`) on 127.0.0.1
serving a VRP JSON file we write, and the JSON file read directly. The agent side runs as
in the daemon: BgpState fed ExaBGP-shaped lines, the RpkiManager's sources on an asyncio
loop, counts read from the `bgp_session` points."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import parse_config
from agent.points import Point
from collectors.bgp.rpki import RpkiManager
from collectors.bgp.rpki.rov import INVALID, NOT_FOUND, VALID
from collectors.bgp.rpki.rtr import RtrClient
from collectors.bgp.rpki.sources import FileSource
from collectors.bgp.state import BgpState
from tests.bgp_support import up, update_line
from tests.lab.stayrtr import StayRTR, stayrtr_missing
from tests.rpki_support import ROUTES, VRPS, brute, roas_json, validate

CARRIER = "telecom"


@pytest.fixture
def stayrtr(tmp_path: Path) -> Iterator[StayRTR]:
    reason = stayrtr_missing()
    if reason:
        pytest.skip(reason)
    server = StayRTR(tmp_path / "stayrtr")
    server.write(roas_json())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def agent_config(rpki: dict[str, Any]) -> Any:
    return parse_config({
        "agent": {"hostname": "t"},
        "carriers": [{"name": CARRIER, "interface": "eth1", "bgp": {
            "peer": "100.64.1.1", "peer_as": 4134, "local_address": "100.64.1.2"}}],
        "bgp": {"local_as": 64512, "router_id": "100.64.1.2",
                "announce": ["198.51.100.0/24"], "rpki": rpki},
    })


# The table of known answers as one carrier's table: a prefix is held once (the last
# announcement of it wins), so each prefix keeps its last (origin, answer) of ROUTES.
HELD = {prefix: (origin, expected) for prefix, origin, expected in ROUTES}
EXPECTED_HELD = {s: sum(1 for _, e in HELD.values() if e == s)
                 for s in (VALID, INVALID, NOT_FOUND)}


def feed_routes(state: BgpState) -> None:
    """The table of known answers, as the carrier would send it (origin last on the path;
    origin 0 stands for a path ending in an AS_SET)."""
    up(state, CARRIER)
    for prefix, (origin, _) in HELD.items():
        if prefix == "0.0.0.0/0":
            path: list[Any] = [4134, 64505]
        else:
            path = [4134, origin] if origin else [4134, [64496, 64497]]
        next_hop = "2001:db8::1" if ":" in prefix else None
        line = update_line(CARRIER, [prefix], path=path, next_hop=next_hop)
        if not origin:  # an AS_SET at the end: ExaBGP 5 writes it as its own segment
            data = json.loads(line)
            data["neighbor"]["message"]["update"]["attribute"]["as-path"] = {
                "0": {"element": "as-sequence", "value": [4134]},
                "1": {"element": "as-set", "value": [64496, 64497]}}
            line = json.dumps(data)
        state.handle_line(line)


def counts(state: BgpState) -> dict[int, int]:
    [point] = state.session_points()
    f = point.fields
    return {VALID: f["rpki_valid"], INVALID: f["rpki_invalid"],  # type: ignore[dict-item]
            NOT_FOUND: f["rpki_not_found"]}


class Agent:
    """BgpState and an RpkiManager on a loop of this test (as the daemon runs them)."""

    def __init__(self, rpki: dict[str, Any]) -> None:
        self.config = agent_config(rpki)
        self.state = BgpState(self.config)
        self.points: list[Point] = []
        assert self.config.bgp is not None and self.config.bgp.rpki is not None
        self.manager = RpkiManager(self.config.bgp.rpki, self.state, self.points.extend)

    async def run(self, body: Callable[[Agent], Awaitable[None]]) -> None:
        task = asyncio.ensure_future(self.manager.run())
        try:
            await body(self)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait(self, predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            got = predicate()
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {self.manager.status()}")
            await asyncio.sleep(0.05)


def expected_for(vrps: list[tuple[str, int, int]]) -> dict[int, int]:
    states = [brute(vrps, p, o if p != "0.0.0.0/0" else 64505) for p, (o, _) in HELD.items()]
    return {s: states.count(s) for s in (VALID, INVALID, NOT_FOUND)}


def test_exact_counts_from_stayrtr_and_a_route_flipped_by_an_incremental_update(
        stayrtr: StayRTR) -> None:
    async def body(agent: Agent) -> None:
        source = agent.manager.sources[0]
        assert isinstance(source, RtrClient)
        await agent.wait(lambda: agent.state.rov and agent.state.rov.index, 20, "VRPs")
        feed_routes(agent.state)
        assert counts(agent.state) == EXPECTED_HELD == expected_for(VRPS)
        for prefix, origin, expected in ROUTES:
            assert source.index is not None
            assert validate(source.index, prefix, origin) == expected
        assert (source.version, source.stats.resets, source.stats.serial_queries) == (1, 1, 0)
        [own] = [p for p in agent.state.prefix_points()]
        assert own.fields["rpki"] == "invalid"  # 198.51.100.0/22-24 is AS64501's
        serial = source.serial
        assert serial is not None
        # 192.0.2.0/24 moves to another AS; our own prefix gets a ROA
        changed = [("192.0.2.0/24", 24, 64999) if v == ("192.0.2.0/24", 24, 64500) else v
                   for v in VRPS] + [("198.51.100.0/24", 24, 64512)]
        stayrtr.write(roas_json(changed))
        await agent.wait(lambda: source.serial != serial, 20, "the incremental update")
        assert source.stats.resets == 1 and source.stats.serial_queries >= 1
        assert source.stats.notifies >= 1  # StayRTR told us (Serial Notify)
        assert (source.stats.announced, source.stats.withdrawn) == (len(VRPS) + 2, 1)
        assert counts(agent.state) == expected_for(changed)
        # the held 192.0.2.0/24 (origin AS64999) flips from invalid to valid
        assert HELD["192.0.2.0/24"] == (64999, INVALID)
        assert counts(agent.state) == {VALID: EXPECTED_HELD[VALID] + 1,
                                       INVALID: EXPECTED_HELD[INVALID] - 1,
                                       NOT_FOUND: EXPECTED_HELD[NOT_FOUND]}
        assert [p.fields["rpki"] for p in agent.state.prefix_points()] == ["valid"]
        kinds = [p.tags["kind"] for p in agent.points]
        assert kinds == ["rpki_own_invalid", "rpki_own_valid"]
        status = agent.manager.status()
        assert status["sources"][0]["serial"] == source.serial
        assert status["sources"][0]["in_force"] and status["vrps"] == len(VRPS) + 1
        assert status["carriers"][CARRIER]["valid"] == EXPECTED_HELD[VALID] + 1

    agent = Agent({"rtr": [f"127.0.0.1:{stayrtr.port}"]})
    asyncio.run(agent.run(body))


def test_version_0_cache(tmp_path: Path) -> None:
    """A cache that speaks only RTR version 0 (StayRTR -protocol 0): the client asked for
    version 1, falls back to 0, and gets the same set."""
    reason = stayrtr_missing()
    if reason:
        pytest.skip(reason)
    server = StayRTR(tmp_path / "stayrtr", protocol=0)
    server.write(roas_json())
    server.start()

    async def body(agent: Agent) -> None:
        source = agent.manager.sources[0]
        assert isinstance(source, RtrClient)
        await agent.wait(lambda: source.index is not None, 20, "VRPs over version 0")
        assert source.version == 0
        assert any("version 0" in e for e in source.stats.last_errors)
        feed_routes(agent.state)
        assert counts(agent.state) == EXPECTED_HELD

    try:
        asyncio.run(Agent({"rtr": [f"127.0.0.1:{server.port}"]}).run(body))
    finally:
        server.stop()


def test_error_report_is_logged_and_the_session_reestablished(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """StayRTR without data answers a Reset Query with Error Report 2 (No Data
    Available): logged, counted, and the client reconnects until the cache has data."""
    reason = stayrtr_missing()
    if reason:
        pytest.skip(reason)
    server = StayRTR(tmp_path / "stayrtr")
    server.start(wait_data=False)  # no file yet

    async def body(agent: Agent) -> None:
        source = agent.manager.sources[0]
        assert isinstance(source, RtrClient)
        await agent.wait(lambda: source.stats.error_reports >= 2, 20, "two Error Reports")
        assert source.index is None and source.stats.connects >= 2
        server.write(roas_json())  # StayRTR retries its initial load every 30 s
        await agent.wait(lambda: source.index is not None, 60, "VRPs after the errors")
        feed_routes(agent.state)
        assert counts(agent.state) == EXPECTED_HELD

    caplog.set_level(logging.WARNING, logger="collectors.bgp.rpki.rtr")
    try:
        asyncio.run(Agent({"rtr": [f"127.0.0.1:{server.port}"]}).run(body))
    finally:
        server.stop()
    logged = [r.getMessage() for r in caplog.records]
    assert any("Error Report from the cache: No Data Available (2): No data available" in m
               for m in logged), logged


def test_vrp_file_counts_and_a_malformed_file_keeps_the_previous_set(tmp_path: Path,
                                                                    caplog: Any) -> None:
    path = tmp_path / "vrps.json"
    path.write_text(json.dumps({"roas": roas_json()}))

    async def body(agent: Agent) -> None:
        source = agent.manager.sources[0]
        await agent.wait(lambda: agent.state.rov and agent.state.rov.index, 10, "VRPs")
        feed_routes(agent.state)
        assert counts(agent.state) == EXPECTED_HELD
        # a broken element: refused with its index, the set in force stays
        roas = roas_json()
        roas[4]["maxLength"] = 8
        path.write_text(json.dumps({"roas": roas}))
        await agent.wait(lambda: source.errors == 1, 10, "the bad file seen")
        assert "roas[4]: bad maxLength 8" in source.last_errors[-1]
        assert counts(agent.state) == EXPECTED_HELD and source.serial == 1
        # broken JSON: line and column
        path.write_text(json.dumps({"roas": roas_json()}, indent=1)[:-20])
        await agent.wait(lambda: source.errors == 2, 10, "the broken file seen")
        assert "line " in source.last_errors[-1] and "column" in source.last_errors[-1]
        assert counts(agent.state) == EXPECTED_HELD
        # a good change applies: AS0 over 192.0.2.0/24 makes the valid route invalid
        changed = [*VRPS, ("192.0.2.0/23", 24, 0)]
        path.write_text(json.dumps({"roas": roas_json(changed)}))
        await agent.wait(lambda: source.serial == 2, 10, "the good file")
        assert counts(agent.state) == expected_for(changed)
        assert counts(agent.state)[NOT_FOUND] == EXPECTED_HELD[NOT_FOUND] - 1

    caplog.set_level(logging.ERROR)
    asyncio.run(Agent({"vrp_file": str(path), "refresh": "1s"}).run(body))
    assert any("roas[4]: bad maxLength 8" in r.getMessage()
               and "previous VRP set stays in force" in r.getMessage() for r in caplog.records)


def test_a_new_set_is_seen_on_the_loop_only_with_its_routes_revalidated(
        tmp_path: Path) -> None:
    """The serial of a new set and `on_update` (which re-validates the held routes) come in
    one step of the loop: a coroutine polling the serial, as the tests and the status
    command do, never sees the new serial with the routes still judged by the old set.
    Installed from the parsing thread, it did, and a CI run read the old counts."""
    path = tmp_path / "vrps.json"
    path.write_text(json.dumps({"roas": roas_json()}))
    updated_serials: list[int | None] = []
    source = FileSource(path, lambda s, _changed: updated_serials.append(s.serial),
                        refresh_s=1.0, stale_after_s=3600.0, keep_expiry=None)

    async def main() -> list[int | None]:
        async def watch() -> list[int | None]:
            while source.serial is None:
                await asyncio.sleep(0)
            return list(updated_serials)

        watcher = asyncio.create_task(watch())
        await source.check()
        return await watcher

    assert asyncio.run(main()) == [1]


def test_preferred_source_and_stale_event(tmp_path: Path) -> None:
    """With a cache that never answers and a file, the file's set is used; a file whose
    data is older than stale_after raises rpki_stale once."""
    path = tmp_path / "vrps.json"
    old = int(time.time()) - 3 * 3600
    path.write_text(json.dumps({"metadata": {"generated": old}, "roas": roas_json()}))

    async def body(agent: Agent) -> None:
        await agent.wait(lambda: agent.state.rov and agent.state.rov.index, 10, "VRPs")
        assert agent.manager.active is agent.manager.sources[1]
        stale = [p for p in agent.points if p.tags["kind"] == "rpki_stale"]
        assert len(stale) == 1 and str(path) in str(stale[0].fields["detail"])
        assert agent.state.rov is not None and agent.state.rov.stale
        [point] = [p for p in agent.manager.points() if p.tags["source"] == str(path)]
        assert point.fields["stale"] is True and point.fields["in_force"] is True

    # 127.0.0.1:9 (discard): nothing listens; the client keeps retrying with back-off
    asyncio.run(Agent({"rtr": ["127.0.0.1:9"], "vrp_file": str(path),
                       "stale_after": "2h", "timeout": "1s"}).run(body))


def test_vrp_url_with_not_modified_and_a_change(tmp_path: Path) -> None:
    """vrp_url against a real HTTP server on 127.0.0.1 (the standard library's file
    server, which answers If-Modified-Since with 304): counts, a 304 keeps the set and
    refreshes its age, a new file is fetched and applied."""
    import functools
    import http.server
    import os
    import threading

    path = tmp_path / "vrps.json"
    path.write_text(json.dumps({"roas": roas_json()}))
    os.utime(path, (time.time() - 100, time.time() - 100))
    statuses: list[int] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_request(self, code: Any = "-", size: Any = "-") -> None:
            statuses.append(int(code))

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/vrps.json"

    async def body(agent: Agent) -> None:
        source = agent.manager.sources[0]
        await agent.wait(lambda: agent.state.rov and agent.state.rov.index, 10, "VRPs")
        feed_routes(agent.state)
        assert counts(agent.state) == EXPECTED_HELD
        await agent.wait(lambda: 304 in statuses, 10, "a 304")
        assert source.serial == 1 and source.connected
        changed = [*VRPS, ("192.0.2.0/23", 24, 0)]
        path.write_text(json.dumps({"roas": roas_json(changed)}))
        await agent.wait(lambda: source.serial == 2, 10, "the new file fetched")
        assert counts(agent.state) == expected_for(changed)

    try:
        asyncio.run(Agent({"vrp_url": url, "refresh": "1s"}).run(body))
    finally:
        server.shutdown()
        server.server_close()
    assert statuses[0] == 200 and 304 in statuses


def test_restarted_cache_new_session_is_read_again(stayrtr: StayRTR) -> None:
    """StayRTR restarted (a new session id, other data): the Serial Query of the old
    session is refused (StayRTR closes the connection), the client starts over with a
    Reset Query and the counts follow the new set."""
    async def body(agent: Agent) -> None:
        source = agent.manager.sources[0]
        assert isinstance(source, RtrClient)
        await agent.wait(lambda: source.index is not None, 20, "VRPs")
        feed_routes(agent.state)
        old_session = source.session_id
        stayrtr.stop()
        stayrtr.write(roas_json(VRPS[:5]))
        # StayRTR 0.5.1 derives its session id from the clock's second: restarted within
        # the same second it reuses the id (and serial 0), and no client can tell
        await asyncio.sleep(1.2)
        stayrtr.start()
        await agent.wait(lambda: source.session_id not in (None, old_session), 30,
                         "the new session")
        assert source.stats.resets == 2 and source.stats.serial_queries >= 1
        assert len(source.index or ()) == 5
        assert counts(agent.state) == expected_for(VRPS[:5])

    asyncio.run(Agent({"rtr": [f"127.0.0.1:{stayrtr.port}"]}).run(body))


def test_a_client_retrying_a_refused_cache_stops_when_cancelled(
        caplog: pytest.LogCaptureFixture) -> None:
    """Cancelled at any loop iteration around a refused connection, the client ends. On
    Python 3.11 `asyncio.wait_for` lost a cancel that came in the iteration its connection
    attempt failed; the client then logged the failure and retried forever (an agent
    stopped with its RTR cache down hung in teardown)."""
    import socket

    with socket.socket() as closed:  # a port nobody listens on: connect() is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]

    async def cancel_after(iterations: int) -> bool:
        client = RtrClient("127.0.0.1", port, lambda _client, _new: None)
        task = asyncio.ensure_future(client.run())
        for _ in range(iterations):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2.0)
        if not done:
            task.cancel()  # a second cancel lands in the back-off sleep
            await asyncio.wait({task}, timeout=2.0)
        return bool(done)

    async def main() -> list[int]:
        return [n for n in range(12) if not await cancel_after(n)]

    caplog.set_level(logging.ERROR, logger="collectors.bgp.rpki.rtr")  # a failure per retry
    assert asyncio.run(main()) == []


def test_no_product_module_times_out_with_wait_for() -> None:
    """The same loss awaits any retry loop: product code uses `asyncio.timeout`
    (docs/architecture.md, "Threads and asyncio")."""
    repo = Path(__file__).resolve().parents[1]
    users = [str(path.relative_to(repo)) for top in ("agent", "collectors")
             for path in (repo / top).rglob("*.py") if "asyncio.wait_for(" in path.read_text()]
    assert users == []
