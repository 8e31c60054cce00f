"""Queries, colours, value mappings, template variables and annotations: the small parts
every dashboard is built from. Every query goes through `q()` (or `annotation()`,
`tag_var()`), which checks its names against the measurement schema (names.py)."""

# ruff: noqa: S608  (InfluxQL built from constants, not user input)
from __future__ import annotations

from typing import Any

from dashgen.names import checked

DS_UID = "egress-influxdb"
DS = {"type": "influxdb", "uid": DS_UID}

HOST = '"host" =~ /^$host$/'
CARRIER = '"carrier" =~ /^$carrier$/'
HC = f"{HOST} AND {CARRIER}"
TARGET = '"target" =~ /^$target$/'
EVERY = "GROUP BY time($__interval)"

Json = dict[str, Any]

GREEN, ORANGE, RED, BLUE, GREY = "green", "orange", "red", "blue", "text"

# ---------------------------------------------------------------- building blocks


def q(query: str, ref: str = "A", alias: str = "", fmt: str = "time_series") -> Json:
    target: Json = {"datasource": DS, "refId": ref, "rawQuery": True, "query": checked(query),
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


def tag_var(name: str, query: str, label: str = "", multi: bool = True) -> Json:
    return {
        "name": name, "label": label or name, "type": "query", "datasource": DS,
        "query": checked(query), "definition": query, "refresh": 1, "regex": "", "sort": 1,
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
    checked(query)
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

