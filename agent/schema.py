"""The measurement schema: every measurement the agent writes, declared once, in code.

Each producer declares its measurements next to itself (a `metrics.py` beside the collector,
e.g. collectors/links/metrics.py) as a `Section` of `Measurement`s with their tags and
typed fields. From these declarations come:

- docs/metrics.md (agent/metrics_doc.py renders it, `scripts/gen-metrics-doc` writes it or,
  with `--check`, says whether the committed file is stale; a test runs the comparison);
- the Prometheus output's HELP and TYPE lines (agent/outputs/prometheus.py);
- the names the Grafana generator may use (config/grafana/);
- the check of emitted points against it (`check_point`), which the test suite turns on in
  the pipeline (`EGRESS_AGENT_SCHEMA_CHECK`, agent/pipeline.py) so that every point a test
  makes the agent write is judged: unknown measurement, tag or field, wrong type, missing tag.

A declaration module registers its section when it is imported (`SECTION = register(...)`),
and each collector package imports its own, so the core never imports collectors/: the
registry holds the agent's own measurements and those of every collector loaded. The doc
tool and the tests load every declaration module of the tree (`load_declarations`).

Models: Glances' `fields_description` (a description and unit per field, next to the plugin)
and blackbox_exporter's metrics declared beside the prober that sets them.

Counters are declared `kind="counter"` (cumulative, never decreasing except at a restart or
reset), everything else a gauge. The Prometheus output still exposes counters with TYPE
gauge: a counter's samples must be named `<name>_total` (the text format's client and
OpenMetrics both enforce it), which would rename every counter series that the alert rules,
their promtool tests and users' queries read. `rate()` works on them as they are.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from agent.points import Point

Kind = Literal["counter", "gauge"]
FieldType = type[int] | type[float] | type[bool] | type[str]

log = logging.getLogger(__name__)

_TYPE_NAMES: dict[type, str] = {int: "int", float: "float", bool: "bool", str: "string"}


@dataclass(frozen=True)
class Field:
    """One field: its Python type is the line-protocol type (int → `i`, str → string)."""

    name: str
    type: FieldType
    description: str
    unit: str = ""
    kind: Kind = "gauge"

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES[self.type]

    @property
    def numeric(self) -> bool:
        """What the Prometheus output exposes (bools as 0/1); strings have no sample."""
        return self.type is not str

    @property
    def prometheus_type(self) -> str:
        """Always gauge: see the module docstring (a counter type would rename the series)."""
        return "gauge"


def fields(names: Iterable[str], type_: FieldType, description: str, unit: str = "",
           kind: Kind = "gauge") -> tuple[Field, ...]:
    """Several fields with one meaning (e.g. rx_bytes and tx_bytes); the doc shows one row."""
    return tuple(Field(n, type_, description, unit, kind) for n in names)


@dataclass(frozen=True)
class Tag:
    """A tag. `values`: the closed set of values it can take, each with its meaning (empty
    when the values are open: names, addresses); a point with another value is wrong."""

    name: str
    description: str
    optional: bool = False
    values: tuple[tuple[str, str], ...] = ()
    values_heading: tuple[str, str] = ("value", "meaning")

    @property
    def allowed(self) -> frozenset[str]:
        return frozenset(v for v, _ in self.values)


HOST_TAG = Tag("host", "`agent.hostname`")


@dataclass(frozen=True)
class Measurement:
    """One measurement. `summary`: when it is written (the doc's heading); `description`
    and `notes`: prose before and after its tables. `open_tags`: tags beyond the declared
    ones are allowed (the `alert` point carries the alert's own labels)."""

    name: str
    summary: str
    tags: tuple[Tag, ...]
    fields: tuple[Field, ...]
    description: str = ""
    notes: str = ""
    open_tags: bool = False

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: a field is declared twice")
        if any(t.name == "host" for t in self.tags):
            raise ValueError(f"{self.name}: `host` is on every measurement; leave it out")

    @property
    def all_tags(self) -> tuple[Tag, ...]:
        return (HOST_TAG, *self.tags)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name!r}")

    def tag(self, name: str) -> Tag:
        for t in self.all_tags:
            if t.name == name:
                return t
        raise KeyError(f"{self.name} has no tag {name!r}")


@dataclass(frozen=True)
class Section:
    """The measurements of one producer, as one section of docs/metrics.md; `order`: where
    the section comes in the doc (sections sort by it)."""

    title: str
    order: int
    measurements: tuple[Measurement, ...]
    intro: str = ""
    notes: str = ""


@dataclass(frozen=True)
class Registry:
    sections: tuple[Section, ...]
    measurements: Mapping[str, Measurement] = field(default_factory=dict)

    @classmethod
    def of(cls, sections: Iterable[Section]) -> Registry:
        sections = tuple(sorted(sections, key=lambda s: s.order))
        found: dict[str, Measurement] = {}
        for section in sections:
            for m in section.measurements:
                if m.name in found:
                    raise ValueError(f"measurement {m.name!r} is declared twice")
                found[m.name] = m
        return cls(sections, found)

    def __getitem__(self, name: str) -> Measurement:
        return self.measurements[name]

    def __contains__(self, name: object) -> bool:
        return name in self.measurements

    def __iter__(self) -> Iterator[Measurement]:
        return iter(self.measurements.values())


_SECTIONS: dict[str, Section] = {}
_registry: Registry | None = None
_lock = threading.Lock()


def register(section: Section) -> Section:
    """Called by a declaration module for its section; a module imported twice (under two
    names) registers it once."""
    global _registry
    with _lock:
        known = _SECTIONS.get(section.title)
        if known is not None and known != section:
            raise ValueError(f"two sections titled {section.title!r}")
        _SECTIONS[section.title] = section
        _registry = None
    return section


def registry() -> Registry:
    """The agent's own measurements and those of every collector package imported so far."""
    global _registry
    current = _registry
    if current is None:
        import agent.alerts.metrics
        import agent.metrics  # noqa: F401

        with _lock:
            current = _registry = Registry.of(_SECTIONS.values())
    return current


def declaration_modules(root: Path, packages: Iterable[str]) -> list[str]:
    """Module names of every declaration module (`metrics.py`, `*_metrics.py`) under the
    given top-level packages of `root`."""
    names = []
    for package in packages:
        for path in sorted((root / package).rglob("*metrics.py")):
            if path.name == "metrics.py" or path.name.endswith("_metrics.py"):
                names.append(".".join(path.relative_to(root).with_suffix("").parts))
    return names


def load_declarations(root: Path, packages: Iterable[str]) -> Registry:
    """Import every declaration module of the tree (the doc tool and the tests)."""
    for name in declaration_modules(root, packages):
        importlib.import_module(name)
    return registry()


# ------------------------------------------------------------------ checking points


def check_point(measurement: str, tags: Mapping[str, str], values: Mapping[str, object],
                reg: Registry | None = None) -> list[str]:
    """What is wrong with one point against the schema (empty: nothing). An empty tag
    value counts as absent, as it does in line protocol."""
    reg = reg or registry()
    m = reg.measurements.get(measurement)
    if m is None:
        return [f"unknown measurement {measurement!r}"]
    problems = []
    declared = {t.name: t for t in m.all_tags}
    for name, tag_value in tags.items():
        tag = declared.get(name)
        if tag is None:
            if not m.open_tags:
                problems.append(f"{measurement}: unknown tag {name!r}")
        elif tag.values and tag_value and tag_value not in tag.allowed:
            problems.append(f"{measurement}: tag {name}={tag_value!r} is not one of "
                            f"{sorted(tag.allowed)}")
    for tag in m.all_tags:
        if not tag.optional and not tags.get(tag.name):
            problems.append(f"{measurement}: tag {tag.name!r} missing")
    known = {f.name: f for f in m.fields}
    for name, value in values.items():
        f = known.get(name)
        if f is None:
            problems.append(f"{measurement}: unknown field {name!r}")
        elif type(value) is not f.type:
            problems.append(f"{measurement}.{name}: {type(value).__name__} "
                            f"{value!r}, declared {f.type_name}")
    if not values:
        problems.append(f"{measurement}: no field")
    return problems


SCHEMA_CHECK_ENV = "EGRESS_AGENT_SCHEMA_CHECK"


class PointCheck:
    """Checks every point that enters the core against the schema and appends each problem
    to a file, one line (`PID problem`). The test suite turns it on for every agent it runs,
    in-process or not, by setting `EGRESS_AGENT_SCHEMA_CHECK` to the file
    (tests/conftest.py); without the variable the pipeline never builds one. Each shape of
    point (measurement, tags, field names and types) is judged once."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems = 0
        self._seen: set[tuple[object, ...]] = set()
        self._lock = threading.Lock()

    def __call__(self, points: Iterable[Point]) -> None:
        found: list[str] = []
        for p in points:
            key = (p.measurement, tuple(p.tags.items()),
                   tuple((k, type(v)) for k, v in p.fields.items()))
            if key in self._seen:
                continue
            if len(self._seen) < 100_000:
                self._seen.add(key)
            found += check_point(p.measurement, p.tags, p.fields)
        if not found:
            return
        with self._lock:
            self.problems += len(found)
            with open(self.path, "a", encoding="utf-8") as out:
                out.write("".join(f"{os.getpid()} {problem}\n" for problem in found))
        log.error("schema check: %d problem(s), e.g. %s", len(found), found[0])


def point_check_from_env() -> PointCheck | None:
    path = os.environ.get(SCHEMA_CHECK_ENV)
    return PointCheck(path) if path else None
