"""The bgp collectors as the daemon runs them, on an event loop thread of the test, with
ExaBGP (5.0 from the venv or 4.2 from Debian) started in the lab's agent namespace; what
they emit is recorded. The `agent_factory` fixture (conftest.py) makes them."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.collector import CollectorContext
from agent.config import parse_config
from agent.points import Point
from collectors.bgp import BgpSessionCollector, BgpStreamCollector, RpkiCollector, create
from collectors.bgp.exabgp import launch_prefix
from tests.lab.lab import ANNOUNCE, LOCAL_AS, WATCH

EXABGP_50 = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "exabgp")
EXABGP_42 = "/usr/sbin/exabgp"
HOLD_TIME_S = 9


def exabgp_versions() -> list[Any]:
    params = []
    for name, path in (("5.0", EXABGP_50), ("4.2", EXABGP_42)):
        marks = [] if Path(path).exists() else [pytest.mark.skip(reason=f"{path} not installed")]
        params.append(pytest.param(path, id=f"exabgp{name}", marks=marks))
    return params


class AgentBgp:
    """The bgp collectors on their own event loop thread; records what they emit."""

    def __init__(self, lab: Any, workdir: Path, exabgp: str, hold_time_s: int = HOLD_TIME_S,
                 carriers: list[Any] | None = None, rpki: dict[str, Any] | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        wrapper = workdir / "exabgp-in-agent-ns"
        # launch_prefix: the venv's ExaBGP 5 runs through the agent's lean launcher, as the
        # daemon starts it
        command = shlex.join(launch_prefix(exabgp))
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {lab.agent_ns} {command} "$@"\n')
        wrapper.chmod(0o755)
        carriers = carriers if carriers is not None else lab.carriers
        self.config = parse_config({
            "agent": {"hostname": "lab", "interval": "1s"},
            "carriers": [{"name": c.name, "interface": c.uplink, "bgp": {
                "peer": c.gateway, "peer_as": c.asn, "local_address": c.source,
                "hold_time": hold_time_s}} for c in carriers],
            "bgp": {"local_as": LOCAL_AS, "router_id": carriers[0].source,
                    "announce": list(ANNOUNCE), "watch": list(WATCH),
                    "exabgp": str(wrapper), **({"rpki": rpki} if rpki else {})},
        })
        self.points: list[tuple[float, Point]] = []
        self.lock = threading.Lock()
        self.ctx = CollectorContext(self.config, self._emit, workdir / "data")
        self.built = create(self.ctx)
        collectors = self.built.collectors
        self.stream = next(c for c in collectors if isinstance(c, BgpStreamCollector))
        self.polled = next(c for c in collectors if isinstance(c, BgpSessionCollector))
        self.rpki = next(c for c in collectors if isinstance(c, RpkiCollector))
        self.state = self.stream.state
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.task = self.call(lambda: asyncio.ensure_future(self.stream.run()))
        self.rpki_task = self.call(lambda: asyncio.ensure_future(self.rpki.run()))

    async def _cancel(self) -> None:
        self.rpki_task.cancel()
        self.task.cancel()
        with contextlib.suppress(BaseException):  # cancelled is the expected outcome
            await self.task
        with contextlib.suppress(BaseException):
            await self.rpki_task

    def _emit(self, points: Any) -> None:
        now = time.time()
        with self.lock:
            self.points.extend((now, p) for p in points)

    def call(self, fn: Callable[[], Any]) -> Any:
        async def wrapper() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(30)

    def control(self, command: str, **args: Any) -> Any:
        return self.call(lambda: self.built.controls[command](args))

    def events(self, kind: str, carrier: str | None = None,
               since: float = 0.0) -> list[tuple[float, Point]]:
        with self.lock:
            return [(t, p) for t, p in self.points
                    if p.measurement == "bgp_event" and p.tags["kind"] == kind
                    and (carrier is None or p.tags["carrier"] == carrier) and t >= since]

    def sessions(self) -> dict[str, dict[str, Any]]:
        return self.call(lambda: {p.tags["carrier"]: p.fields
                                  for p in self.state.session_points()})

    def prefixes(self) -> dict[tuple[str, str], dict[str, Any]]:
        return self.call(lambda: {(p.tags["carrier"], p.tags["prefix"]): p.fields
                                  for p in self.state.prefix_points()})

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            if self.task.done():
                self.call(self.task.result)  # raises what killed the collector
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                status = self.call(self.built.status["bgp"])
                raise AssertionError(f"timed out waiting for {what}; bgp status: {status}")
            time.sleep(0.05)

    def exabgp_pid(self) -> int | None:
        return self.call(lambda: self.stream.supervisor.status()["pid"])

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._cancel(), self.loop).result(30)
        self.stream.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def exported(lab: Any, carrier: str) -> tuple[int, int]:
    return lab.birds[carrier].exported("agent")  # type: ignore[no-any-return]


def counts_match(agent: AgentBgp, lab: Any) -> bool:
    sessions = agent.sessions()
    for c in lab.carriers:
        fields = sessions[c.name]
        if not fields["up"]:
            return False
        if (fields["prefixes_v4"], fields["prefixes_v6"]) != exported(lab, c.name):
            return False
    return True
