"""host and disk collectors against what the kernel reports."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent.collector import CollectorContext
from agent.config import parse_config
from collectors.host import DiskCollector, HostCollector, snmp_value, sockstat_value


def ctx(tmp_path: Path) -> CollectorContext:
    config = parse_config({"agent": {"data_dir": str(tmp_path)}})
    return CollectorContext(config=config, emit=lambda points: None, data_dir=tmp_path)


def test_host_fields_and_values(tmp_path: Path) -> None:
    (point,) = HostCollector(ctx(tmp_path)).collect()
    assert point.measurement == "host"
    assert set(point.fields) == {
        "cpu_percent", "load1", "load5", "load15", "mem_used_percent",
        "mem_available_bytes", "tcp_established", "tcp_time_wait",
    }
    assert 0.0 <= point.fields["cpu_percent"] <= 100.0  # type: ignore[operator]
    assert abs(point.fields["load1"] - os.getloadavg()[0]) < 1.0  # type: ignore[operator]
    available = psutil.virtual_memory().available
    assert abs(point.fields["mem_available_bytes"] - available) < 0.05 * available  # type: ignore[operator]


@pytest.fixture
def empty_netns() -> Iterator[str]:
    """A network namespace of our own with only lo up: its TCP counters start at zero."""
    from tests.lab.netns import ip, netns_works

    ok, reason = netns_works()
    if not ok:
        pytest.skip(reason)
    name = f"egress-host-{os.getpid()}"
    ip("netns", "add", name)
    try:
        ip("link", "set", "lo", "up", netns=name)
        yield name
    finally:
        ip("netns", "del", name, check=False)


def test_tcp_states_are_the_namespace_counts(tmp_path: Path, empty_netns: str) -> None:
    """Exact counts in a namespace of our own: 5 connections (both ends ESTABLISHED), 3
    closed by us (TIME_WAIT here, the peers gone), 1 closed by its peer (CLOSE_WAIT, which
    the kernel's CurrEstab counts with ESTABLISHED)."""
    from tests.lab.netns import in_netns

    def scene() -> tuple[dict[str, Any], dict[str, Any]]:
        collector = HostCollector(ctx(tmp_path))
        before = collector.collect()[0].fields
        server = socket.create_server(("127.0.0.1", 0))
        port = server.getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(9)]
        accepted = [server.accept()[0] for _ in range(9)]
        try:
            for sock in clients[:3]:  # we close first: our end waits in TIME_WAIT
                sock.close()
            for sock in accepted[:3]:
                sock.recv(1)  # the FIN arrived
                sock.close()
            accepted[3].close()  # the peer closes: clients[3] is in CLOSE_WAIT
            clients[3].recv(1)
            return before, collector.collect()[0].fields
        finally:
            for sock in clients[3:] + accepted[4:] + [server]:
                sock.close()

    before, during = in_netns(empty_netns, scene)
    assert (before["tcp_established"], before["tcp_time_wait"]) == (0, 0)
    # 5 connections x 2 ends + clients[3] in CLOSE_WAIT (accepted[3] is in FIN_WAIT2)
    assert during["tcp_established"] == 11
    assert during["tcp_time_wait"] == 3


def test_kernel_counter_files_parse() -> None:
    snmp = ("Ip: Forwarding DefaultTTL\nIp: 1 64\n"
            "Tcp: RtoAlgorithm RtoMin CurrEstab InSegs\nTcp: 1 200 7 12345\n")
    assert snmp_value(snmp, "Tcp", "CurrEstab") == 7
    assert snmp_value(snmp, "Tcp", "Missing") is None
    assert snmp_value(snmp, "Udp", "InDatagrams") is None
    assert snmp_value("", "Tcp", "CurrEstab") is None
    sockstat = ("sockets: used 120\nTCP: inuse 1 orphan 0 tw 4 alloc 20 mem 1224\n"
                "UDP: inuse 2 mem 1\n")
    assert sockstat_value(sockstat, "TCP", "tw") == 4
    assert sockstat_value(sockstat, "UDP", "tw") is None
    assert sockstat_value("", "TCP", "tw") is None


def test_disk_per_mount(tmp_path: Path) -> None:
    points = DiskCollector(ctx(tmp_path)).collect()
    mounts = {p.tags["mount"]: p for p in points}
    assert "/" in mounts
    usage = psutil.disk_usage("/")
    root = mounts["/"]
    assert abs(root.fields["used_percent"] - usage.percent) < 1.0  # type: ignore[operator]
    assert abs(root.fields["free_bytes"] - usage.free) < 0.01 * usage.total  # type: ignore[operator]
    assert not any(m.startswith("/proc") or m.startswith("/sys") for m in mounts)
