"""Dashboard 3, access quality (egress-quality)."""

# ruff: noqa: S608  (InfluxQL built from constants, not user input)
from __future__ import annotations

from dashgen.board import Board
from dashgen.panels import (
    by_name,
    cell_color,
    stat,
    state_timeline,
    table,
    timeseries,
)
from dashgen.parts import (
    ALERTS,
    BGP_EVENTS,
    CARRIER_VAR,
    EVERY,
    GREEN,
    HC,
    HOST,
    HOST_VAR,
    LINK_EVENTS,
    ORANGE,
    RED,
    STATUS_MAP,
    TARGET,
    bool_map,
    q,
    tag_var,
    thresholds,
)


def quality() -> Board:
    target_var = tag_var("target", 'SHOW TAG VALUES FROM "probe" WITH KEY = "target" '
                         f"WHERE {HOST}", "Target")
    method_var = tag_var("method", 'SHOW TAG VALUES FROM "probe" WITH KEY = "method" '
                         f"WHERE {HOST}", "Method")
    b = Board("egress-quality", "egress-agent / Access quality",
              "Latency, loss, jitter and path through each carrier to the destinations "
              "that matter, and which carrier is best for each.",
              ["quality"], [HOST_VAR, CARRIER_VAR, target_var, method_var],
              [LINK_EVENTS, BGP_EVENTS, ALERTS])
    pf = f'{HC} AND {TARGET} AND "method" =~ /^$method$/'
    series = f'{EVERY}, "carrier", "target", "method" fill(null)'
    alias = "$tag_carrier → $tag_target $tag_method"

    b.row("Verdict")
    b.add(state_timeline("Quality status", [q(
        'SELECT last("status") FROM "quality" '
        f"WHERE {HC} AND {TARGET} AND $timeFilter {EVERY}, \"target\", \"carrier\" "
        "fill(previous)", alias="$tag_target via $tag_carrier")],
        STATUS_MAP, "ok / degraded / down per carrier and target, from the [quality] "
        "thresholds (docs/metrics.md)."), 14, 8)
    b.add(table("Now: per target and carrier", [q(
        'SELECT last("status") AS "status", last("score") AS "score", '
        'last("best") AS "best" FROM "quality" '
        f'WHERE {HC} AND {TARGET} AND $timeFilter GROUP BY "target", "carrier"',
        fmt="table")],
        "Latest verdict; `best` marks the carrier to prefer for the target.",
        overrides=[cell_color("^status$", STATUS_MAP),
                   cell_color("^best$", bool_map("best", "", GREEN, "transparent"))],
        time_from="5m"), 10, 8)
    b.add(state_timeline("Best carrier per target", [q(
        'SELECT last("best") FROM "quality" '
        f"WHERE {HC} AND {TARGET} AND $timeFilter {EVERY}, \"target\", \"carrier\" "
        "fill(previous)", alias="$tag_target via $tag_carrier")],
        bool_map("best", "-", GREEN, "transparent"),
        "When each carrier was the best one for the target (highest score, not down)."),
        12, 6)
    b.add(timeseries("Quality score", [q(
        'SELECT mean("score") FROM "quality" '
        f"WHERE {HC} AND {TARGET} AND $timeFilter {EVERY}, \"target\", \"carrier\" "
        "fill(null)", alias="$tag_target via $tag_carrier")], "none",
        "0-100, higher is better; 0 when down.", maximum=100,
        steps=thresholds((RED, None), (ORANGE, 25), (GREEN, 50))), 12, 6)

    b.row("Latency, loss, jitter")
    b.add(timeseries("RTT median", [q(
        f'SELECT mean("rtt_median_ms") FROM "probe" WHERE {pf} AND $timeFilter {series}',
        alias=alias)], "ms", "Median RTT of each round, averaged per interval."), 12, 8)
    b.add(timeseries("RTT p95", [q(
        f'SELECT max("rtt_p95_ms") FROM "probe" WHERE {pf} AND $timeFilter {series}',
        alias=alias)], "ms", "95th-percentile RTT of each round; worst round per "
        "interval."), 12, 8)
    b.add(timeseries("Loss", [q(
        f'SELECT mean("loss_pct") FROM "probe" WHERE {pf} AND $timeFilter {series}',
        alias=alias)], "percent",
        "Lost probes per round. Lines at the default thresholds: degraded 2 %, "
        "down 50 %.", maximum=100,
        steps=thresholds((GREEN, None), (ORANGE, 2), (RED, 50)),
        threshold_lines=True), 12, 8)
    b.add(timeseries("Jitter", [q(
        f'SELECT mean("jitter_ms") FROM "probe" WHERE {pf} AND $timeFilter {series}',
        alias=alias)], "ms",
        "Mean absolute difference of consecutive RTTs (RFC 3550 style)."), 12, 8)
    b.add(table("Last round", [q(
        'SELECT last("loss_pct") AS "loss %", last("rtt_min_ms") AS "min", '
        'last("rtt_median_ms") AS "median", last("rtt_p95_ms") AS "p95", '
        'last("rtt_max_ms") AS "max", last("jitter_ms") AS "jitter", '
        'last("stddev_ms") AS "stddev" FROM "probe" '
        f'WHERE {pf} AND $timeFilter GROUP BY "target", "carrier", "method"',
        fmt="table")],
        "Latest round per carrier, target and method (ms, loss in %).",
        overrides=[by_name("^(min|median|p95|max|jitter|stddev)$", ("unit", "ms"),
                           ("decimals", 2))],
        time_from="5m"), 24, 8)

    b.row("Path")
    b.add(timeseries("Traceroute hops", [q(
        'SELECT last("hops") FROM "traceroute" '
        f"WHERE {HC} AND {TARGET} AND $timeFilter {EVERY}, \"carrier\", \"target\" "
        "fill(null)", alias="$tag_carrier → $tag_target")], "short",
        "Hop count of each traceroute; a step is a path change."), 12, 7)
    b.add(stat("Distinct paths in range", [q(
        'SELECT count(distinct("path")) FROM "traceroute" '
        f'WHERE {HC} AND {TARGET} AND $timeFilter GROUP BY "carrier", "target"',
        alias="$tag_carrier → $tag_target")],
        description="Number of different hop sequences seen; more than one means the "
        "path changed in the range.",
        steps=thresholds((GREEN, None), (ORANGE, 2))), 6, 7)
    b.add(state_timeline("Target reached", [q(
        'SELECT last("reached") FROM "traceroute" '
        f"WHERE {HC} AND {TARGET} AND $timeFilter {EVERY}, \"carrier\", \"target\" "
        "fill(previous)", alias="$tag_carrier → $tag_target")],
        bool_map("reached", "not reached"), "Whether the target itself answered."), 6, 7)
    b.add(table("Traceroute paths", [q(
        'SELECT "carrier", "target", "hops", "reached", "path", "as_path" '
        f'FROM "traceroute" WHERE {HC} AND {TARGET} AND $timeFilter '
        "ORDER BY time DESC LIMIT 200", fmt="table")],
        "Hop addresses (`*` silent) and the origin AS of each hop from the agent's BGP "
        "tables.", hide=(), sort_by="Time"), 24, 9)
    b.add(table("Watched destination path changes", [q(
        'SELECT "carrier", "prefix", "as_path", "origin_as", "detail" FROM "bgp_event" '
        f"WHERE {HC} AND \"kind\" = 'path_change' AND $timeFilter "
        "ORDER BY time DESC LIMIT 200", fmt="table")],
        "BGP AS-path changes to [bgp].watch destinations per carrier.",
        hide=(), sort_by="Time"), 24, 7)
    return b

