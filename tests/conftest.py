"""Shared pytest fixtures: real servers and the lab (see tests/lab/README.md)."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: long (e.g. the full MRT table); deselect with "
                            "-m 'not slow'")
