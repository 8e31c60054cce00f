"""A stop is bounded (agent/daemon.py: STOP_TIMEOUT_S) whatever the outputs and collectors
are doing, and loses nothing: what an output could not deliver stays in the spool and goes
out after the next start.

Two races made a stop hang for good; each has a deterministic test here that holds the
threads at the exact moment the race needs:
- OutputWorker._next_batch: an idle sender woken (drain, a last flush) checked `_stopping`,
  then the stop set `_stopping` and `_wake`, then the sender's `_wake.clear()` erased that
  wake-up and it waited for a `notify` that never came; `run()` joined it without a timeout.
- Scheduler._run_polled: on Python 3.11 `wait_for(shield(collect))` returns the result
  instead of raising CancelledError when collect() finishes in the same loop iterations as
  the cancel; the collector ran on and stop() waited for it forever.
Then the bound end to end: a server that never answers, and a stress test of start/stop at
random moments against a real InfluxDB (outages, kills, catch-up), every stop timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.collector import PolledCollector
from agent.outputs.base import Output, OutputWorker
from agent.pipeline import Pipeline
from agent.points import Point
from agent.scheduler import Scheduler
from agent.spool import Spool
from agent.spool_format import SpoolRecord
from tests.agentproc import influx_times, spool_points, timestamps
from tests.collector_support import make_ctx
from tests.daemonproc import Daemon, Notifications, config_text, wait_until

STOP_BOUND_S = 5.0  # SIGTERM → exit, with margin under TimeoutStopSec=20s
LIVED_S = 1.0  # a run this long after READY has collected host points at a 200 ms interval


# ---------------------------------------------------------------- the two races


class Accepting(Output):
    name = "accepting"

    def send(self, body: bytes) -> None:
        pass


def test_stop_landing_as_an_idle_sender_wakes_ends_the_sender(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sender, woken while idle, has found no batch; the stop lands right then (before
    its `_wake.clear()`). The sender must still end, by itself and at once: not be left
    waiting for a notify that never comes (nor be abandoned at the deadline)."""
    spool = Spool(tmp_path)
    worker = OutputWorker(Accepting(), spool, tmp_path)
    armed = threading.Event()
    at_window = threading.Event()
    stop_landed = threading.Event()
    original = OutputWorker._prepare

    def prepare(self: OutputWorker, seq: int) -> Any:
        batch = original(self, seq)
        if batch is None and armed.is_set():
            armed.clear()
            at_window.set()
            stop_landed.wait(5)  # the sender is preempted here; the stop happens meanwhile
        return batch

    monkeypatch.setattr(OutputWorker, "_prepare", prepare)

    async def scenario() -> tuple[bool, float]:
        task = asyncio.create_task(worker.run())
        spool.append(SpoolRecord(b"m v=1i 1", None, 1, 1))
        worker.notify()
        await asyncio.sleep(0.2)
        assert worker.caught_up()  # delivered; the sender waits for the next notify
        armed.set()
        worker.notify()  # wakes it: what drain() or the last flush does on stop
        while not at_window.is_set():
            await asyncio.sleep(0.005)
        worker.stop_timeout_s = 3.0
        started = time.monotonic()
        task.cancel()  # run()'s finally sets _stopping and _wake while the sender is held
        await asyncio.sleep(0.05)
        stop_landed.set()  # the sender goes on: clears _wake, then must see _stopping
        try:
            done, _ = await asyncio.wait({task}, timeout=4.0)
        finally:
            worker._wake.set()  # a sender left waiting (the bug) is released for teardown
        return bool(done), time.monotonic() - started

    done, took_s = asyncio.run(scenario())
    assert done
    assert not worker.abandoned, "the sender never saw the stop; it was left behind"
    assert took_s < 1.0, took_s
    assert not any(t.name == "output:accepting" and t.is_alive() for t in threading.enumerate())


class Gated(PolledCollector):
    """collect() returns when the test says so: the test picks the loop iteration in which
    its result arrives relative to the cancel."""

    name = "gated"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def collect(self) -> list[Point]:
        self.calls += 1
        self.entered.set()
        self.release.wait(5)
        return [Point("gated", {}, {"v": 1})]


def test_collector_finishing_as_it_is_cancelled_still_stops(tmp_path: Path) -> None:
    """collect() returns, and stop() cancels the collector 0 to 5 loop iterations later
    (Python 3.11's wait_for swallowed the cancel in some of them). Every time the collector
    task must end, and collect() must not run again."""

    async def one(yields: int) -> tuple[bool, int, int]:
        spool = Spool(tmp_path / f"spool{yields}")
        pipeline = Pipeline(spool, "h")
        pipeline.bind_loop(asyncio.get_running_loop())
        scheduler = Scheduler(pipeline)
        collector = Gated(make_ctx(tmp_path, pipeline))  # interval 200 ms
        scheduler.start(collector)
        task = scheduler.tasks[collector]
        while not collector.entered.is_set():
            await asyncio.sleep(0.005)
        collector.release.set()
        time.sleep(0.05)  # hold the loop: collect()'s result is queued meanwhile
        for _ in range(yields):
            await asyncio.sleep(0)
        await scheduler.stop(collector, timeout_s=1.0)
        ended = task.done()
        calls = collector.calls
        await asyncio.sleep(0.6)  # three intervals: a collector still running collects
        scheduler.shutdown()
        spool.close()
        if not task.done():
            task.cancel()
        return ended, calls, collector.calls

    async def scenario() -> list[tuple[int, bool, int, int]]:
        return [(k, *await one(k)) for k in range(6)]

    for yields, ended, calls, later in asyncio.run(scenario()):
        assert ended, f"collector still running after stop ({yields} loop iterations)"
        assert later == calls, f"collect() ran after stop ({yields} loop iterations)"


# ---------------------------------------------------------------- a server that never answers


class Silent:
    """Accepts connections and reads requests, never answers: a server stopped mid-request
    (SIGSTOP, a hung process, a firewall eating the replies)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.received = 0
        self.conns: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := conn.recv(65536):
                self.received += len(data)

    def close(self) -> None:
        self._closed = True
        self.sock.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.close()


def v1_output(url: str, extra: str = "") -> str:
    return f"""
[outputs.influxdb_v1]
url = "{url}"
database = "egress"
{extra}
"""


def sigterm_and_time(daemon: Daemon, limit_s: float = 15.0) -> tuple[int | None, float]:
    """(exit code, seconds from SIGTERM to exit); code None when it had not exited."""
    sent = time.monotonic()
    daemon.signal(signal.SIGTERM)
    try:
        code: int | None = daemon.wait(limit_s)
    except Exception:
        code = None
    return code, time.monotonic() - sent


@pytest.mark.servers
def test_request_in_flight_is_abandoned_within_the_bound_and_delivered_after_restart(
    tmp_path: Path, notifications: Notifications, influxdb_v1: Any
) -> None:
    """The output's server takes a request and never answers (timeout 30 s): SIGTERM ends
    the agent within 5 s anyway, exit 0; one line names the output and the records left; the
    cursor did not move (nothing was confirmed). Restarted against a real InfluxDB, every
    spooled point is delivered."""
    silent = Silent()
    config = tmp_path / "agent.toml"
    config.write_text(config_text(
        tmp_path, v1_output(f"http://127.0.0.1:{silent.port}", 'timeout = "30s"'), '["host"]'
    ))
    env = {"NOTIFY_SOCKET": str(notifications.path)}
    daemon = Daemon(config, env)
    try:
        notifications.wait_for("READY", 0, 30)
        wait_until(lambda: silent.received > 0, 10, "a request to the silent server")
        time.sleep(0.5)
        code, took_s = sigterm_and_time(daemon)
    finally:
        daemon.kill()
        silent.close()
    log = daemon.log()
    assert code == 0, log
    assert took_s < STOP_BOUND_S, f"stop took {took_s:.1f}s\n{log}"
    lines = [line for line in log.splitlines() if "stop gave up" in line]
    assert len(lines) == 1, log
    assert "output influxdb_v1: stop gave up: abandoned a request in flight" in lines[0]
    assert "stay in the spool for the next start" in lines[0]
    spool = Spool(tmp_path / "data", read_only=True)
    assert spool.cursor("influxdb_v1") == 0  # the abandoned batch was never confirmed
    spooled = timestamps(spool_points(tmp_path / "data", "host"))
    assert spooled, log
    assert f"{spool.next_seq} records" in lines[0], (lines[0], spool.next_seq)

    config.write_text(config_text(tmp_path, v1_output(influxdb_v1.url), '["host"]'))
    mark = notifications.count()
    second = Daemon(config, env)
    try:
        notifications.wait_for("READY", mark, 30)
        wait_until(
            lambda: set(spooled) <= set(influx_times(influxdb_v1, "egress", "host",
                                                     "cpu_percent")),
            30, "the abandoned records delivered after the restart",
        )
        code, took_s = sigterm_and_time(second)
        assert code == 0 and took_s < STOP_BOUND_S, second.log()
    finally:
        second.kill()


# ---------------------------------------------------------------- stress


SEED_RECORD_POINTS = 250


def seed_backlog(data_dir: Path, round_no: int, records: int) -> None:
    """Appends undelivered records to the spool while no agent runs: the backlog an outage
    or a crash leaves, so that the next starts have a catch-up to be stopped in. Points are
    predictable: measurement `backlog`, tag round, unique times."""
    spool = Spool(data_dir)
    base_ns = 1_700_000_000_000_000_000 + round_no * 10**12
    for r in range(records):
        first = base_ns + r * SEED_RECORD_POINTS * 1000
        lines = "\n".join(
            f"backlog,round={round_no} v={r * SEED_RECORD_POINTS + i}i {first + i * 1000}"
            for i in range(SEED_RECORD_POINTS)
        )
        spool.append(SpoolRecord(lines.encode(), None, SEED_RECORD_POINTS, first))
    spool.close()


FIELDS = {"host": "cpu_percent", "agent": "rss_bytes", "agent_output": "points_written",
          "backlog": "v"}


def spooled_counts(data_dir: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], int]:
    """Distinct points (series, time) per series, as held in the spool."""
    seen: dict[tuple[str, tuple[tuple[str, str], ...]], set[int]] = {}
    for point in spool_points(data_dir):
        key = (point.measurement, tuple(sorted(point.tags.items())))
        seen.setdefault(key, set()).add(point.time_ns)
    return {key: len(times) for key, times in seen.items()}


def influx_counts(server: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], int]:
    counts: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
    for measurement, field in FIELDS.items():
        rows = server.query(f'SELECT count("{field}") FROM "{measurement}" GROUP BY *',
                            db="egress")
        for row in rows:
            tags = tuple(sorted((k, v) for k, v in row["_tags"].items() if v != ""))
            counts[(measurement, tags)] = int(row["count"])
    return counts


class Outages:
    """The InfluxDB's states: up, stopped (SIGTERM: refused), killed (SIGKILL: a crash),
    hung (SIGSTOP: connections accepted, nothing answered until SIGCONT)."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.hung = False

    @property
    def state(self) -> str:
        if not self.server.running():
            return "down"
        return "hung" if self.hung else "up"

    def up(self) -> None:
        if self.hung:
            os.kill(self.server.proc.pid, signal.SIGCONT)
            self.hung = False
        self.server.start()

    def down(self, how: str) -> None:
        if self.state != "up":
            return
        if how == "hang":
            os.kill(self.server.proc.pid, signal.SIGSTOP)
            self.hung = True
        elif how == "kill":
            self.server.kill()
        else:
            self.server.stop()


@pytest.mark.slow
@pytest.mark.servers
def test_stress_stops_at_random_moments_are_bounded_and_lose_nothing(
    tmp_path: Path, notifications: Notifications, influxdb_v1: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """At least 50 SIGTERM stops at random moments: right after READY, during an InfluxDB
    outage (refused, crashed, or hung: a request in flight that is never answered), while
    the spool catches up after an outage or after a SIGKILL of the agent, or through a
    seeded backlog. Each stop takes under 5 s and exits 0. At the end, with InfluxDB up,
    every point the agent's spool holds is in InfluxDB, per series: nothing lost, and every
    run stopped by SIGTERM at least a second after READY left its host points there. About
    two minutes on two loaded cores; prints the stop-time distribution."""
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    config = tmp_path / "agent.toml"
    config.write_text(config_text(
        tmp_path,
        v1_output(influxdb_v1.url, 'batch_size = 500\nmax_retry_delay = "2s"'),
        '["host", "agent"]', interval="200ms",
    ))
    env = {"NOTIFY_SOCKET": str(notifications.path)}
    influx = Outages(influxdb_v1)
    seed_backlog(data_dir, 0, 400)  # 100,000 points: the first starts catch up
    stops: list[tuple[float, str]] = []
    lived_ns: list[tuple[int, int]] = []  # (READY, SIGTERM) of each run stopped by SIGTERM
    kills = cycles = 0
    budget_end = time.monotonic() + 170.0
    try:
        while len(stops) < 52:
            assert time.monotonic() < budget_end, f"too slow: {len(stops)} stops (seed {seed})"
            cycles += 1
            if cycles % 10 == 0:
                seed_backlog(data_dir, cycles, 80)  # a new backlog to catch up
            roll = rng.random()
            if roll < 0.3:
                influx.down(rng.choice(["stop", "kill", "hang"]))
            elif roll < 0.75:
                influx.up()
            mark = notifications.count()
            daemon = Daemon(config, env)
            try:
                notifications.wait_for("READY", mark, 30)
                ready_ns = time.time_ns()
                moment = rng.choice(["at ready", "soon", "later", "outage mid-run",
                                     "server back mid-run"])
                if moment == "soon":
                    time.sleep(rng.uniform(0.0, 0.3))
                elif moment == "later":
                    time.sleep(rng.uniform(0.3, 1.5))
                elif moment == "outage mid-run":
                    time.sleep(rng.uniform(0.0, 0.8))
                    influx.down(rng.choice(["stop", "kill", "hang"]))
                    time.sleep(rng.uniform(0.0, 0.8))
                elif moment == "server back mid-run":
                    time.sleep(rng.uniform(0.0, 0.8))
                    influx.up()
                    time.sleep(rng.uniform(0.0, 0.5))  # the catch-up is under way
                if rng.random() < 0.15:
                    daemon.kill()  # a crash: the next start catches up from its cursor file
                    kills += 1
                    continue
                state = f"{moment}, influx {influx.state}"
                lived_ns.append((ready_ns, time.time_ns()))
                code, took_s = sigterm_and_time(daemon)
                log = daemon.log()
                assert code == 0, f"{state}: exit {code} after {took_s:.1f}s (seed {seed})\n" \
                    + log[-3000:]
                assert took_s < STOP_BOUND_S, \
                    f"{state}: stop took {took_s:.2f}s (seed {seed})\n{log[-3000:]}"
                assert "Traceback" not in log, log
                stops.append((took_s, state))
            finally:
                daemon.kill()

        # InfluxDB up, one last run until everything spooled is delivered, then a last stop.
        influx.up()
        expected = spooled_counts(data_dir)
        mark = notifications.count()
        daemon = Daemon(config, env)
        try:
            notifications.wait_for("READY", mark, 30)
            ready_ns = time.time_ns()
            wait_until(lambda: all(influx_counts(influxdb_v1).get(k, 0) >= n
                                   for k, n in expected.items()), 60,
                       f"delivery of the whole spool (seed {seed})")
            time.sleep(max(0.0, LIVED_S - (time.time_ns() - ready_ns) / 1e9))
            lived_ns.append((ready_ns, time.time_ns()))
            code, took_s = sigterm_and_time(daemon)
            assert code == 0 and took_s < STOP_BOUND_S, daemon.log()
            stops.append((took_s, "final, influx up"))
        finally:
            daemon.kill()
    finally:
        influx.up()

    spool = Spool(data_dir, read_only=True)
    assert spool.cursor("influxdb_v1") == spool.next_seq  # the last stop delivered the rest
    expected = spooled_counts(data_dir)  # plus what the last run collected
    assert {m for m, _ in expected} == set(FIELDS), sorted(expected)
    delivered = influx_counts(influxdb_v1)
    missing = {k: (n, delivered.get(k, 0)) for k, n in expected.items()
               if delivered.get(k, 0) != n}
    assert not missing, f"series: (spooled, in InfluxDB) (seed {seed}): {missing}"
    assert expected[("backlog", (("round", "0"),))] == 400 * SEED_RECORD_POINTS
    host = timestamps(spool_points(data_dir, "host"))
    assert len(host) == len(set(host))
    # A run that lived LIVED_S (five 200 ms ticks) collected; what it collected was kept.
    long_runs = [(r, t) for r, t in lived_ns if t - r >= LIVED_S * 1e9]
    empty = [(r, t) for r, t in long_runs if not any(r - 200_000_000 <= h <= t for h in host)]
    assert long_runs and not empty, \
        f"runs (READY, SIGTERM ns) with no host point (seed {seed}): {empty}"
    assert set(host) == set(influx_times(influxdb_v1, "egress", "host", "cpu_percent"))

    times = sorted(t for t, _ in stops)
    slowest = max(stops)
    with capsys.disabled():
        print(
            f"\nstop bound stress (seed {seed}): {len(stops)} SIGTERM stops, {kills} SIGKILLs; "
            f"stop time median {statistics.median(times):.3f}s, "
            f"p90 {times[int(len(times) * 0.9)]:.3f}s, max {slowest[0]:.3f}s ({slowest[1]}); "
            f"{sum(expected.values())} points spooled, all in InfluxDB; {len(host)} host "
            f"points, in each of the {len(long_runs)} runs that lived {LIVED_S:.0f} s"
        )
