#!/usr/bin/env python3
"""Writes the Grafana dashboards in config/grafana/dashboards/ (Grafana 9/10 JSON).

The JSON files are what Grafana loads; this script is how they are made, so that ids,
layout, datasource references and the InfluxQL filters stay consistent. Edit here, run
`python config/grafana/generate.py`, commit both. `tests/test_grafana.py` checks that the
committed JSON is what this script writes, and checks every query against docs/metrics.md
(and, where InfluxDB 1.6.7 is installed, runs every query against it).

Conventions the test relies on: raw InfluxQL with every identifier double-quoted, one
measurement per query, no subqueries; the datasource is the provisioned uid below.
"""

# ruff: noqa: S608  (InfluxQL built from constants, not user input)
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DS_UID = "egress-influxdb"
DS = {"type": "influxdb", "uid": DS_UID}
OUT = Path(__file__).resolve().parent / "dashboards"
SCHEMA_VERSION = 37  # Grafana 9.4+; Grafana 10 migrates it on load

HOST = '"host" =~ /^$host$/'
CARRIER = '"carrier" =~ /^$carrier$/'
HC = f"{HOST} AND {CARRIER}"
TARGET = '"target" =~ /^$target$/'
EVERY = "GROUP BY time($__interval)"

Json = dict[str, Any]

GREEN, ORANGE, RED, BLUE, GREY = "green", "orange", "red", "blue", "text"


# ---------------------------------------------------------------- building blocks


def q(query: str, ref: str = "A", alias: str = "", fmt: str = "time_series") -> Json:
    target: Json = {"datasource": DS, "refId": ref, "rawQuery": True, "query": query,
                    "resultFormat": fmt}
    if alias:
        target["alias"] = alias
    return target


def thresholds(*steps: tuple[str, float | None]) -> Json:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


UTIL_THRESHOLDS = thresholds((GREEN, None), (ORANGE, 80), (RED, 95))


def bool_map(true_text: str, false_text: str, true_color: str = GREEN,
             false_color: str = RED) -> list[Json]:
    return [{"type": "value", "options": {
        "true": {"text": true_text, "color": true_color, "index": 0},
        "false": {"text": false_text, "color": false_color, "index": 1},
    }}]


STATUS_MAP = [{"type": "value", "options": {
    "ok": {"text": "ok", "color": GREEN, "index": 0},
    "degraded": {"text": "degraded", "color": ORANGE, "index": 1},
    "down": {"text": "down", "color": RED, "index": 2},
}}]

# bgp_session.state (docs/metrics.md): up, connected, down, idle, exabgp_down
BGP_STATE_MAP = [{"type": "value", "options": {
    "up": {"text": "up", "color": GREEN, "index": 0},
    "connected": {"text": "connected", "color": ORANGE, "index": 1},
    "idle": {"text": "idle", "color": ORANGE, "index": 2},
    "down": {"text": "down", "color": RED, "index": 3},
    "exabgp_down": {"text": "ExaBGP down", "color": RED, "index": 4},
}}]
# bgp_prefix.visible: a carrier normally does not send our own prefix back to us (it
# would carry our AS); visible means it reaches it through someone else.
VISIBLE_MAP = bool_map("via another AS", "not in table", ORANGE, BLUE)


def panel(kind: str, title: str, targets: list[Json], description: str = "",
          unit: str = "", **extra: Any) -> Json:
    p: Json = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {},
    }
    if unit:
        p["fieldConfig"]["defaults"]["unit"] = unit
    p.update(extra)
    return p


def timeseries(title: str, targets: list[Json], unit: str = "", description: str = "",
               minimum: float | None = 0, maximum: float | None = None,
               steps: Json | None = None, threshold_lines: bool = False,
               overrides: list[Json] | None = None, stack: bool = False,
               bars: bool = False) -> Json:
    p = panel("timeseries", title, targets, description, unit)
    custom: Json = {
        "drawStyle": "bars" if bars else "line", "lineWidth": 1,
        "fillOpacity": 60 if bars else 8, "showPoints": "never", "spanNulls": False,
        "gradientMode": "none", "axisPlacement": "auto",
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "thresholdsStyle": {"mode": "line+area" if threshold_lines else "off"},
    }
    defaults = p["fieldConfig"]["defaults"]
    defaults["custom"] = custom
    defaults["color"] = {"mode": "palette-classic"}
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    defaults["thresholds"] = steps or thresholds((GREEN, None))
    p["fieldConfig"]["overrides"] = overrides or []
    p["options"] = {
        "legend": {"showLegend": True, "displayMode": "table", "placement": "bottom",
                   "calcs": ["lastNotNull", "mean", "max"]},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return p


def stat(title: str, targets: list[Json], unit: str = "", description: str = "",
         mappings: list[Json] | None = None, steps: Json | None = None,
         color_mode: str = "background", text_mode: str = "value_and_name",
         fields: str = "", decimals: int | None = None,
         overrides: list[Json] | None = None) -> Json:
    p = panel("stat", title, targets, description, unit)
    p["fieldConfig"]["overrides"] = overrides or []
    defaults = p["fieldConfig"]["defaults"]
    defaults["mappings"] = mappings or []
    defaults["thresholds"] = steps or thresholds((GREEN, None))
    defaults["color"] = {"mode": "thresholds"}
    if decimals is not None:
        defaults["decimals"] = decimals
    p["options"] = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": fields, "values": False},
        "colorMode": color_mode, "graphMode": "none", "textMode": text_mode,
        "justifyMode": "auto", "orientation": "auto", "wideLayout": True,
    }
    return p


def state_timeline(title: str, targets: list[Json], mappings: list[Json],
                   description: str = "") -> Json:
    p = panel("state-timeline", title, targets, description)
    defaults = p["fieldConfig"]["defaults"]
    defaults["custom"] = {"fillOpacity": 80, "lineWidth": 0}
    defaults["mappings"] = mappings
    defaults["color"] = {"mode": "thresholds"}
    defaults["thresholds"] = thresholds((GREY, None))
    p["options"] = {
        "mergeValues": True, "showValue": "auto", "alignValue": "left", "rowHeight": 0.85,
        "legend": {"showLegend": False, "displayMode": "list", "placement": "bottom"},
        "tooltip": {"mode": "single", "sort": "none"},
    }
    return p


def table(title: str, targets: list[Json], description: str = "",
          overrides: list[Json] | None = None, hide: tuple[str, ...] = ("Time",),
          rename: dict[str, str] | None = None, sort_by: str = "",
          time_from: str = "") -> Json:
    p = panel("table", title, targets, description)
    p["fieldConfig"]["defaults"]["custom"] = {"align": "auto", "cellOptions": {"type": "auto"},
                                              "filterable": True}
    p["fieldConfig"]["overrides"] = overrides or []
    p["options"] = {"showHeader": True, "cellHeight": "sm",
                    "footer": {"show": False, "reducer": ["sum"], "fields": ""}}
    if sort_by:
        p["options"]["sortBy"] = [{"displayName": sort_by, "desc": True}]
    p["transformations"] = [{"id": "organize", "options": {
        "excludeByName": {h: True for h in hide}, "renameByName": rename or {},
        "indexByName": {}}}]
    if time_from:
        p["timeFrom"] = time_from
    return p


def bargauge(title: str, targets: list[Json], unit: str, steps: Json,
             description: str = "", maximum: float | None = None) -> Json:
    p = panel("bargauge", title, targets, description, unit)
    defaults = p["fieldConfig"]["defaults"]
    defaults["thresholds"] = steps
    defaults["color"] = {"mode": "thresholds"}
    defaults["min"] = 0
    if maximum is not None:
        defaults["max"] = maximum
    p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "orientation": "horizontal", "displayMode": "gradient",
                    "showUnfilled": True, "valueMode": "color", "namePlacement": "auto"}
    return p


def by_name(pattern: str, *props: tuple[str, Any]) -> Json:
    return {"matcher": {"id": "byRegexp", "options": pattern},
            "properties": [{"id": k, "value": v} for k, v in props]}


def cell_color(pattern: str, mappings: list[Json]) -> Json:
    return by_name(pattern, ("mappings", mappings),
                   ("custom.cellOptions", {"type": "color-background"}))


def dashed(pattern: str, color: str = "") -> Json:
    props: list[tuple[str, Any]] = [
        ("custom.lineStyle", {"fill": "dash", "dash": [10, 10]}),
        ("custom.lineWidth", 2), ("custom.fillOpacity", 0)]
    if color:
        props.append(("color", {"mode": "fixed", "fixedColor": color}))
    return by_name(pattern, *props)


def negative_y(pattern: str) -> Json:
    return by_name(pattern, ("custom.transform", "negative-Y"))


def tag_var(name: str, query: str, label: str = "", multi: bool = True) -> Json:
    return {
        "name": name, "label": label or name, "type": "query", "datasource": DS,
        "query": query, "definition": query, "refresh": 1, "regex": "", "sort": 1,
        "multi": multi, "includeAll": True, "allValue": None,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [], "hide": 0, "skipUrlSync": False,
    }


def custom_var(name: str, values: list[str], label: str = "") -> Json:
    return {
        "name": name, "label": label or name, "type": "custom", "query": ",".join(values),
        "multi": True, "includeAll": True, "allValue": None,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [{"selected": False, "text": v, "value": v} for v in values],
        "hide": 0, "skipUrlSync": False,
    }


HOST_VAR = tag_var("host", 'SHOW TAG VALUES WITH KEY = "host"', "Host")
CARRIER_VAR = tag_var("carrier", f'SHOW TAG VALUES WITH KEY = "carrier" WHERE {HOST}',
                      "Carrier")


def annotation(name: str, query: str, color: str, text: str, tags: str,
               enable: bool = True) -> Json:
    """InfluxQL annotation: the query target Grafana 10 reads, and the same query in the
    legacy top-level fields that Grafana 9 reads."""
    columns = {"textColumn": text, "tagsColumn": tags, "titleColumn": "", "timeEndColumn": ""}
    return {"name": name, "datasource": DS, "enable": enable, "hide": False,
            "iconColor": color, "query": query, **columns,
            "target": {"refId": "Anno", "query": query, "rawQuery": True,
                       "fromAnnotations": True, "queryType": "tags", "limit": 0,
                       "matchAny": False, "tags": [], "type": "tags", **columns}}


LINK_EVENTS = annotation(
    "Link events",
    'SELECT "detail", "state", "carrier", "interface" FROM "link_event" '
    f"WHERE {HC} AND $timeFilter",
    "orange", "detail", "carrier,interface,state")

BGP_EVENTS = annotation(
    "BGP events",
    'SELECT "detail", "kind", "carrier", "prefix", "origin_as" FROM "bgp_event" '
    f"WHERE {HC} AND $timeFilter",
    "red", "detail", "carrier,kind,prefix")

ALERTS = annotation(
    "Alerts",
    'SELECT "summary", "state", "alertname", "severity", "carrier" FROM "alert" '
    f"WHERE {HOST} AND $timeFilter",
    "purple", "summary", "alertname,severity,state,carrier")


class Board:
    """A dashboard: panels placed left to right in rows of 24 columns, ids in order."""

    def __init__(self, uid: str, title: str, description: str, tags: list[str],
                 variables: list[Json], annotations: list[Json]) -> None:
        self.uid, self.title, self.description = uid, title, description
        self.tags, self.variables, self.annotations = tags, variables, annotations
        self.panels: list[Json] = []
        self.x = self.y = self.row_h = 0

    def row(self, title: str, repeat: str = "") -> None:
        self._newline()
        p: Json = {"type": "row", "title": title, "collapsed": False, "panels": [],
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}}
        if repeat:
            p["repeat"] = repeat
        self._add(p)
        self.y += 1

    def add(self, p: Json, w: int, h: int) -> None:
        if self.x + w > 24:
            self._newline()
        p["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        self._add(p)

    def _newline(self) -> None:
        self.y += self.row_h
        self.x = self.row_h = 0

    def _add(self, p: Json) -> None:
        p["id"] = len(self.panels) + 1
        self.panels.append(p)

    def json(self) -> Json:
        return {
            "uid": self.uid, "title": self.title, "description": self.description,
            "tags": ["egress-agent", *self.tags], "timezone": "", "editable": True,
            "graphTooltip": 1, "schemaVersion": SCHEMA_VERSION, "version": 1,
            "refresh": "30s", "time": {"from": "now-6h", "to": "now"},
            "timepicker": {"refresh_intervals": ["10s", "30s", "1m", "5m", "15m"]},
            "fiscalYearStartMonth": 0, "liveNow": False, "weekStart": "",
            "links": [{"title": "egress-agent", "type": "dashboards", "tags": ["egress-agent"],
                       "asDropdown": True, "includeVars": True, "keepTime": True}],
            "annotations": {"list": [
                {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                 "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                 "name": "Annotations & Alerts", "type": "dashboard"},
                *self.annotations]},
            "templating": {"list": self.variables},
            "panels": self.panels,
        }


# ---------------------------------------------------------------- 1. overview


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


# ---------------------------------------------------------------- 2. BGP

EVENT_KINDS = ["origin_mismatch", "more_specific", "own_prefix_missing", "path_change",
               "session_down", "session_up"]
EVENT_KINDS += ["rpki_own_invalid", "rpki_own_not_found", "rpki_roa_expiring", "rpki_stale",
                "rpki_own_valid"]  # [bgp.rpki]
ALARM_KINDS = "origin_mismatch|more_specific|own_prefix_missing"


def bgp() -> Board:
    prefix_var = tag_var("prefix", 'SHOW TAG VALUES FROM "bgp_prefix" WITH KEY = "prefix" '
                         f"WHERE {HOST}", "Own prefix")
    kind_var = custom_var("kind", EVENT_KINDS + RIS_EVENT_KINDS, "Event kind")
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

RIS_EVENT_KINDS = ["ris_hijack", "ris_hijack_end", "ris_unexpected_upstream",
                   "ris_unexpected_upstream_end", "ris_visibility_lost",
                   "ris_visibility_restored", "ris_feed_silent", "ris_feed_restored"]
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


# ---------------------------------------------------------------- 3. access quality


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


# ---------------------------------------------------------------- 4. host and agent


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


BOARDS = {"egress-overview.json": overview, "egress-bgp.json": bgp,
          "egress-quality.json": quality, "egress-host.json": host}


def render() -> dict[str, str]:
    return {name: json.dumps(make().json(), indent=2, ensure_ascii=False) + "\n"
            for name, make in BOARDS.items()}


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(OUT / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
