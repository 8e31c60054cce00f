"""`host` and `disk`: the provider host's own resources, through psutil and /proc.

Metrics (see docs/metrics.md): host cpu_percent (all CPUs, since the previous
collection), load1/5/15, mem_used_percent, mem_available_bytes, tcp_established,
tcp_time_wait; disk used_percent and free_bytes per mount (tag `mount`). Options: none
beyond `agent.interval`. TCP states are counted from /proc/net/tcp{,6} (psutil's
net_connections resolves processes too and is far slower on busy hosts).
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil

from agent.collector import Collector, CollectorContext, PolledCollector
from agent.points import Point

_TCP_ESTABLISHED = "01"
_TCP_TIME_WAIT = "06"
_PSEUDO_FS = {
    "proc", "sysfs", "devtmpfs", "devpts", "tmpfs", "cgroup", "cgroup2", "overlay",
    "squashfs", "nsfs", "tracefs", "debugfs", "securityfs", "pstore", "bpf", "mqueue",
    "hugetlbfs", "configfs", "fusectl", "autofs", "binfmt_misc", "ramfs", "rpc_pipefs",
}


def count_tcp_states(*tables: str) -> dict[str, int]:
    """Count sockets per state code in /proc/net/tcp-format text."""
    counts: dict[str, int] = {}
    for text in tables:
        for line in text.splitlines()[1:]:
            parts = line.split(None, 4)
            if len(parts) >= 4:
                counts[parts[3]] = counts.get(parts[3], 0) + 1
    return counts


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


class HostCollector(PolledCollector):
    name = "host"

    def __init__(self, ctx: CollectorContext) -> None:
        super().__init__(ctx)
        psutil.cpu_percent(interval=None)  # primes the since-last-call measurement

    def collect(self) -> list[Point]:
        memory = psutil.virtual_memory()
        load1, load5, load15 = os.getloadavg()
        states = count_tcp_states(_read("/proc/net/tcp"), _read("/proc/net/tcp6"))
        return [
            Point(
                "host",
                {},
                {
                    "cpu_percent": float(psutil.cpu_percent(interval=None)),
                    "load1": load1,
                    "load5": load5,
                    "load15": load15,
                    "mem_used_percent": float(memory.percent),
                    "mem_available_bytes": int(memory.available),
                    "tcp_established": states.get(_TCP_ESTABLISHED, 0),
                    "tcp_time_wait": states.get(_TCP_TIME_WAIT, 0),
                },
            )
        ]


class DiskCollector(PolledCollector):
    name = "disk"

    def collect(self) -> list[Point]:
        points = []
        seen: set[str] = set()
        for part in psutil.disk_partitions(all=False):
            if part.fstype in _PSEUDO_FS or part.mountpoint in seen:
                continue
            seen.add(part.mountpoint)
            try:
                usage = psutil.disk_usage(part.mountpoint)
            except OSError:
                continue  # unmounted between listing and reading
            points.append(
                Point(
                    "disk",
                    {"mount": part.mountpoint},
                    {"used_percent": float(usage.percent), "free_bytes": int(usage.free)},
                )
            )
        return points


def create_host(ctx: CollectorContext) -> list[Collector]:
    return [HostCollector(ctx)]


def create_disk(ctx: CollectorContext) -> list[Collector]:
    return [DiskCollector(ctx)]
