"""A dashboard: panels placed left to right in rows of 24 columns, and its JSON."""

from __future__ import annotations

from dashgen.parts import Json

SCHEMA_VERSION = 37  # Grafana 9.4+; Grafana 10 migrates it on load


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

