"""Shared pytest fixtures: real servers and the lab (see tests/lab/README.md), and the
schema check of every point the product makes during the tests (below)."""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import schema
from agent.points import Point
from tests.daemonproc import Notifications
from tests.lab.servers import (
    ALERTMANAGER,
    INFLUXD,
    VICTORIA_METRICS,
    Alertmanager,
    InfluxDBv1,
    VictoriaMetrics,
    WebhookReceiver,
    binary_missing,
)

_db_counter = itertools.count(1)


@pytest.fixture
def influxdb_v1(tmp_path: Path) -> Iterator[InfluxDBv1]:
    """A fresh InfluxDB 1.6.7 of this test alone, on 127.0.0.1:<free port>, data under
    tmp_path, database `egress` created (`.db`). Stop/start it freely (outage tests)."""
    reason = binary_missing(INFLUXD)
    if reason:
        pytest.skip(reason)
    server = InfluxDBv1(data_dir=tmp_path / "influxd")
    server.start()
    server.db = "egress"  # type: ignore[attr-defined]
    server.create_database("egress")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A small HTTP server of this test on 127.0.0.1 that keeps every JSON body POSTed."""
    receiver = WebhookReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture
def alertmanager(tmp_path: Path, webhook_receiver: WebhookReceiver) -> Iterator[Alertmanager]:
    """A Prometheus Alertmanager of this test alone on 127.0.0.1:<free port> (clustering
    off, data under tmp_path), notifying `webhook_receiver` at once. Stop/start it freely."""
    reason = binary_missing(ALERTMANAGER)
    if reason:
        pytest.skip(reason)
    server = Alertmanager(data_dir=tmp_path / "alertmanager", webhook_url=webhook_receiver.url)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def victoria_metrics(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    """A fresh VictoriaMetrics of this test alone, on 127.0.0.1:<free port>, data under
    tmp_path. Stop/start it freely."""
    reason = binary_missing(VICTORIA_METRICS)
    if reason:
        pytest.skip(reason)
    server = VictoriaMetrics(data_dir=tmp_path / "vm")
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def influxdb_v1_shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDBv1]:
    """One InfluxDB 1.6.7 for the whole session: use with `fresh_db`; never stop it."""
    reason = binary_missing(INFLUXD)
    if reason:
        pytest.skip(reason)
    server = InfluxDBv1(data_dir=tmp_path_factory.mktemp("influxd-shared"))
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def fresh_db(influxdb_v1_shared: InfluxDBv1) -> Iterator[str]:
    """A new database name on the shared InfluxDB (created; dropped afterwards)."""
    name = f"t{os.getpid()}_{next(_db_counter)}"
    influxdb_v1_shared.create_database(name)
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            influxdb_v1_shared.drop_database(name)


def _lab_skip_reason() -> str | None:
    from tests.lab.netns import netns_works

    ok, reason = netns_works()
    if not ok:
        return reason
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun (the lab's delay line needs a tun device)"
    for binary in ("bird", "birdc", "tc", "bridge", "ping"):
        missing = binary_missing(binary)
        if missing:
            return missing
    return None


@pytest.fixture(scope="module")
def scripted_peer() -> Iterator[dict[str, Any]]:
    """A namespace pair whose far side answers ICMP as `tests/lab/scripted_peer.py` says."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, raw sockets)")
    from tests.lab.scripted_peer import scripted_peer as peer

    with peer() as handle:
        yield handle


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The three-carrier lab (tests/lab/README.md), up for the whole session, with
    InfluxDB 1.6.7 and VictoriaMetrics on the agent namespace's loopback."""
    reason = _lab_skip_reason()
    if reason:
        pytest.skip(reason)
    from tests.lab.lab import Lab, LabSpec, gc_labs

    for removed in gc_labs():  # what killed test runs left behind (owner process gone)
        print(f"lab gc: removed {removed}")
    spec = LabSpec.from_env()
    the_lab = Lab(spec, workdir=tmp_path_factory.mktemp("lab"))
    try:
        the_lab.up()
        yield the_lab
    finally:
        the_lab.down()


@pytest.fixture
def notifications(tmp_path: Path) -> Iterator[Notifications]:
    """systemd's side of sd_notify for an agent started by the test (tests/daemonproc.py)."""
    n = Notifications(tmp_path / "notify.sock")
    yield n
    n.close()


@pytest.fixture
def agent_factory(lab: Any, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Makes bgp collectors running against the lab (tests/lab/agent_bgp.py: AgentBgp),
    ExaBGP 5.0 unless told; stops them all at the end."""
    from tests.lab.agent_bgp import EXABGP_50, AgentBgp

    agents: list[AgentBgp] = []

    def make(exabgp: str = EXABGP_50, **kwargs: Any) -> AgentBgp:
        agent = AgentBgp(lab, tmp_path / f"agent{len(agents)}", exabgp, **kwargs)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.stop()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: long (e.g. the full MRT table); deselect with "
                            "-m 'not slow'")
    config.addinivalue_line("markers", "schema_free: sends made-up points through a "
                            "pipeline on purpose (the schema check does not count them)")


# ------------------------------------------------------------------ the schema check
#
# Every point the product makes while the suite runs is checked against the measurement
# schema (agent/schema.py): an unknown measurement, tag or field, a field of the wrong
# type, a missing tag or a tag value outside its declared set fails the test during which
# it was made. Two checks, both writing to one file:
# - the pipeline's (EGRESS_AGENT_SCHEMA_CHECK, inherited by every agent the tests start,
#   in-process or as a subprocess, namespaces included): each point that enters the core,
#   complete with its host tag and whatever its producer added after building it;
# - a Point built by code under agent/ or collectors/ (not from line protocol or a spool
#   record), when it is built: this covers the unit tests that call a collector, a state
#   machine or a point builder directly. The host tag is the pipeline's, so it is not
#   required here.
# A test that sends made-up points through a pipeline on purpose says so with
# `@pytest.mark.schema_free`; its problems are then not counted.

schema.load_declarations(Path(__file__).resolve().parents[1], ("agent", "collectors"))
_SCHEMA_LOG = os.environ.setdefault(
    schema.SCHEMA_CHECK_ENV,
    str(Path(tempfile.mkdtemp(prefix="egress-schema-")) / "problems.log"))
_PRODUCT = tuple(str(Path(__file__).resolve().parents[1] / d) + os.sep
                 for d in ("agent", "collectors"))
_CONVERTERS = tuple(str(Path(__file__).resolve().parents[1] / "agent" / f)
                    for f in ("points.py", "lineproto.py"))
_point_init = Point.__init__


def _checked_init(self: Point, *args: Any, **kwargs: Any) -> None:
    _point_init(self, *args, **kwargs)
    caller = sys._getframe(1).f_code.co_filename
    if caller.startswith(_PRODUCT) and not caller.startswith(_CONVERTERS):
        problems = [p for p in schema.check_point(
            self.measurement, {"host": "-", **self.tags}, self.fields)
            if not p.endswith(": no field")]  # fields may be added after it is built
        if problems:
            with open(_SCHEMA_LOG, "a", encoding="utf-8") as out:
                out.write("".join(f"built in {caller}: {p}\n" for p in problems))


Point.__init__ = _checked_init  # type: ignore[method-assign]


def _schema_problems_since(offset: int) -> tuple[list[str], int]:
    try:
        with open(_SCHEMA_LOG, encoding="utf-8") as log:
            log.seek(offset)
            text = log.read()
            return text.splitlines(), offset + len(text.encode())
    except FileNotFoundError:
        return [], offset


@pytest.fixture(autouse=True)
def _points_follow_the_schema(request: pytest.FixtureRequest) -> Iterator[None]:
    _, start = _schema_problems_since(0)
    yield
    problems, _ = _schema_problems_since(start)
    if problems and not request.node.get_closest_marker("schema_free"):
        pytest.fail("points that do not follow the schema (agent/schema.py):\n"
                    + "\n".join(sorted(set(problems))[:20]), pytrace=False)
