"""PROBERS (one prober per method kind, one signature), the one method parser and the one
target resolver, through real sockets on loopback."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from agent.collector import CollectorContext
from agent.config import parse_config
from agent.pipeline import Pipeline
from agent.points import Point
from agent.scheduler import Scheduler
from agent.spool import Spool
from collectors.probes.collector import create
from collectors.probes.engine import ProbeEngine
from collectors.probes.methods import METHOD_KINDS, parse_method
from collectors.probes.probers import PROBERS
from collectors.probes.resolve import ResolveError, pick_address, resolve
from collectors.probes.sockets import DEFAULT_BINDING, Binding

V4, V6 = socket.AF_INET, socket.AF_INET6


def test_every_method_kind_has_one_prober() -> None:
    assert tuple(PROBERS) == METHOD_KINDS
    for text in ("icmp", "tcp:443", "dns", "dns:example.org", "http", "http:/x"):
        assert parse_method(text).kind in PROBERS


def test_pick_address_prefers_the_carriers_family_then_ipv4() -> None:
    both = [(V6, "2001:db8::1"), (V4, "192.0.2.1"), (V6, "2001:db8::2")]
    assert pick_address(both, None) == "192.0.2.1"
    assert pick_address(both, V6) == "2001:db8::1"
    assert pick_address(both, V4) == "192.0.2.1"
    assert pick_address([(V6, "2001:db8::1")], V4) == "2001:db8::1"
    assert pick_address([], None) is None


def test_resolve_literals_names_and_failures() -> None:
    v6_only = Binding("c", "eth9", None, "2001:db8::9")
    assert asyncio.run(resolve("192.0.2.1")) == "192.0.2.1"
    assert asyncio.run(resolve("2001:DB8::1", v6_only)) == "2001:db8::1"
    assert asyncio.run(resolve("localhost")) == "127.0.0.1"  # /etc/hosts, IPv4 preferred
    with pytest.raises(ResolveError) as raised:
        asyncio.run(resolve("no-such-host.invalid"))
    assert str(raised.value).startswith("cannot resolve target 'no-such-host.invalid': ")


def test_engine_dispatches_tcp_and_icmp_rounds_by_kind() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]

    async def rounds() -> list[tuple[str, int, int, str | None]]:
        engine = ProbeEngine()
        try:
            results = await asyncio.gather(
                engine.run_round(DEFAULT_BINDING, "127.0.0.1", f"tcp:{port}", 3, 0.01, 1.0),
                engine.run_round(DEFAULT_BINDING, "localhost", "icmp", 3, 0.01, 1.0),
                engine.run_round(DEFAULT_BINDING, "no-such-host.invalid", "icmp", 2, 0.01,
                                 0.1),
            )
        finally:
            engine.close()
        return [(r.method, r.stats.sent, r.stats.received, r.round.error) for r in results]

    try:
        tcp, icmp, unresolved = asyncio.run(rounds())
    finally:
        listener.close()
    assert tcp == (f"tcp:{port}", 3, 3, None)
    assert icmp == ("icmp", 3, 3, None)
    _method, sent, received, error = unresolved
    assert (sent, received) == (0, 0)  # nothing left: send errors, not loss
    assert error is not None and error.startswith("cannot resolve target")


def test_probe_group_under_the_scheduler_on_loopback(tmp_path: Path) -> None:
    """One entry (and its traceroute) through the default route to 127.0.0.1 under the
    real scheduler: points on aligned ticks, and stopping the group closes the raw sockets
    once, on the loop, though both collectors are closed at the same time from threads."""
    config = parse_config({
        "agent": {"data_dir": str(tmp_path)},
        "probes": [{"name": "lo", "target": "127.0.0.1", "methods": ["icmp"],
                    "interval": "500ms", "count": 2, "timeout": "100ms",
                    "traceroute": True}],
        "traceroute": {"interval": "1s", "max_hops": 2, "timeout": "100ms"},
    })
    loop_errors: list[dict[str, Any]] = []
    import scapy.layers.inet  # noqa: F401  (traceroute imports it on the loop at its first run)

    async def scenario() -> tuple[list[Point], list[Any], dict[str, Any]]:
        asyncio.get_running_loop().set_exception_handler(lambda _l, c: loop_errors.append(c))
        pipeline = Pipeline(Spool(tmp_path / "spool"), "h")
        pipeline.bind_loop(asyncio.get_running_loop())
        scheduler = Scheduler(pipeline)
        ctx = CollectorContext(config=config, emit=pipeline.emit, data_dir=tmp_path)
        built = create(ctx)
        for collector in built.collectors:
            scheduler.start(collector)
        await asyncio.sleep(2.2)
        probes = built.collectors[0].probes  # type: ignore[attr-defined]
        sockets = list(probes.engine.icmp._probers.values())
        section = built.status["probes"]()
        await scheduler.stop_all()
        scheduler.shutdown()
        return list(pipeline._take_batch()), sockets, section

    points, sockets, section = asyncio.run(scenario())
    kinds = {p.measurement for p in points}
    assert kinds == {"probe", "quality", "traceroute"}
    assert all(p.time_ns % 500_000_000 == 0 for p in points)
    assert all(p.fields["received"] == 2 for p in points if p.measurement == "probe")
    traces = [p.fields["reached"] for p in points if p.measurement == "traceroute"]
    assert traces and all(traces)
    assert section["probes"]["lo"]["rounds"] >= 3
    assert sockets and all(s.closed for s in sockets)
    assert loop_errors == []
