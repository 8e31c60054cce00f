"""Dashboard 1, overview per carrier (egress-overview)."""

# ruff: noqa: S608  (InfluxQL built from constants, not user input)
from __future__ import annotations

from dashgen.board import Board
from dashgen.panels import (
    bargauge,
    by_name,
    cell_color,
    dashed,
    negative_y,
    stat,
    state_timeline,
    table,
    timeseries,
)
from dashgen.parts import (
    ALERTS,
    BGP_EVENTS,
    BGP_STATE_MAP,
    BLUE,
    CARRIER_VAR,
    EVERY,
    GREEN,
    HC,
    HOST_VAR,
    LINK_EVENTS,
    ORANGE,
    RED,
    STATUS_MAP,
    UTIL_THRESHOLDS,
    bool_map,
    q,
    thresholds,
)


def overview() -> Board:
    b = Board("egress-overview", "egress-agent / Overview per carrier",
              "Per carrier uplink: bandwidth against the commitment, link and BGP state, "
              "access quality and 95th-percentile billing.",
              ["overview"], [HOST_VAR, CARRIER_VAR], [LINK_EVENTS, BGP_EVENTS, ALERTS])

    b.row("All carriers")
    b.add(state_timeline(
        "Uplink state", [q(
            'SELECT last("oper_up") FROM "link" '
            f"WHERE {HC} AND $timeFilter {EVERY}, \"carrier\" fill(previous)",
            alias="$tag_carrier")],
        bool_map("UP", "DOWN"),
        "Operational state of each carrier uplink (link.oper_up). Exact transitions are "
        "the `Link events` annotations."), 8, 6)
    b.add(state_timeline(
        "Routing checks", [q(
            'SELECT last("route_ok") AS "route", last("gateway_ok") AS "gateway", '
            'last("egress_ok") AS "egress" FROM "link" '
            f"WHERE {HC} AND $timeFilter {EVERY}, \"carrier\" fill(previous)",
            "A", "$tag_carrier $col"),
            q('SELECT last("route6_ok") AS "route6", last("gateway6_ok") AS "gateway6", '
              'last("egress6_ok") AS "egress6" FROM "link" '
              f"WHERE {HC} AND $timeFilter {EVERY}, \"carrier\" fill(previous)",
              "B", "$tag_carrier $col")],
        bool_map("ok", "FAILED"),
        "Per uplink: default route in the carrier's table (route), gateway neighbour "
        "usable (gateway), traffic from the carrier's source leaves through the uplink "
        "(egress); route6/gateway6/egress6 the same for IPv6 (carriers with source6). "
        "Only the checks the carrier's config allows are shown."), 8, 6)
    b.add(state_timeline(
        "BGP session", [q(
            'SELECT last("up") FROM "bgp_session" '
            f"WHERE {HC} AND $timeFilter {EVERY}, \"carrier\" fill(previous)",
            alias="$tag_carrier")],
        bool_map("Established", "Down"),
        "bgp_session.up per carrier; session_up/session_down are `BGP events`."), 8, 6)
    b.add(timeseries(
        "Uplink utilization (of committed)", [
            q('SELECT max("rx_util") * 100 FROM "link" '
              f"WHERE {HC} AND $timeFilter {EVERY}, \"carrier\" fill(null)",
              "A", "$tag_carrier rx"),
            q('SELECT max("tx_util") * 100 FROM "link" '
              f"WHERE {HC} AND $timeFilter {EVERY}, \"carrier\" fill(null)",
              "B", "$tag_carrier tx")],
        "percent",
        "rx/tx rate as % of the carrier's committed_mbps (else of the link speed); "
        "peak of each interval. Orange above 80 %, red above 95 %.",
        steps=UTIL_THRESHOLDS, threshold_lines=True), 16, 8)
    b.add(table(
        "Best carrier per target (now)", [q(
            'SELECT last("score") AS "score" FROM "quality" '
            f'WHERE {HC} AND "best" = true AND $timeFilter GROUP BY "target", "carrier"',
            fmt="table")],
        "The carrier whose quality score is highest for each probe target in the last "
        "5 minutes (quality.best). A target missing here has every carrier down.",
        hide=("Time",), rename={"target": "Target", "carrier": "Best carrier",
                                "score": "Score"}, time_from="5m"), 8, 8)

    b.add(timeseries(
        "95th percentile of committed (month to date)", [q(
            'SELECT last("p95_util") * 100 FROM "billing" '
            f"WHERE {HC} AND $timeFilter {EVERY}, \"carrier\" fill(previous)",
            alias="$tag_carrier")],
        "percent", "billing.p95_util: what the carrier would bill if the month ended now, "
        "as % of the commitment. Above 100 % the overage is billed.",
        steps=UTIL_THRESHOLDS, threshold_lines=True), 12, 7)
    b.add(state_timeline(
        "Quality status per target", [q(
            'SELECT last("status") FROM "quality" '
            f"WHERE {HC} AND $timeFilter {EVERY}, \"target\", \"carrier\" fill(previous)",
            alias="$tag_target via $tag_carrier")],
        STATUS_MAP, "ok / degraded / down of every probe target through every carrier."),
        12, 7)

    b.row("Carrier $carrier", repeat="carrier")
    b.add(stat("Link", [
        q('SELECT last("oper_up") AS "oper" FROM "link" '
          f"WHERE {HC} AND $timeFilter", "A", "oper"),
        q('SELECT last("carrier_up") AS "carrier" FROM "link" '
          f"WHERE {HC} AND $timeFilter", "B", "carrier")],
        mappings=bool_map("UP", "DOWN"), fields="/.*/",
        description="Last link.oper_up and link.carrier_up of the uplink.",
        text_mode="value_and_name"), 3, 5)
    b.add(bargauge("Utilization now", [
        q('SELECT last("rx_util") * 100 AS "rx" FROM "link" '
          f"WHERE {HC} AND $timeFilter", "A", "rx"),
        q('SELECT last("tx_util") * 100 AS "tx" FROM "link" '
          f"WHERE {HC} AND $timeFilter", "B", "tx")],
        "percent", UTIL_THRESHOLDS,
        "Last rx/tx rate as % of committed.", maximum=100), 4, 5)
    b.add(stat("BGP", [
        q('SELECT last("state") AS "state" FROM "bgp_session" '
          f"WHERE {HC} AND $timeFilter", "A", "state"),
        q('SELECT last("prefixes_v4") AS "v4 prefixes", last("prefixes_v6") AS '
          '"v6 prefixes" FROM "bgp_session" '
          f"WHERE {HC} AND $timeFilter", "B", "$col")],
        fields="/.*/", overrides=[by_name("^state$", ("mappings", BGP_STATE_MAP),
                                          ("color", {"mode": "thresholds"}))],
        steps=thresholds((BLUE, None)),
        description="Session state and prefixes received from the carrier.",
        color_mode="value"), 5, 5)
    b.add(stat("95th percentile (month)", [
        q('SELECT last("p95_util") * 100 AS "p95 of committed" FROM "billing" '
          f"WHERE {HC} AND $timeFilter", "A", "p95 of committed")],
        "percent", "p95 of the 5-minute rates this month (billing.p95_util).",
        steps=UTIL_THRESHOLDS, decimals=1), 4, 5)
    b.add(table("Quality by target", [q(
        'SELECT last("status") AS "status", last("score") AS "score" FROM "quality" '
        f'WHERE {HC} AND $timeFilter GROUP BY "target"', fmt="table")],
        "Latest quality status and score through this carrier.",
        overrides=[cell_color("^status$", STATUS_MAP)],
        hide=("Time", "carrier"), time_from="5m"), 8, 5)
    b.add(timeseries(
        "Bandwidth vs committed", [
            q('SELECT mean("rx_bps") FROM "link" '
              f"WHERE {HC} AND $timeFilter {EVERY} fill(null)", "A", "rx"),
            q('SELECT mean("tx_bps") FROM "link" '
              f"WHERE {HC} AND $timeFilter {EVERY} fill(null)", "B", "tx"),
            q('SELECT last("committed_bps") FROM "billing" '
              f"WHERE {HC} AND $timeFilter {EVERY} fill(previous)", "C", "committed"),
            q('SELECT last("p95_bps") FROM "billing" '
              f"WHERE {HC} AND $timeFilter {EVERY} fill(previous)", "D", "p95 (month)")],
        "bps", "Receive and transmit rate of the uplink (tx drawn below zero) against "
        "the committed bandwidth and this month's 95th percentile.",
        minimum=None,
        overrides=[negative_y("^tx$"), dashed("^committed$", "red"),
                   dashed("^p95", "purple")]), 12, 8)
    b.add(timeseries(
        "Errors and drops", [q(
            'SELECT non_negative_derivative(max("rx_errors"), 1s) AS "rx errors", '
            'non_negative_derivative(max("tx_errors"), 1s) AS "tx errors", '
            'non_negative_derivative(max("rx_dropped"), 1s) AS "rx dropped", '
            'non_negative_derivative(max("tx_dropped"), 1s) AS "tx dropped" FROM "link" '
            f"WHERE {HC} AND $timeFilter {EVERY} fill(null)", alias="$col")],
        "pps", "Interface error and drop counters as rates."), 6, 8)
    b.add(timeseries(
        "Packets", [
            q('SELECT non_negative_derivative(max("rx_packets"), 1s) FROM "link" '
              f"WHERE {HC} AND $timeFilter {EVERY} fill(null)", "A", "rx"),
            q('SELECT non_negative_derivative(max("tx_packets"), 1s) FROM "link" '
              f"WHERE {HC} AND $timeFilter {EVERY} fill(null)", "B", "tx")],
        "pps", "Packets per second (tx below zero): a flood of small packets shows here "
        "before it shows in bits.", minimum=None, overrides=[negative_y("^tx$")]), 6, 8)
    b.add(timeseries(
        "RTT median by target", [q(
            'SELECT mean("rtt_median_ms") FROM "probe" '
            f"WHERE {HC} AND \"method\" = 'icmp' AND $timeFilter {EVERY}, \"target\" "
            "fill(null)", alias="$tag_target")],
        "ms", "ICMP median RTT through this carrier to each target."), 12, 7)
    b.add(timeseries(
        "Loss by target", [q(
            'SELECT mean("loss_pct") FROM "probe" '
            f"WHERE {HC} AND \"method\" = 'icmp' AND $timeFilter {EVERY}, \"target\" "
            "fill(null)", alias="$tag_target")],
        "percent", "ICMP loss through this carrier to each target (lines at the default "
        "degraded 2 % and down 50 %).", maximum=100,
        steps=thresholds((GREEN, None), (ORANGE, 2), (RED, 50)), threshold_lines=True),
        12, 7)
    return b

