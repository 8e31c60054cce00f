"""The Grafana dashboards of config/grafana/dashboards/, one module per dashboard.

`python config/grafana/generate.py` writes them; tests/test_grafana.py checks that the
committed JSON is what `render()` returns. Every measurement, field and tag name a query
uses is checked against the measurement schema (agent/schema.py) as the query is built
(names.py), and the BGP event kinds come from their declaration (collectors/bgp/metrics.py).

Conventions the test relies on: raw InfluxQL with every identifier double-quoted, one
measurement per query, no subqueries; the datasource is the provisioned uid (parts.DS_UID).
"""

from __future__ import annotations

import json

from dashgen.bgp import bgp
from dashgen.board import Board
from dashgen.host import host
from dashgen.overview import overview
from dashgen.quality import quality

BOARDS = {"egress-overview.json": overview, "egress-bgp.json": bgp,
          "egress-quality.json": quality, "egress-host.json": host}


def render() -> dict[str, str]:
    return {name: json.dumps(make().json(), indent=2, ensure_ascii=False) + "\n"
            for name, make in BOARDS.items()}


__all__ = ["BOARDS", "Board", "render"]
