#!/usr/bin/env python3
"""Writes the Grafana dashboards in config/grafana/dashboards/ (Grafana 9/10 JSON).

The JSON files are what Grafana loads; the `dashgen` package beside this script is how
they are made (one module per dashboard, the panel kinds and query parts in their own), so
that ids, layout, datasource references and the InfluxQL filters stay consistent, and every
name a query uses is one the measurement schema (agent/schema.py) declares. Edit there, run
`python config/grafana/generate.py`, commit both. `tests/test_grafana.py` checks that the
committed JSON is what this script writes, and checks every query against the schema (and,
where InfluxDB 1.6.7 is installed, runs every query against it).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
for path in (HERE, HERE.parents[1]):  # dashgen, and the repository's agent/ collectors/
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from dashgen import render  # noqa: E402


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(OUT / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
