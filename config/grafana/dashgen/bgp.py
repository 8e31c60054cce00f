"""Dashboard 2, BGP (egress-bgp): sessions, routes, our prefixes, RPKI, RIS Live."""

# ruff: noqa: S608  (InfluxQL built from constants, not user input)
from __future__ import annotations

from dashgen.board import Board
from dashgen.names import EVENT_KINDS, kinds
from dashgen.panels import (
    cell_color,
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
    HOST,
    HOST_VAR,
    ORANGE,
    RED,
    VISIBLE_MAP,
    bool_map,
    custom_var,
    q,
    tag_var,
    thresholds,
)

ALARM_KINDS = kinds("origin_mismatch", "more_specific", "own_prefix_missing")


def bgp() -> Board:
    prefix_var = tag_var("prefix", 'SHOW TAG VALUES FROM "bgp_prefix" WITH KEY = "prefix" '
                         f"WHERE {HOST}", "Own prefix")
    kind_var = custom_var("kind", list(EVENT_KINDS), "Event kind")
    b = Board("egress-bgp", "egress-agent / BGP",
              "BGP sessions with each carrier, routes received, our own prefixes as each "
              "carrier sees them, and hijack / path alarms.",
              ["bgp"], [HOST_VAR, CARRIER_VAR, prefix_var, kind_var], [BGP_EVENTS, ALERTS])
    kinds = '"kind" =~ /^$kind$/'
    prefix = '"prefix" =~ /^$prefix$/'

    b.row("Sessions")
    b.add(stat("Session state", [q(
        'SELECT last("state") FROM "bgp_session" '
        f'WHERE {HC} AND $timeFilter GROUP BY "carrier"', alias="$tag_carrier")],
        mappings=BGP_STATE_MAP, fields="/.*/",
        description="ExaBGP's state of the session with each carrier."), 8, 4)
    b.add(stat("Uptime", [q(
        'SELECT last("uptime_s") FROM "bgp_session" '
        f'WHERE {HC} AND $timeFilter GROUP BY "carrier"', alias="$tag_carrier")],
        "s", "Time since the session was last established (0 while down).",
        steps=thresholds((RED, None), (ORANGE, 1), (GREEN, 3600)),
        color_mode="value"), 8, 4)
    b.add(stat("Flaps in range", [q(
        'SELECT spread("flaps") FROM "bgp_session" '
        f'WHERE {HC} AND $timeFilter GROUP BY "carrier"', alias="$tag_carrier")],
        description="Times each session went down in the selected range "
        "(an agent restart resets the counter).",
        steps=thresholds((GREEN, None), (ORANGE, 1), (RED, 3))), 8, 4)
    b.add(state_timeline("Established", [q(
        'SELECT last("up") FROM "bgp_session" '
        f"WHERE {HC} AND $timeFilter {EVERY}, \"carrier\" fill(previous)",
        alias="$tag_carrier")],
        bool_map("Established", "Down"), "bgp_session.up over time."), 24, 5)

    b.row("Routes received")
    b.add(timeseries("IPv4 prefixes received", [q(
        'SELECT last("prefixes_v4") FROM "bgp_session" '
        f"WHERE {HC} AND $timeFilter {EVERY}, \"carrier\" fill(previous)",
        alias="$tag_carrier")], "short",
        "Size of each carrier's IPv4 table as the agent holds it."), 12, 8)
    b.add(timeseries("IPv6 prefixes received", [q(
        'SELECT last("prefixes_v6") FROM "bgp_session" '
        f"WHERE {HC} AND $timeFilter {EVERY}, \"carrier\" fill(previous)",
        alias="$tag_carrier")], "short",
        "Size of each carrier's IPv6 table as the agent holds it."), 12, 8)
    b.add(timeseries("Updates / withdrawals", [
        q('SELECT non_negative_derivative(max("updates"), 1s) FROM "bgp_session" '
          f"WHERE {HC} AND $timeFilter {EVERY}, \"carrier\" fill(null)",
          "A", "$tag_carrier updates"),
        q('SELECT non_negative_derivative(max("withdrawals"), 1s) FROM "bgp_session" '
          f"WHERE {HC} AND $timeFilter {EVERY}, \"carrier\" fill(null)",
          "B", "$tag_carrier withdrawals")],
        "ops", "Prefixes announced and withdrawn per second by each carrier (withdrawals "
        "below zero). A storm here is route churn upstream.",
        minimum=None, overrides=[negative_y("withdrawals$")]), 10, 8)
    b.add(timeseries("Session flaps", [q(
        'SELECT non_negative_difference(max("flaps")) FROM "bgp_session" '
        f"WHERE {HC} AND $timeFilter {EVERY}, \"carrier\" fill(null)",
        alias="$tag_carrier")], "short", "Session drops per interval.", bars=True), 8, 8)
    b.add(stat("Convergence", [q(
        'SELECT last("converge_v4_s") AS "v4", last("converge_v6_s") AS "v6" '
        f'FROM "bgp_session" WHERE {HC} AND $timeFilter GROUP BY "carrier"',
        alias="$tag_carrier $col")],
        "s", "Time from session up to the carrier's End-of-RIB per family (current "
        "session): how long a full table takes to load.",
        steps=thresholds((GREEN, None), (ORANGE, 120), (RED, 600)), color_mode="value"),
        6, 8)

    b.row("Own prefixes")
    b.add(state_timeline("Own prefix announced per carrier", [q(
        'SELECT last("announced") FROM "bgp_prefix" '
        f"WHERE {HC} AND {prefix} AND $timeFilter {EVERY}, \"carrier\", \"prefix\" "
        "fill(previous)", alias="$tag_prefix to $tag_carrier")],
        bool_map("announced", "NOT ANNOUNCED"),
        "bgp_prefix.announced: the session is up and we announce the prefix to the "
        "carrier. Not announced: that carrier's users reach the prefix only through "
        "another carrier, if at all (see own_prefix_missing events)."), 12, 6)
    b.add(state_timeline("Own prefix in the carrier's table", [q(
        'SELECT last("visible") FROM "bgp_prefix" '
        f"WHERE {HC} AND {prefix} AND $timeFilter {EVERY}, \"carrier\", \"prefix\" "
        "fill(previous)", alias="$tag_prefix from $tag_carrier")],
        VISIBLE_MAP,
        "bgp_prefix.visible: the carrier sends our prefix back to us. Normally it does not "
        "(the path would hold our AS); it does when it reaches the prefix through "
        "another network, e.g. after we stopped announcing it there, or when someone else "
        "originates it (then the origin AS below differs from ours)."), 12, 6)
    b.add(table("Own prefixes as each carrier sees them", [q(
        'SELECT last("announced") AS "announced", last("visible") AS "in table", '
        'last("origin_as") AS "origin AS", last("as_path_len") AS "path length", '
        'last("as_path") AS "AS path", last("next_hop") AS "next hop" FROM "bgp_prefix" '
        f'WHERE {HC} AND {prefix} AND $timeFilter GROUP BY "prefix", "carrier"',
        fmt="table")],
        "Latest state of each own prefix per carrier. When the prefix is in a carrier's "
        "table, its origin AS should be our local_as; another origin is a hijack "
        "(origin_mismatch).",
        overrides=[cell_color("^announced$", bool_map("announced", "NOT ANNOUNCED")),
                   cell_color("^in table$", VISIBLE_MAP)],
        time_from="15m"), 16, 7)
    b.add(timeseries("AS path length", [q(
        'SELECT last("as_path_len") FROM "bgp_prefix" '
        f"WHERE {HC} AND {prefix} AND $timeFilter {EVERY}, \"carrier\", \"prefix\" "
        "fill(previous)", alias="$tag_prefix from $tag_carrier")], "short",
        "Length of the AS path to our prefix in each carrier's table (0: not in it)."),
        8, 7)

    rpki_panels(b, prefix)

    b.row("Alarms")
    b.add(stat("Alarms in range", [q(
        'SELECT count("detail") FROM "bgp_event" '
        f"WHERE {HC} AND \"kind\" =~ /^({ALARM_KINDS}|path_change)$/ AND $timeFilter "
        'GROUP BY "kind"', alias="$tag_kind")],
        description="Hijack-type events (origin_mismatch, more_specific, "
        "own_prefix_missing) and watched-destination path changes in the range.",
        steps=thresholds((GREEN, None), (RED, 1))), 24, 4)
    b.add(table("BGP events", [q(
        'SELECT "kind", "carrier", "prefix", "origin_as", "as_path", "detail" '
        f'FROM "bgp_event" WHERE {HC} AND {kinds} AND $timeFilter '
        "ORDER BY time DESC LIMIT 500", fmt="table")],
        "origin_mismatch: our prefix originated by another AS; more_specific: a "
        "more-specific of our prefix from anyone; own_prefix_missing: a carrier does not "
        "carry our prefix; path_change: the AS path to a watched destination changed.",
        overrides=[cell_color("^kind$", [{"type": "value", "options": {
            "origin_mismatch": {"color": RED, "index": 0},
            "more_specific": {"color": RED, "index": 1},
            "own_prefix_missing": {"color": ORANGE, "index": 2},
            "session_down": {"color": ORANGE, "index": 3},
            "path_change": {"color": BLUE, "index": 4},
            "session_up": {"color": GREEN, "index": 5}}}])],
        hide=(), sort_by="Time"), 24, 10)
    ris_live_rows(b)
    return b


# ---- BGP: visibility from outside (RIPE RIS Live, [bgp.ris_live]; collectors/bgp/rislive)

LOST_MAP = bool_map("LOST", "usual")


def ris_live_rows(b: Board) -> None:
    prefix = '"prefix" =~ /^$prefix$/'
    vias = '"via" =~ /^($carrier|any|other)$/'
    b.row("Visibility from outside (RIS Live)")
    b.add(timeseries("Visibility per carrier", [q(
        'SELECT last("peers") FROM "bgp_visibility" '
        f"WHERE {HOST} AND {prefix} AND {vias} AND $timeFilter {EVERY}, \"prefix\", "
        '"via" fill(previous)', alias="$tag_prefix via $tag_via")], "short",
        "RIPE RIS Live vantage points (BGP peers of RIS's route collectors around the world) "
        "that see our prefix with our origin AS: `any` in total, per carrier those whose "
        "path enters our AS through that carrier, `other` through an AS that is none of "
        "our carriers. A carrier falling to zero while the others rise: it stopped "
        "propagating us (ris_visibility_lost)."), 16, 8)
    b.add(table("Visibility now", [q(
        'SELECT last("peers") AS "peers", last("usual_peers") AS "usual", '
        'last("lost") AS "lost" FROM "bgp_visibility" '
        f'WHERE {HOST} AND {prefix} AND {vias} AND $timeFilter GROUP BY "prefix", "via"',
        fmt="table")],
        "Vantage points per prefix and via now, the usual level they are judged against "
        "(highest of the last `baseline`) and whether the via is judged lost.",
        overrides=[cell_color("^lost$", LOST_MAP)], time_from="15m"), 8, 8)
    b.add(timeseries("Foreign origin and more-specifics seen from outside", [
        q('SELECT last("peers_foreign_origin") FROM "bgp_visibility" '
          f'WHERE {HOST} AND {prefix} AND "via" = \'any\' AND $timeFilter {EVERY}, '
          '"prefix" fill(previous)', "A", "$tag_prefix foreign origin"),
        q('SELECT last("peers_more_specific") FROM "bgp_visibility" '
          f'WHERE {HOST} AND {prefix} AND "via" = \'any\' AND $timeFilter {EVERY}, '
          '"prefix" fill(previous)', "B", "$tag_prefix more-specific")], "short",
        "Vantage points that see our prefix (or a more-specific of it) originated by another "
        "AS, and those that see a more-specific of it at all. Anything above zero is a "
        "hijack or a leak in the making (ris_hijack at hijack_min_peers).",
        steps=thresholds((GREEN, None), (RED, 1)), threshold_lines=True), 12, 7)
    b.add(stat("RIS Live feed", [q(
        'SELECT last("connected") AS "connected", last("last_message_age_s") AS '
        '"last message", last("messages_per_min") AS "messages/min", '
        'last("vantage_points") AS "vantage points", last("bad_messages") AS "bad" '
        f'FROM "bgp_feed" WHERE {HOST} AND $timeFilter')],
        description="The feed's health: connected, seconds since its last message, "
        "messages in the last minute, vantage points holding routes for our prefixes, "
        "malformed messages since start (bgp_feed).",
        mappings=bool_map("connected", "DOWN"), color_mode="value", fields="/.*/"), 12, 7)

# bgp_prefix.rpki (docs/metrics.md): our announcement against the VRPs in force
RPKI_STATE_MAP = [{"type": "value", "options": {
    "valid": {"text": "valid", "color": GREEN, "index": 0},
    "not_found": {"text": "not found (no ROA)", "color": ORANGE, "index": 1},
    "invalid": {"text": "INVALID", "color": RED, "index": 2},
}}]


def rpki_panels(b: Board, prefix: str) -> None:
    """RPKI route origin validation ([bgp.rpki]): per carrier counts, our prefixes'
    state, the VRP sources."""
    b.row("RPKI")
    b.add(timeseries("RPKI-invalid routes received", [q(
        'SELECT last("rpki_invalid") FROM "bgp_session" '
        f"WHERE {HC} AND $timeFilter {EVERY}, \"carrier\" fill(previous)",
        alias="$tag_carrier")], "short",
        "Routes each carrier sends that are RPKI-invalid against the VRPs in force "
        "(bgp_session.rpki_invalid): a network that validates drops them. A jump is a "
        "hijack or leak upstream, or a changed ROA."), 12, 7)
    b.add(table("RPKI per carrier", [q(
        'SELECT last("rpki_valid") AS "valid", last("rpki_invalid") AS "invalid", '
        'last("rpki_not_found") AS "not found" FROM "bgp_session" '
        f'WHERE {HC} AND $timeFilter GROUP BY "carrier"', fmt="table")],
        "Routes held from each carrier by origin validation state (RFC 6811), IPv4 and "
        "IPv6 together.", time_from="15m"), 12, 7)
    b.add(state_timeline("Own prefix RPKI state", [q(
        'SELECT last("rpki") FROM "bgp_prefix" '
        f"WHERE {HC} AND {prefix} AND $timeFilter {EVERY}, \"prefix\" fill(previous)",
        alias="$tag_prefix")], RPKI_STATE_MAP,
        "bgp_prefix.rpki: our announcement (origin local_as) against the VRPs. Invalid: "
        "validating networks drop it (fix the ROA); not found: no ROA protects it."),
        12, 6)
    b.add(table("VRP sources", [q(
        'SELECT last("in_force") AS "in force", last("vrps") AS "VRPs", '
        'last("serial") AS "serial", last("age_s") AS "age (s)", last("stale") AS "stale", '
        'last("connected") AS "connected" FROM "bgp_rpki" '
        f'WHERE {HOST} AND $timeFilter GROUP BY "source"', fmt="table")],
        "Each [bgp.rpki] source (RTR cache, VRP file or URL): VRPs held, serial, age of "
        "its data; routes are validated against the one in force.",
        overrides=[cell_color("^stale$", bool_map("STALE", "fresh", RED, GREEN))],
        time_from="15m"), 12, 6)

