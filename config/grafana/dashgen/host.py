"""Dashboard 4, host and agent (egress-host)."""

# ruff: noqa: S608  (InfluxQL built from constants, not user input)
from __future__ import annotations

from dashgen.board import Board
from dashgen.panels import (
    bargauge,
    by_name,
    stat,
    timeseries,
)
from dashgen.parts import (
    ALERTS,
    EVERY,
    GREEN,
    HOST,
    HOST_VAR,
    ORANGE,
    RED,
    q,
    tag_var,
    thresholds,
)


def host() -> Board:
    mount_var = tag_var("mount", f'SHOW TAG VALUES FROM "disk" WITH KEY = "mount" WHERE {HOST}',
                        "Mount")
    b = Board("egress-host", "egress-agent / Host and agent",
              "Resources of the provider host and the agent's own health: queue, spool, "
              "delivery.", ["host"], [HOST_VAR, mount_var], [ALERTS])
    h = f"{HOST} AND $timeFilter"
    by_host = f'{EVERY}, "host" fill(null)'

    b.row("Host")
    b.add(timeseries("CPU", [q(
        f'SELECT mean("cpu_percent") FROM "host" WHERE {h} {by_host}', alias="$tag_host")],
        "percent", "CPU use of the whole host.", maximum=100,
        steps=thresholds((GREEN, None), (ORANGE, 80), (RED, 95))), 8, 7)
    b.add(timeseries("Load", [q(
        'SELECT mean("load1") AS "load1", mean("load5") AS "load5", '
        f'mean("load15") AS "load15" FROM "host" WHERE {h} {by_host}',
        alias="$tag_host $col")], "short", "Load averages."), 8, 7)
    b.add(timeseries("Memory used", [q(
        f'SELECT mean("mem_used_percent") FROM "host" WHERE {h} {by_host}',
        alias="$tag_host")], "percent", "Used memory (excluding reclaimable cache).",
        maximum=100, steps=thresholds((GREEN, None), (ORANGE, 85), (RED, 95))), 8, 7)
    b.add(timeseries("Memory available", [q(
        f'SELECT mean("mem_available_bytes") FROM "host" WHERE {h} {by_host}',
        alias="$tag_host")], "bytes", "Memory available to new processes."), 8, 7)
    b.add(timeseries("Disk used", [q(
        'SELECT last("used_percent") FROM "disk" '
        f'WHERE {h} AND "mount" =~ /^$mount$/ {EVERY}, "host", "mount" fill(previous)',
        alias="$tag_host $tag_mount")], "percent", "Per mount point.", maximum=100,
        steps=thresholds((GREEN, None), (ORANGE, 80), (RED, 90)),
        threshold_lines=True), 8, 7)
    b.add(timeseries("Disk free", [q(
        'SELECT last("free_bytes") FROM "disk" '
        f'WHERE {h} AND "mount" =~ /^$mount$/ {EVERY}, "host", "mount" fill(previous)',
        alias="$tag_host $tag_mount")], "bytes", "Per mount point."), 8, 7)
    b.add(timeseries("TCP sockets", [q(
        'SELECT mean("tcp_established") AS "established", '
        f'mean("tcp_time_wait") AS "time_wait" FROM "host" WHERE {h} {by_host}',
        alias="$tag_host $col")], "short", "IPv4 + IPv6 sockets by state."), 12, 7)
    b.add(bargauge("Disk used now", [q(
        'SELECT last("used_percent") FROM "disk" '
        f'WHERE {h} AND "mount" =~ /^$mount$/ GROUP BY "host", "mount"',
        alias="$tag_host $tag_mount")], "percent",
        thresholds((GREEN, None), (ORANGE, 80), (RED, 90)),
        "Latest use of every mount point.", maximum=100), 12, 7)

    b.row("Agent")
    b.add(stat("Agent alive", [q(
        'SELECT count("rss_bytes") FROM "agent" '
        f'WHERE {HOST} AND time > now() - 2m GROUP BY "host"', alias="$tag_host")],
        description="Self-metric points in the last 2 minutes; 0 or no data means the "
        "agent (or its delivery) stopped.",
        steps=thresholds((RED, None), (GREEN, 1))), 6, 7)
    b.add(timeseries("Agent CPU and memory", [
        q(f'SELECT mean("total_cpu_percent") FROM "agent" WHERE {h} {by_host}', "A",
          "$tag_host cpu"),
        q(f'SELECT mean("cpu_percent") FROM "agent" WHERE {h} {by_host}', "C",
          "$tag_host cpu agent process"),
        q(f'SELECT mean("total_rss_bytes") FROM "agent" WHERE {h} {by_host}', "B",
          "$tag_host rss")], "percent",
        "The agent's whole cost to the host (% of one core, resident memory): the agent "
        "process and its children, ExaBGP and the BGP bridge; and the agent process alone.",
        overrides=[by_name("rss$", ("unit", "bytes"),
                           ("custom.axisPlacement", "right"))]), 9, 7)
    b.add(timeseries("Queue and spool", [
        q(f'SELECT max("queue_points") FROM "agent" WHERE {h} {by_host}', "A",
          "$tag_host queue points"),
        q(f'SELECT max("spool_bytes") FROM "agent" WHERE {h} {by_host}', "B",
          "$tag_host spool bytes")],
        "short", "Points waiting in memory and bytes in the on-disk spool; a spool that "
        "keeps growing means an output is behind.",
        overrides=[by_name("spool bytes$", ("unit", "bytes"),
                           ("custom.axisPlacement", "right"))]), 9, 7)
    b.add(timeseries("Points written", [q(
        'SELECT non_negative_derivative(max("points_written"), 1s) FROM "agent" '
        f"WHERE {h} {by_host}", alias="$tag_host")], "short",
        "Points delivered per second, summed over outputs."), 12, 7)
    b.add(timeseries("Dropped points and write errors", [
        q('SELECT non_negative_difference(max("points_dropped")) FROM "agent" '
          f"WHERE {h} {by_host}", "A", "$tag_host dropped"),
        q('SELECT non_negative_difference(max("write_errors")) FROM "agent" '
          f"WHERE {h} {by_host}", "B", "$tag_host write errors")],
        "short", "Per interval. Dropped: spool full, queue overflow or unwritable points; "
        "write errors: batches a server rejected.", bars=True,
        steps=thresholds((GREEN, None), (RED, 1))), 12, 7)

    b.row("Outputs")
    out = f'{EVERY}, "host", "output" fill(null)'
    b.add(timeseries("Delivered per output", [q(
        'SELECT non_negative_derivative(max("points_written"), 1s) FROM "agent_output" '
        f"WHERE {h} {out}", alias="$tag_host $tag_output")], "short",
        "Points per second each output delivered."), 8, 7)
    b.add(timeseries("Lag per output", [q(
        f'SELECT max("lag_points") FROM "agent_output" WHERE {h} {out}',
        alias="$tag_host $tag_output")], "short",
        "Points in the spool not yet delivered by the output: rising means the server is "
        "down or slower than the agent.",
        steps=thresholds((GREEN, None), (ORANGE, 10000), (RED, 1000000))), 8, 7)
    b.add(timeseries("Retries and rejected batches per output", [
        q('SELECT non_negative_difference(max("retries")) FROM "agent_output" '
          f"WHERE {h} {out}", "A", "$tag_host $tag_output retries"),
        q('SELECT non_negative_difference(max("write_errors")) FROM "agent_output" '
          f"WHERE {h} {out}", "B", "$tag_host $tag_output rejected")],
        "short", "Per interval: failed attempts that will be retried (server down, 5xx, "
        "429, auth) and batches the server rejected as malformed.", bars=True), 8, 7)
    return b

