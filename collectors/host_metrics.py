"""The `host` and `disk` measurements, written by collectors/host.py."""

from __future__ import annotations

from agent.schema import Field, Measurement, Section, Tag, fields, register

HOST = Measurement(
    "host", "every `agent.interval`",
    tags=(),
    fields=(
        Field("cpu_percent", float, "busy time since the previous collection",
              "% of all CPUs"),
        *fields(("load1", "load5", "load15"), float, "load averages", "runnable tasks"),
        Field("mem_used_percent", float, "used memory (psutil's `virtual_memory().percent`)",
              "%"),
        Field("mem_available_bytes", int, "memory available without swapping", "bytes"),
        Field("tcp_established", int,
              "TCP connections in ESTABLISHED or CLOSE_WAIT, IPv4 + IPv6, of the agent's "
              "network namespace (the kernel's `CurrEstab`, RFC 1213 tcpCurrEstab, from "
              "/proc/net/snmp)", "sockets"),
        Field("tcp_time_wait", int,
              "TCP sockets in TIME_WAIT, IPv4 + IPv6 (`tw` of /proc/net/sockstat)", "sockets"),
    ),
)

DISK = Measurement(
    "disk", "one per mounted real file system, every `agent.interval`",
    description="Pseudo file systems such as proc, tmpfs, overlay are left out.",
    tags=(Tag("mount", "the mount point"),),
    fields=(
        Field("used_percent", float, "used space, as `df` shows it", "%"),
        Field("free_bytes", int, "space available to unprivileged users", "bytes"),
    ),
)

SECTION = register(Section("host, disk (collectors/host.py)", 30, (HOST, DISK)))
