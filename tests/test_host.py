"""host and disk collectors against what the kernel reports."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import psutil

from agent.collector import CollectorContext
from agent.config import parse_config
from collectors.host import DiskCollector, HostCollector, count_tcp_states


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


def test_tcp_established_counts_real_connections(tmp_path: Path) -> None:
    collector = HostCollector(ctx(tmp_path))
    before = collector.collect()[0].fields["tcp_established"]
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    accepted = [server.accept()[0] for _ in range(5)]
    try:
        during = collector.collect()[0].fields["tcp_established"]
        # both ends of each loopback connection are ESTABLISHED sockets
        assert during - before >= 10  # type: ignore[operator]
    finally:
        for sock in clients + accepted + [server]:
            sock.close()


def test_count_tcp_states_parses_proc_format() -> None:
    text = (
        "  sl  local_address rem_address   st tx_queue rx_queue\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000\n"
        "   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000\n"
        "   2: 0100007F:1F90 0100007F:C351 06 00000000:00000000\n"
    )
    assert count_tcp_states(text, text) == {"0A": 2, "01": 2, "06": 2}


def test_disk_per_mount(tmp_path: Path) -> None:
    points = DiskCollector(ctx(tmp_path)).collect()
    mounts = {p.tags["mount"]: p for p in points}
    assert "/" in mounts
    usage = psutil.disk_usage("/")
    root = mounts["/"]
    assert abs(root.fields["used_percent"] - usage.percent) < 1.0  # type: ignore[operator]
    assert abs(root.fields["free_bytes"] - usage.free) < 0.01 * usage.total  # type: ignore[operator]
    assert not any(m.startswith("/proc") or m.startswith("/sys") for m in mounts)
