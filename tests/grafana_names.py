"""The Grafana generator's names module (config/grafana/dashgen/names.py), importable
from the tests: the generator's package lives beside its script, not in the product."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

_GRAFANA = Path(__file__).resolve().parents[1] / "config" / "grafana"
if str(_GRAFANA) not in sys.path:
    sys.path.insert(0, str(_GRAFANA))

names = importlib.import_module("dashgen.names")
