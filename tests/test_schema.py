"""The measurement schema (agent/schema.py and the declarations beside each producer).

- docs/metrics.md is exactly what scripts/gen-metrics-doc writes (not stale);
- every declaration module (a metrics.py under agent/ or collectors/) registers its
  section, and each collector package registers its own when imported (a fresh process);
- the BGP event kinds the producers define are the ones declared, and nothing else;
- `check_point` reports an unknown measurement, tag and field, a wrong type, a missing tag
  and a value outside a closed set, and accepts what the declarations allow.

Whether the points the agent really emits follow the schema is checked across the whole
suite by the pipeline's check (tests/conftest.py, `EGRESS_AGENT_SCHEMA_CHECK`).
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent import metrics_doc, schema
from agent.schema import Field, Measurement, Registry, Section, Tag, check_point, registry
from collectors.bgp.metrics import EVENT_KINDS

REPO = Path(__file__).resolve().parents[1]


def test_metrics_doc_is_generated_from_the_schema() -> None:
    assert metrics_doc.DOC_PATH.read_text() == metrics_doc.markdown(), (
        "docs/metrics.md is stale: run .venv/bin/python scripts/gen-metrics-doc")


def test_the_doc_script_checks_and_writes(tmp_path: Path) -> None:
    script = REPO / "scripts" / "gen-metrics-doc"
    ok = subprocess.run([sys.executable, str(script), "--check"], capture_output=True,
                        text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    stale = tmp_path / "metrics.md"
    stale.write_text("old\n")
    assert metrics_doc.write_or_check(metrics_doc.markdown(), True, stale) == 1
    assert metrics_doc.write_or_check(metrics_doc.markdown(), False, stale) == 0
    assert stale.read_text() == metrics_doc.DOC_PATH.read_text()


def test_every_declaration_module_registers_its_section() -> None:
    modules = schema.declaration_modules(REPO, ("agent", "collectors"))
    assert len(modules) == 8
    titles = {importlib.import_module(m).SECTION.title for m in modules}
    assert titles == {s.title for s in registry().sections}


def test_a_collector_package_declares_its_measurements_when_imported() -> None:
    """The core imports no collector: a collector's package registers its declarations
    itself, so what the Prometheus output sees is the agent's own and the loaded ones'.
    Importing any collector package imports the registry (collectors/__init__.py), which
    imports every group's config module and so its package; RIS Live's package is imported
    only when `[bgp.ris_live]` is configured."""
    code = ("import collectors.links.collector, collectors.bgp\n"
            "from agent.schema import registry\n"
            "print(' '.join(m.name for m in registry()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["agent", "agent_output", "alert", "link", "link_event", "billing",
                   "bgp_session", "bgp_event", "bgp_prefix", "bgp_rpki",
                   "probe", "traceroute", "quality"]  # not RIS Live


def test_every_measurement_is_in_the_doc_with_each_field() -> None:
    text = metrics_doc.DOC_PATH.read_text()
    for m in registry():
        assert f"### `{m.name}` — " in text
        for f in m.fields:
            assert re.search(rf"^\| (\w+, )*{f.name}(, \w+)* \| {f.type_name} \|", text, re.M), (
                f"{m.name}.{f.name}")


def test_bgp_event_kinds_are_defined_once_and_each_has_a_producer() -> None:
    """No producer defines a kind constant of its own: each uses the `EVENT_*` name of
    collectors/bgp/metrics.py, and each of those names is used by a producer."""
    from collectors.bgp import metrics

    names = {n: getattr(metrics, n) for n in dir(metrics) if n.startswith("EVENT_")}
    del names["EVENT_KINDS"]
    assert set(names.values()) == set(EVENT_KINDS)
    used: set[str] = set()
    for path in (REPO / "collectors" / "bgp").rglob("*.py"):
        if path.name != "metrics.py":
            text = path.read_text()
            assert not re.findall(r"^EVENT_\w+ = ", text, re.M), path
            used |= set(re.findall(r"\bEVENT_\w+", text))
    assert set(names) <= used
    assert registry()["bgp_event"].tag("kind").allowed == set(EVENT_KINDS)


def test_counters_are_ints_and_declared_units_are_consistent() -> None:
    for m in registry():
        for f in m.fields:
            if f.kind == "counter":
                assert f.type is int, f"{m.name}.{f.name}"
            if f.name.endswith("_bytes"):
                assert f.unit == "bytes", f"{m.name}.{f.name}"
            if f.name.endswith("_ms"):
                assert f.unit == "ms", f"{m.name}.{f.name}"


_TOY = Registry.of([Section("toy", 1, (Measurement(
    "toy", "now",
    tags=(Tag("carrier", "c"), Tag("opt", "o", optional=True),
          Tag("state", "s", values=(("up", ""), ("down", "")))),
    fields=(Field("n", int, "n"), Field("x", float, "x"), Field("b", bool, "b"),
            Field("s", str, "s")),
),))])


@pytest.mark.parametrize(("measurement", "tags", "fields", "problem"), [
    ("toy", {"host": "h", "carrier": "a", "state": "up"}, {"n": 1, "x": 1.0, "b": True,
                                                          "s": ""}, None),
    ("toy", {"host": "h", "carrier": "a", "state": "up", "opt": "y"}, {"n": 1}, None),
    ("toys", {"host": "h"}, {"n": 1}, "unknown measurement 'toys'"),
    ("toy", {"host": "h", "carrier": "a", "state": "up"}, {"m": 1}, "unknown field 'm'"),
    ("toy", {"host": "h", "carrier": "a", "state": "up", "t": "1"}, {"n": 1},
     "unknown tag 't'"),
    ("toy", {"host": "h", "state": "up"}, {"n": 1}, "tag 'carrier' missing"),
    ("toy", {"host": "h", "carrier": "", "state": "up"}, {"n": 1}, "tag 'carrier' missing"),
    ("toy", {"carrier": "a", "state": "up"}, {"n": 1}, "tag 'host' missing"),
    ("toy", {"host": "h", "carrier": "a", "state": "sideways"}, {"n": 1},
     "tag state='sideways' is not one of ['down', 'up']"),
    ("toy", {"host": "h", "carrier": "a", "state": "up"}, {"n": 1.0}, "n: float 1.0"),
    ("toy", {"host": "h", "carrier": "a", "state": "up"}, {"x": 1}, "x: int 1"),
    ("toy", {"host": "h", "carrier": "a", "state": "up"}, {"n": True}, "n: bool True"),
    ("toy", {"host": "h", "carrier": "a", "state": "up"}, {"b": 1}, "b: int 1"),
    ("toy", {"host": "h", "carrier": "a", "state": "up"}, {}, "no field"),
])
def test_check_point(measurement: str, tags: dict[str, str], fields: dict[str, object],
                     problem: str | None) -> None:
    problems = check_point(measurement, tags, fields, _TOY)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0], problems


def test_alert_points_may_carry_the_alerts_own_labels() -> None:
    tags = {"host": "h", "alertname": "UplinkDown", "severity": "critical",
            "state": "firing", "carrier": "telecom", "anything": "x"}
    assert check_point("alert", tags, {"firing": True}) == []


def test_a_declaration_says_each_name_once() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        Measurement("m", "", (), (Field("a", int, ""), Field("a", int, "")))
    with pytest.raises(ValueError, match="two sections titled"):
        schema.register(Section("agent (core)", 1, ()))  # another section, a taken title
    assert registry()["agent"].fields
    with pytest.raises(ValueError, match="declared twice"):
        Registry.of([_TOY.sections[0], _TOY.sections[0]])


def test_the_pipeline_check_writes_each_problem_once(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The check the suite turns on in every agent it runs (EGRESS_AGENT_SCHEMA_CHECK)."""
    from agent.pipeline import Pipeline
    from agent.points import Point
    from agent.spool import Spool

    log = tmp_path / "problems.log"
    monkeypatch.setenv(schema.SCHEMA_CHECK_ENV, str(log))
    pipeline = Pipeline(Spool(tmp_path / "spool"), "h1")
    good = {"interface": "eth0", "carrier": "telecom", "state": "up"}
    for _ in range(3):
        pipeline.emit([Point("link_event", dict(good), {"up": True, "detail": "up"}),
                       Point("link_event", dict(good), {"up": 1})])
        pipeline._stamp_encode_append(pipeline._take_parts())
    assert log.read_text().splitlines() == [f"{os.getpid()} link_event.up: int 1, declared bool"]
    monkeypatch.delenv(schema.SCHEMA_CHECK_ENV)
    assert Pipeline(Spool(tmp_path / "spool2"), "h1")._schema_check is None


@pytest.mark.schema_free  # makes a wrong point on purpose
def test_a_point_built_by_product_code_is_checked_when_built() -> None:
    """The conftest check of points built under agent/ and collectors/ (unit tests that call
    a producer directly): a traceroute point with a string hop count is reported."""
    from collectors.probes.collector import traceroute_point
    from tests.conftest import _schema_problems_since

    _, start = _schema_problems_since(0)
    result = type("R", (), {"hop_count": "3", "reached": True, "path": "x", "annotated": False,
                            "carrier": "telecom", "target": "192.0.2.1"})()
    traceroute_point(result, 1)  # type: ignore[arg-type]
    problems, _ = _schema_problems_since(start)
    assert len(problems) == 1 and "traceroute.hops: str '3', declared int" in problems[0]
