"""Probes through the lab's carriers: paths, RTT, loss, jitter, TCP/DNS/HTTP, failures, CLI.

Every probe runs inside the lab's agent namespace on sockets bound to a carrier's uplink.
Each carrier's delay line adds a different delay (telecom 10 ms, unicom 25, mobile 40 by
default), so the measured RTT proves which uplink a probe used.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from agent.collector import CollectorContext
from agent.config import load_config
from agent.points import LineEncoder, Point
from collectors.probes.collector import ProbeSet
from collectors.probes.engine import ProbeEngine
from collectors.probes.rounds import ProbeResult
from collectors.probes.sockets import Binding
from collectors.probes.stats import compute_stats
from collectors.probes.traceroute import TraceResult, traceroute
from tests.lab.wire import near_injected_delay

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def in_agent_ns(lab: Any, fn: Callable[[], T]) -> T:
    from tests.lab.netns import in_netns

    return in_netns(lab.agent_ns, fn)


def binding(lab: Any, name: str) -> Binding:
    c = lab.carrier(name)
    return Binding(c.name, c.uplink, c.source, c.source6)


def probe(lab: Any, carrier: str, target: str, method: str = "icmp", count: int = 20,
          interval_s: float = 0.01, timeout_s: float = 1.0) -> ProbeResult:
    async def go() -> ProbeResult:
        engine = ProbeEngine()
        try:
            return await engine.run_round(binding(lab, carrier), target, method, count,
                                          interval_s, timeout_s)
        finally:
            engine.close()

    return in_agent_ns(lab, lambda: asyncio.run(go()))


def lab_toml(lab: Any, extra: str = "") -> str:
    lines = ["[agent]", 'hostname = "lab-agent"',
             f'control_socket = "{lab.workdir}/probe-test-control.sock"',
             f'data_dir = "{lab.workdir}/probe-test-data"', ""]
    for c in lab.carriers:
        lines += ["[[carriers]]", f'name = "{c.name}"', f'interface = "{c.uplink}"',
                  f'source = "{c.source}"', f'source6 = "{c.source6}"', ""]
    return "\n".join(lines) + extra


@pytest.fixture(autouse=True)
def warm_paths(lab: Any) -> None:
    """First packets of a fresh lab wait for neighbour resolution along the path (up to
    ~1 s); send a few once per carrier so measuring tests see the steady state."""
    if getattr(lab, "_probe_tests_warm", False):
        return
    for c in lab.carriers:
        probe(lab, c.name, lab.target, count=3, interval_s=0.05, timeout_s=2.0)
        probe(lab, c.name, c.gateway6, count=1, timeout_s=2.0)
    lab._probe_tests_warm = True


@pytest.fixture
def lab_config(lab: Any, tmp_path: Path) -> Path:
    path = tmp_path / "lab.toml"
    path.write_text(lab_toml(lab))
    return path


def run_cli(lab: Any, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "agent.cli", *args]
    return subprocess.run(["ip", "netns", "exec", lab.agent_ns, *argv], capture_output=True,
                          text=True, timeout=120, cwd=REPO, check=False)


def binomial_interval(n: int, p: float, confidence: float = 0.99) -> tuple[int, int]:
    """Central interval of Binomial(n, p) holding at least `confidence` of the mass."""
    tail = (1 - confidence) / 2
    cdf = 0.0
    low = 0
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    for k in range(n + 1):
        cdf += pmf[k]
        if cdf > tail:
            low = k
            break
    cdf = 0.0
    high = n
    for k in range(n, -1, -1):
        cdf += pmf[k]
        if cdf > tail:
            high = k
            break
    return low, high


# ---------------------------------------------------------------- the wire


WIRE_METHODS = ["icmp", "tcp:443", "dns:www.example.org", "http:/health"]
TRIPS = {"icmp": 1, "tcp": 1, "dns": 1, "http": 2}


@contextlib.contextmanager
def agent_load(gil: bool, cpu_processes: int) -> Iterator[None]:
    """What a busy agent host looks like to the prober: other threads of the agent holding
    the GIL (encoding a 50,000-point batch holds it ~20 ms, every ~30 ms) and other
    processes keeping every core busy."""
    stop = threading.Event()
    batch = [Point("link", {"interface": f"eth{i}", "carrier": "c"},
                   {"rx_bytes": i, "rx_bps": i / 7.0}, 1) for i in range(50_000)]

    def agent_work() -> None:
        encoder = LineEncoder()
        while not stop.is_set():
            encoder.encode_body(batch)
            time.sleep(0.01)

    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(cpu_processes)]
    worker = threading.Thread(target=agent_work, daemon=True) if gil else None
    try:
        if worker is not None:
            worker.start()
        yield
    finally:
        stop.set()
        if worker is not None:
            worker.join()
        for proc in busy:
            proc.kill()
            proc.wait()


def agent_vs_wire_ms(lab: Any, carrier: str, method: str, count: int, interval_s: float,
                     http_port: int = 80) -> tuple[ProbeResult, list[tuple[float, float]]]:
    """One round through `carrier` with its uplink captured: the agent's result and, per
    probe in send order, (agent RTT, wire RTT). Every probe must have left and been
    answered on the wire, and the agent must have counted exactly those.

    For ICMP, DNS and HTTP's request, whose send stamp is the driver's, the far end of the uplink is
    captured too: the wire's RTT of a probe lies between the far end's (request received
    there) and the tap's, whose send stamp is early by however long the vCPU was taken
    away just before the driver (`icmp_rtts_from_far_end`, `dns_rtts_from_far_end`).
    Loaded CI runs had the tap at 16.17 ms where the agent gave 10.70 ms through a 10 ms
    delay line (ICMP), and DNS queries 0.5 to 2.9 ms early at the tap, several in one
    round. The wire RTT given is the point of that interval nearest the agent's.

    For TCP (and the handshake of HTTP) the agent reports the kernel's sample of the
    handshake, which also holds the host's own kernel time on either side of the wire
    (`tests/lab/ktrace.py`): tens of µs, but a loaded CI host took the vCPU away there and
    had probe 0 2.5 ms above the tap. The wire RTT given is the point of [tap, tap + that
    traced host time] nearest the agent's."""
    from tests.lab.ktrace import HandshakeTrace
    from tests.lab.wire import (
        WireCapture,
        dns_rtts_from_far_end,
        http_rtts_from_far_end,
        icmp_rtts_from_far_end,
        nearest_in,
        tcp_rtts,
        wire_rtts,
    )

    c = lab.carrier(carrier)
    with contextlib.ExitStack() as stack:
        capture = stack.enter_context(WireCapture(lab.agent_ns, c.uplink))
        kind, _, arg = method.partition(":")
        far_end = stack.enter_context(WireCapture(c.ns, "agent")) \
            if kind in ("icmp", "dns", "http") else None
        handshake_port = int(arg) if kind == "tcp" else http_port if kind == "http" else None
        kernel = stack.enter_context(HandshakeTrace(c.uplink, handshake_port, c.source)) \
            if handshake_port is not None else None
        result = probe(lab, carrier, lab.target, method=method, count=count,
                       interval_s=interval_s)
    assert capture.dropped == 0
    wire = wire_rtts(capture.frames, method, lab.target, http_port)
    assert len(wire) == count, (method, len(wire), result.round)
    assert all(w.rtt_ms is not None for w in wire), (method, wire)
    assert result.stats.received == count, (method, result.round)
    far = wire
    if far_end is not None:
        if kind == "http":
            far = http_rtts_from_far_end(capture.frames, far_end.frames, lab.target, http_port)
        else:
            from_far_end = {"icmp": icmp_rtts_from_far_end, "dns": dns_rtts_from_far_end}[kind]
            far = from_far_end(capture.frames, far_end.frames, lab.target)
    assert len(far) == count, (method, len(far))
    host_ms = [0.0] * count
    if kernel is not None:
        # the lab runs as root, where tracefs can be mounted: without the trace every
        # handshake would be read strictly (CI ran so, unseen, until tracefs was mounted)
        assert kernel.handshakes is not None, "no kernel trace of the handshakes (tracefs)"
        assert len(kernel.handshakes) == count, (method, kernel.handshakes)
        host_ms = [h.host_ms for h in kernel.handshakes]
    handshakes: list[float | None] = [None] * count
    if kind == "http":  # shown apart: which half of the probe a difference is in
        split = [w.rtt_ms for w in tcp_rtts(capture.frames, lab.target, http_port)]
        handshakes = split if len(split) == count else handshakes
    pairs = []
    # per probe, shown when a test fails (pytest prints what a failed test printed)
    print(f"{method}: probe, agent ms, tap ms (handshake), far-end ms, traced host ms")
    for i, (agent_ms, at_tap, at_far, host, handshake) in enumerate(
            zip(result.round.rtts_ms, wire, far, host_ms, handshakes, strict=True)):
        print(f"  {i} {agent_ms} {at_tap.rtt_ms} ({handshake}) {at_far.rtt_ms} {host:.3f}")
        if agent_ms is not None and at_tap.rtt_ms is not None and at_far.rtt_ms is not None:
            pairs.append((agent_ms, nearest_in(at_far.rtt_ms, at_tap.rtt_ms + host,
                                               agent_ms)))
    return result, pairs


def assert_matches_wire(method: str, pairs: list[tuple[float, float]],
                        label: str = "") -> None:
    """Within 0.5 ms of the wire at the median and 2 ms at worst, probe by probe."""
    diffs = sorted(abs(agent - wire) for agent, wire in pairs)
    median_diff = diffs[len(diffs) // 2]
    if label:
        print(f"agent-vs-wire {method} {label}: median {median_diff:.3f} ms, "
              f"max {diffs[-1]:.3f} ms")
    worst = max(range(len(pairs)), key=lambda i: abs(pairs[i][0] - pairs[i][1]))
    detail = (method, f"worst: probe {worst} agent {pairs[worst][0]:.3f} ms, wire "
              f"{pairs[worst][1]:.3f} ms", pairs)
    assert median_diff <= 0.5, detail
    assert diffs[-1] <= 2.0, detail


# ---------------------------------------------------------------- ICMP


def test_each_carrier_leaves_through_its_own_uplink(lab: Any) -> None:
    """Every probe of a carrier is on that carrier's uplink (captured there) and its RTT is
    the wire's; the medians differ by carrier, as their delay lines do."""
    medians = {}
    for c in lab.carriers:
        result, pairs = agent_vs_wire_ms(lab, c.name, "icmp", count=30, interval_s=0.01)
        assert_matches_wire("icmp", pairs)
        assert result.stats.rtt_median_ms is not None
        assert near_injected_delay(result.stats.rtt_median_ms, c.delay_ms), (c.name,
                                                                              result.stats)
        medians[c.name] = result.stats.rtt_median_ms
    by_delay = sorted(lab.carriers, key=lambda c: c.delay_ms)
    assert [medians[c.name] for c in by_delay] == sorted(medians.values()), medians


def test_probes_are_counted_on_the_carriers_uplink_only(lab: Any) -> None:
    before = {c.name: lab.counters(c.name)["rx_packets"] for c in lab.carriers}
    result = probe(lab, "unicom", lab.target, count=300, interval_s=0.001)
    after = {c.name: lab.counters(c.name)["rx_packets"] for c in lab.carriers}
    assert result.stats.received == 300
    assert after["unicom"] - before["unicom"] >= 300
    for name in before:
        if name != "unicom":
            assert after[name] - before[name] < 100, (name, after[name] - before[name])


def test_carrier_only_target_is_unreachable_through_another_carrier(lab: Any) -> None:
    telecom = lab.carrier("telecom")
    via_own = probe(lab, "telecom", telecom.target, count=5)
    via_other = probe(lab, "unicom", telecom.target, count=5, timeout_s=0.3)
    assert via_own.stats.received == 5
    assert via_other.stats.received == 0
    assert via_other.stats.loss_pct == 100.0


def test_ipv6_through_each_carrier_uplink(lab: Any) -> None:
    # Router hop 1 answers IPv6 echo itself (no delay line): proves the v6 binding works.
    for c in lab.carriers:
        result = probe(lab, c.name, c.gateway6, count=5)
        assert result.stats.received == 5, (c.name, result.round)
        assert result.address == c.gateway6


def test_loss_within_binomial_interval(lab: Any) -> None:
    """Lost probes within the 99 % binomial interval of the injected loss. A correct engine
    falls outside it in 1 % of rounds, so a second, independent round decides: a false
    failure needs both outside (0.01 %), a real bias fails both."""
    n, loss_pct = 400, 20.0
    low, high = binomial_interval(n, loss_pct / 100)
    lab.set_delay("mobile", loss_pct=loss_pct)
    # The delay line re-reads its rules when it next wakes: wake it before measuring.
    probe(lab, "mobile", lab.target, count=3, interval_s=0.01, timeout_s=0.2)
    rounds = []
    try:
        for _ in range(2):
            result = probe(lab, "mobile", lab.target, count=n, interval_s=0.002, timeout_s=1.0)
            assert result.round.duplicates == 0 and result.round.late == 0
            rounds.append(result.stats.sent - result.stats.received)
            if low <= rounds[-1] <= high:
                break
    finally:
        lab.set_delay("mobile", loss_pct=0.0)
    assert low <= rounds[-1] <= high, (rounds, low, high)


def test_jitter_matches_injected_jitter(lab: Any) -> None:
    jitter_ms = 8.0
    c = lab.carrier("unicom")
    lab.set_delay("unicom", jitter_ms=jitter_ms)
    probe(lab, "unicom", lab.target, count=3, interval_s=0.01, timeout_s=0.5)  # rules reload
    try:
        result, pairs = agent_vs_wire_ms(lab, "unicom", "icmp", count=300, interval_s=0.01)
    finally:
        lab.set_delay("unicom", jitter_ms=0.0)
    stats = result.stats
    assert_matches_wire("icmp", pairs)
    wire = compute_stats([w for _a, w in pairs])
    assert stats.jitter_ms is not None and wire.jitter_ms is not None
    assert abs(stats.jitter_ms - wire.jitter_ms) <= 0.1, (stats, wire)
    # delay + U(-J, J): consecutive differences average 2J/3, stddev J/sqrt(3); coarse
    # bounds: the user-space delay line can be late on a busy 2-core machine
    assert stats.jitter_ms == pytest.approx(2 * jitter_ms / 3, rel=0.25)
    assert stats.stddev_ms == pytest.approx(jitter_ms / math.sqrt(3), rel=0.25)
    assert stats.rtt_median_ms is not None  # jitter is symmetric: median about the delay
    assert c.delay_ms - 3.0 <= stats.rtt_median_ms <= c.delay_ms + 15.0, stats
    assert stats.rtt_min_ms is not None and stats.rtt_min_ms >= c.delay_ms - jitter_ms - 0.5


def test_unreachable_target_is_a_failure_not_a_crash(lab: Any) -> None:
    for method in ("icmp", "tcp:80", "dns", "http"):
        result = probe(lab, "telecom", lab.sink, method=method, count=3, timeout_s=0.3)
        assert result.stats.sent == 3
        assert result.stats.received == 0, method
        assert result.stats.rtt_median_ms is None


# ---------------------------------------------------------------- TCP, DNS, HTTP


def test_tcp_connect_time_follows_the_carrier(lab: Any) -> None:
    for c in lab.carriers:
        result, pairs = agent_vs_wire_ms(lab, c.name, "tcp:443", count=5, interval_s=0.02)
        assert_matches_wire("tcp:443", pairs)
        assert near_injected_delay(result.stats.rtt_median_ms, c.delay_ms), result.round


@pytest.mark.parametrize("loaded", [False, True], ids=["idle", "loaded"])
@pytest.mark.parametrize("method", WIRE_METHODS)
def test_rtt_matches_the_wire(lab: Any, method: str, loaded: bool) -> None:
    """Each probe's RTT against the same probe on the agent's uplink, captured with the
    kernel's timestamps: within 0.5 ms at the median and 2 ms at worst, idle and with the
    agent's other threads holding the GIL and two busy processes on this machine. A clock
    read on the event loop ran late by as much as the GIL was held (up to ~40 ms seen);
    the kernel's timestamps do not. The injected delay is only a coarse sanity bound: the
    lab's delay line and servers run in user space and a loaded machine slows them."""
    c = lab.carriers[0]
    with agent_load(gil=loaded, cpu_processes=2 if loaded else 0):
        result, pairs = agent_vs_wire_ms(lab, c.name, method, count=40, interval_s=0.01)
    assert_matches_wire(method, pairs, label="loaded" if loaded else "idle")
    expected_ms = TRIPS[method.partition(":")[0]] * c.delay_ms
    assert near_injected_delay(result.stats.rtt_min_ms, expected_ms), (method, pairs)
    assert near_injected_delay(result.stats.rtt_median_ms, expected_ms), (method, pairs)


def test_closed_port_is_a_failure(lab: Any) -> None:
    result = probe(lab, "telecom", lab.target, method="tcp:81", count=3)
    assert result.stats.received == 0
    assert result.round.error == "connection refused"


def test_http_time_to_first_byte(lab: Any) -> None:
    c = lab.carrier("telecom")
    result, pairs = agent_vs_wire_ms(lab, "telecom", "http:/health", count=5, interval_s=0.02)
    assert_matches_wire("http:/health", pairs)
    # handshake and request both cross the delay line (coarse: the lab server is user space)
    assert near_injected_delay(result.stats.rtt_median_ms, 2 * c.delay_ms), result.round


def test_http_first_byte_is_the_answers_even_when_its_fin_came_before_the_read(
    lab: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lab's server on 8080 answers at once and closes 40 ms later (targets.py), and
    the probe reads 80 ms after its request left, as behind a busy event loop. By then the
    kernel has merged the FIN into the unread answer and stamped the two with the FIN's
    arrival; the probe still gives the answer's arrival, the wire's. Without its raw
    socket (as without CAP_NET_RAW) it reads the FIN's: 40 ms high, and with a timeout
    between the two arrivals, an answer that came in time is lost."""
    from collectors.probes import firstbyte, methods, probers

    on_time = methods.recv_in_time

    async def read_late(sock: Any, sent: Any, timeout_s: float,
                        **kwargs: Any) -> tuple[bytes, int | None]:
        await asyncio.sleep(0.08)
        return await on_time(sock, sent, timeout_s, **kwargs)

    monkeypatch.setattr(methods, "recv_in_time", read_late)
    monkeypatch.setattr(probers, "http_probe", functools.partial(methods.http_probe, port=8080))
    _result, pairs = agent_vs_wire_ms(lab, "telecom", "http:/late", count=5, interval_s=0.02,
                                      http_port=8080)
    assert_matches_wire("http:/late", pairs)
    # A 45 ms timeout: the answer (about 10 ms after the request) came in time, the FIN
    # (about 50 ms after) did not; read after the deadline, the answer still counts.
    in_time = probe(lab, "telecom", lab.target, method="http:/late", count=5, timeout_s=0.045)
    assert in_time.stats.received == 5, in_time.round

    def no_raw_socket(*_args: Any) -> Any:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(firstbyte, "open_bound", no_raw_socket)
    _result, pairs = agent_vs_wire_ms(lab, "telecom", "http:/late", count=5, interval_s=0.02,
                                      http_port=8080)
    assert all(agent - wire > 30.0 for agent, wire in pairs), pairs
    lost = probe(lab, "telecom", lab.target, method="http:/late", count=5, timeout_s=0.045)
    assert lost.stats.received == 0, lost.round  # judged by the FIN's stamp: too late


def test_dns_against_the_lab_target(lab: Any) -> None:
    # Needs the lab's DNS answering from the queried address (one socket per target
    # address): an answer from another address is rightly ignored, as stub resolvers do.
    for c in lab.carriers:
        result, pairs = agent_vs_wire_ms(lab, c.name, "dns:www.example.org", count=5,
                                         interval_s=0.02)
        assert_matches_wire("dns", pairs)
        assert near_injected_delay(result.stats.rtt_median_ms, c.delay_ms), result.round


DNS_RESPONDER = r"""
import socket, sys
from scapy.layers.dns import DNS, DNSRR
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[1], 53))
print("ready", flush=True)
while True:
    data, peer = sock.recvfrom(4096)
    query = DNS(data)
    name = bytes(query.qd[0].qname if isinstance(query.qd, list) else query.qd.qname)
    ident, qd = query.id, query.qd
    if name.startswith(b"good."):
        reply = DNS(id=ident, qr=1, aa=1, qd=qd, an=DNSRR(rrname=name, rdata="192.0.2.53"))
    elif name.startswith(b"othername."):
        reply = DNS(id=ident, qr=1, qd=qd, an=DNSRR(rrname="else.test.", rdata="192.0.2.9"))
    elif name.startswith(b"badid."):
        reply = DNS(id=(ident + 1) % 65536, qr=1, qd=qd, an=DNSRR(rrname=name, rdata="192.0.2.9"))
    else:
        reply = DNS(id=query.id, qr=1, rcode=3, qd=query.qd)
    sock.sendto(bytes(reply), peer)
"""


@pytest.fixture
def dns_responder(lab: Any) -> Iterator[str]:
    """A DNS server of this test on the telecom router (100.64.1.1:53) with scripted answers."""
    c = lab.carrier("telecom")
    proc = subprocess.Popen(["ip", "netns", "exec", c.ns, sys.executable, "-c", DNS_RESPONDER,
                             c.gateway], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield c.gateway
    finally:
        proc.kill()
        proc.wait(5)


def test_dns_good_and_wrong_answers(lab: Any, dns_responder: str) -> None:
    good = probe(lab, "telecom", dns_responder, method="dns:good.test", count=3)
    assert good.stats.received == 3, good.round
    expected = {
        "dns:othername.test": "answer is for another name",
        "dns:badid.test": "wrong DNS answer: id",
        "dns:nx.test": "rcode 3",
    }
    for method, reason in expected.items():
        bad = probe(lab, "telecom", dns_responder, method=method, count=2, timeout_s=0.5)
        assert bad.stats.received == 0, method
        assert reason in (bad.round.error or ""), (method, bad.round.error)


# ---------------------------------------------------------------- traceroute


def trace(lab: Any, carrier: str, target: str, method: str,
          lookup: Any = None) -> TraceResult:
    return in_agent_ns(lab, lambda: asyncio.run(
        traceroute(binding(lab, carrier), target, method, max_hops=10, timeout_s=1.0,
                   lookup_as=lookup)))


@pytest.mark.parametrize("method", ["icmp", "udp"])
def test_traceroute_shows_router_hops_in_order(lab: Any, method: str) -> None:
    for c in lab.carriers:
        result = trace(lab, c.name, lab.target, method)
        assert result.reached, result.as_dict()
        assert [h.address for h in result.hops] == [c.gateway, "100.66.0.254", lab.target]
        assert result.hop_count == 3
        last = result.hops[-1].rtt_ms
        assert near_injected_delay(last, c.delay_ms), result.as_dict()
        assert not result.annotated and "as_path" not in result.as_dict()


def test_traceroute_not_reached_through_the_wrong_carrier(lab: Any) -> None:
    result = trace(lab, "unicom", lab.carrier("telecom").target, "icmp")
    assert not result.reached


# ---------------------------------------------------------------- collector


def make_collector(lab: Any, tmp_path: Path, probes_toml: str) -> tuple[ProbeSet,
                                                                      list[Point]]:
    path = tmp_path / "agent.toml"
    path.write_text(lab_toml(lab, probes_toml))
    config = load_config(path)
    points: list[Point] = []
    ctx = CollectorContext(config=config, emit=lambda batch: points.extend(batch),
                           data_dir=tmp_path)
    return ProbeSet(ctx), points


PROBES_TOML = """
[[probes]]
name = "common"
target = "203.0.113.10"
methods = ["icmp", "tcp:80"]
interval = "1s"
count = 10
timeout = "1s"
traceroute = true

[quality]
rtt_degraded_ms = 30
"""


def test_collector_round_emits_probe_and_quality(lab: Any, tmp_path: Path) -> None:
    collector, _ = make_collector(lab, tmp_path, PROBES_TOML)
    probe_cfg = collector.ctx.config.probes[0]

    async def go() -> list[Point]:
        try:
            return await collector.probe_once(probe_cfg, 1_700_000_000_000_000_000)
        finally:
            collector.close()

    points = in_agent_ns(lab, lambda: asyncio.run(go()))
    probes = {(p.tags["carrier"], p.tags["method"]): p for p in points
              if p.measurement == "probe"}
    assert set(probes) == {(c.name, m) for c in lab.carriers for m in ("icmp", "tcp:80")}
    for (carrier, _method), point in probes.items():
        assert point.time_ns == 1_700_000_000_000_000_000
        assert point.tags["target"] == "203.0.113.10"
        assert point.fields["sent"] == 10 and point.fields["received"] == 10
        median = point.fields["rtt_median_ms"]
        assert isinstance(median, float)
        assert near_injected_delay(median, lab.carrier(carrier).delay_ms), point
    quality = {p.tags["carrier"]: p.fields for p in points if p.measurement == "quality"}
    assert quality["telecom"]["best"] is True
    assert quality["unicom"]["best"] is False and quality["mobile"]["best"] is False
    assert quality["telecom"]["status"] == "ok"
    assert quality["mobile"]["status"] == "degraded"  # 40 ms > rtt_degraded_ms 30
    assert quality["telecom"]["score"] > quality["unicom"]["score"] > quality["mobile"]["score"]


def test_collector_best_carrier_moves_when_one_degrades(lab: Any, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    collector, _ = make_collector(lab, tmp_path, PROBES_TOML)
    probe_cfg = collector.ctx.config.probes[0]

    async def rounds() -> list[list[Point]]:
        out = []
        try:
            out.append(await collector.probe_once(probe_cfg, 1))
            await asyncio.to_thread(lab.set_delay, "telecom", None, None, 100.0)
            out.append(await collector.probe_once(probe_cfg, 2))
        finally:
            collector.close()
        return out

    caplog.set_level("INFO")
    try:
        first, second = in_agent_ns(lab, lambda: asyncio.run(rounds()))
    finally:
        lab.set_delay("telecom", loss_pct=0.0)
    best1 = [p.tags["carrier"] for p in first if p.measurement == "quality" and p.fields["best"]]
    best2 = [p.tags["carrier"] for p in second if p.measurement == "quality" and p.fields["best"]]
    assert best1 == ["telecom"] and best2 == ["unicom"]
    status2 = {p.tags["carrier"]: p.fields["status"] for p in second if p.measurement == "quality"}
    assert status2["telecom"] == "down"
    assert "best carrier to 203.0.113.10: telecom -> unicom" in caplog.text
    assert "telecom to 203.0.113.10: ok -> down" in caplog.text


def test_collector_traceroute_points_with_and_without_as(lab: Any, tmp_path: Path) -> None:
    collector, _ = make_collector(lab, tmp_path, PROBES_TOML)
    probe_cfg = collector.ctx.config.probes[0]
    plain = in_agent_ns(lab, lambda: asyncio.run(collector.trace_once(probe_cfg, 5)))
    assert {p.tags["carrier"] for p in plain} == {c.name for c in lab.carriers}
    for point in plain:
        c = lab.carrier(point.tags["carrier"])
        assert point.measurement == "traceroute" and point.time_ns == 5
        assert point.fields["hops"] == 3 and point.fields["reached"] is True
        assert point.fields["path"] == f"{c.gateway} 100.66.0.254 {lab.target}"
        assert "as_path" not in point.fields

    # Stand-in for the BGP collector's `bgp.lookup` handler (its answer shape per the
    # contract): the real one needs the BGP part running, tested on its own.
    def lookup(args: dict[str, Any]) -> dict[str, Any]:
        address = args["address"]
        if address.startswith("203.0.113."):
            return {"telecom": {"prefix": "203.0.113.0/24", "origin_as": 64496,
                                "as_path": [4134, 64496]}}
        return {}

    collector.ctx.control_handlers = {"bgp.lookup": lookup}
    annotated = in_agent_ns(lab, lambda: asyncio.run(collector.trace_once(probe_cfg, 6)))
    for point in annotated:
        assert point.fields["as_path"] == "64496"


# ---------------------------------------------------------------- CLI


PROBE_JSON_KEYS = ["target", "carrier", "method", "sent", "received", "loss_pct",
                   "rtt_min_ms", "rtt_avg_ms", "rtt_median_ms", "rtt_p95_ms", "rtt_max_ms",
                   "jitter_ms", "stddev_ms", "rtts_ms"]


def test_cli_probe_json_keys_and_types(lab: Any, lab_config: Path) -> None:
    """`probe --json` prints one object whose entries have the keys, in order, and the
    types docs/cli.md documents (RTT figures null and `rtts_ms` all null when nothing
    came back)."""
    from tests.lab.wire import WireCapture, icmp_rtts_from_far_end, wire_rtts

    with contextlib.ExitStack() as stack:
        captures = {c.name: stack.enter_context(WireCapture(lab.agent_ns, c.uplink))
                    for c in lab.carriers}
        far_ends = {c.name: stack.enter_context(WireCapture(c.ns, "agent"))
                    for c in lab.carriers}
        proc = run_cli(lab, "probe", lab.target, lab.sink, "--count", "4", "--interval", "10",
                       "--timeout", "300", "--json", "-c", str(lab_config))
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    assert list(document) == ["results"]
    results = document["results"]
    assert len(results) == 2 * len(lab.carriers)
    for entry in results:
        assert list(entry) == PROBE_JSON_KEYS
        assert entry["method"] == "icmp"
        assert entry["sent"] == 4 and len(entry["rtts_ms"]) == 4
        assert isinstance(entry["received"], int) and isinstance(entry["loss_pct"], float)
        if entry["target"] == lab.sink:
            assert entry["received"] == 0 and entry["rtts_ms"] == [None] * 4
            assert all(entry[k] is None for k in PROBE_JSON_KEYS[6:13])
        else:
            assert entry["received"] == 4
            assert all(isinstance(entry[k], float) for k in PROBE_JSON_KEYS[6:13])
            uplink = captures[entry["carrier"]].frames
            tap = wire_rtts(uplink, "icmp", lab.target)
            far = icmp_rtts_from_far_end(uplink, far_ends[entry["carrier"]].frames, lab.target)
            assert len(tap) == len(far) == 4
            # the agent's send stamp lies between the uplink's tap and the far end's receipt
            for agent_ms, at_tap, at_far in zip(entry["rtts_ms"], tap, far, strict=True):
                assert at_tap.rtt_ms is not None and at_far.rtt_ms is not None
                assert at_far.rtt_ms - 0.5 <= agent_ms <= at_tap.rtt_ms + 0.5, (
                    agent_ms, at_tap, at_far)
            delay = lab.carrier(entry["carrier"]).delay_ms
            assert near_injected_delay(entry["rtt_median_ms"], delay), entry
    assert proc.stdout.count("\n") == 1  # one object


def test_cli_probe_table_marks_best(lab: Any, lab_config: Path) -> None:
    proc = run_cli(lab, "probe", lab.target, "--count", "5", "--interval", "10",
                   "-c", str(lab_config), "--carrier", "mobile", "--carrier", "telecom")
    assert proc.returncode == 0, proc.stderr
    header = proc.stdout.splitlines()[1].split()
    assert header == ["mobile", "telecom", "*"]
    assert "best carrier" in proc.stdout


def test_cli_default_route_without_config(lab: Any) -> None:
    # The agent namespace's main table has no default route: a carrier router is on-link.
    gateway = lab.carrier("telecom").gateway
    proc = run_cli(lab, "probe", gateway, "--count", "3", "--interval", "10", "--json")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert [r["carrier"] for r in results] == ["default"] and results[0]["received"] == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["probe", "203.0.113.10", "--count", "0"], "--count must be 1-10000"),
        (["probe", "203.0.113.10", "--interval", "100000"], "--interval must be 1-60000"),
        (["probe", "203.0.113.10", "--timeout", "x"], "--timeout must be an integer"),
        (["probe", "no-such-host.invalid"], "cannot resolve target"),
        (["probe", "203.0.113.10", "--method", "tcp:0"], "tcp needs a port"),
        (["probe", "203.0.113.10", "--count", "10000", "--interval", "1000"], "within 600 s"),
        (["traceroute", "203.0.113.10", "--max-hops", "99"], "--max-hops must be 1-64"),
    ],
)
def test_cli_bad_arguments(lab: Any, args: list[str], message: str) -> None:
    proc = run_cli(lab, *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_cli_unknown_carrier_and_bad_config(lab: Any, lab_config: Path, tmp_path: Path) -> None:
    proc = run_cli(lab, "probe", lab.target, "-c", str(lab_config), "--carrier", "nope")
    assert proc.returncode == 2 and "unknown carrier 'nope'" in proc.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[agent]\nbogus = 1\n")
    proc = run_cli(lab, "probe", lab.target, "-c", str(bad))
    assert proc.returncode == 2 and "agent.bogus: unknown key" in proc.stderr


def test_cli_unreachable_exits_1_with_output(lab: Any, lab_config: Path) -> None:
    proc = run_cli(lab, "probe", lab.sink, "--count", "2", "--timeout", "200", "--json",
                   "-c", str(lab_config), "--carrier", "telecom")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["results"][0]["received"] == 0


def test_cli_traceroute(lab: Any, lab_config: Path) -> None:
    proc = run_cli(lab, "traceroute", lab.target, "--json", "-c", str(lab_config))
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert [r["carrier"] for r in results] == [c.name for c in lab.carriers]
    for r in results:
        c = lab.carrier(r["carrier"])
        assert r["reached"] is True
        assert [h["address"] for h in r["hops"]] == [c.gateway, "100.66.0.254", lab.target]
        assert "as_path" not in r  # no daemon: no annotation
    table = run_cli(lab, "traceroute", lab.target, "-c", str(lab_config), "--method", "udp")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[1].split() == ["ttl"] + [c.name for c in lab.carriers]



def test_collector_runs_on_aligned_ticks(lab: Any, tmp_path: Path) -> None:
    """The factory's collectors under the real scheduler: one per entry (and one for its
    traceroute), rounds on aligned ticks, stamped with the tick, counted under `probes` in
    status as the scheduler counts them; the engine's sockets are closed with the group."""
    from agent.pipeline import Pipeline
    from agent.scheduler import Scheduler
    from agent.spool import Spool
    from collectors.probes.collector import create

    path = tmp_path / "agent.toml"
    path.write_text(lab_toml(lab, """
[[probes]]
name = "fast"
target = "203.0.113.10"
methods = ["icmp"]
interval = "500ms"
count = 5
timeout = "200ms"
carriers = ["telecom", "unicom"]
traceroute = true
"""))
    config = load_config(path)

    async def go() -> tuple[list[Point], dict[str, Any], dict[str, Any], list[Any]]:
        pipeline = Pipeline(Spool(tmp_path / "spool"), "lab-agent")
        pipeline.bind_loop(asyncio.get_running_loop())
        scheduler = Scheduler(pipeline)
        ctx = CollectorContext(config=config, emit=pipeline.emit, data_dir=tmp_path)
        built = create(ctx)
        for collector in built.collectors:
            scheduler.start(collector)
        await asyncio.sleep(2.3)
        stats = {s["name"]: s for s in scheduler.status()}
        section = built.status["probes"]()
        engine = next(iter(scheduler.stats)).probes.engine  # type: ignore[attr-defined]
        sockets = list(engine.icmp._probers.values())
        await scheduler.stop_all()
        scheduler.shutdown()
        return list(pipeline._take_batch()), stats, section, sockets

    points, stats, section, sockets = in_agent_ns(lab, lambda: asyncio.run(go()))
    assert set(stats) == {"probes:fast", "traceroute:fast"}
    assert stats["probes:fast"]["kind"] == "polled"
    assert stats["probes:fast"]["interval_s"] == 0.5
    assert stats["traceroute:fast"]["interval_s"] == 300.0  # [traceroute].interval default
    probe_points = [p for p in points if p.measurement == "probe"]
    ticks = sorted({p.time_ns for p in probe_points})
    assert len(ticks) >= 3
    assert all(t % 500_000_000 == 0 for t in ticks)
    assert all(b - a == 500_000_000 for a, b in itertools.pairwise(ticks))
    assert {p.tags["carrier"] for p in probe_points} == {"telecom", "unicom"}
    assert all(p.fields["received"] == 5 for p in probe_points)
    assert {p.time_ns for p in points if p.measurement == "quality"} == set(ticks)
    status = section["probes"]["fast"]
    assert status["rounds"] == len(ticks) == stats["probes:fast"]["runs"]
    assert status["last_error"] == ""
    assert status["overruns"] == stats["probes:fast"]["overruns"] == 0
    assert len(sockets) == 2 and all(s.closed for s in sockets)  # released with the group


@pytest.mark.parametrize("method", ["icmp", "udp"])
def test_traceroute_ipv6_through_each_uplink(lab: Any, method: str) -> None:
    for c in lab.carriers:
        result = trace(lab, c.name, c.gateway6, method)
        assert result.reached, result.as_dict()
        assert [h.address for h in result.hops] == [c.gateway6]
