"""Panel kinds (time series, stat, state timeline, table, bar gauge) and field overrides."""

from __future__ import annotations

from typing import Any

from dashgen.parts import DS, GREEN, GREY, Json, thresholds


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

