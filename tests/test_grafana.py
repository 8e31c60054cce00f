"""Grafana provisioning and dashboards (config/grafana): checked without a Grafana server.

- every dashboard is valid JSON with a uid, unique panel ids, no overlapping panels, and is
  exactly what config/grafana/generate.py writes;
- the measurement schema (agent/schema.py, from which docs/metrics.md is generated)
  declares exactly the measurements the code emits (`Point("name", ...)` in agent/ and
  collectors/), each field with its type;
- every InfluxQL query names only measurements, fields and tags that the schema declares;
  GROUP BY names only tags;
- every template variable referenced is defined; every datasource reference is the uid of
  the provisioned datasource;
- with InfluxDB 1.6.7 installed, every query (template variables expanded the way Grafana
  does) runs against a database holding one sample of every documented series, with the
  documented field types, and returns rows: a wrong name, a tag in an aggregate, mean() of
  a bool or a string, or an InfluxQL syntax error fails it.

The checks are themselves tested: a misspelt field, an undefined variable, a foreign
datasource uid and a duplicate panel id must each be reported.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.grafana_names import names

REPO = Path(__file__).resolve().parents[1]
GRAFANA = REPO / "config" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCES_YAML = GRAFANA / "provisioning" / "datasources" / "egress.yaml"
PROVIDERS_YAML = GRAFANA / "provisioning" / "dashboards" / "egress.yaml"
ENV_DEFAULTS = GRAFANA / "grafana-server.env"
SOURCES = [REPO / "agent", REPO / "collectors"]
MEASUREMENTS = {"link", "link_event", "host", "disk", "billing", "bgp_session", "bgp_event",
                "bgp_prefix", "probe", "traceroute", "quality", "agent", "agent_output",
                "alert", "bgp_visibility", "bgp_feed", "bgp_rpki"}

Json = dict[str, Any]


# ------------------------------------------------------------------ a small YAML reader


def parse_yaml(text: str) -> Any:
    """The YAML subset the provisioning files use (block mappings and sequences, plain
    scalars, whole-line comments). Anything else raises: the files must stay simple
    (no PyYAML in the project's dependencies)."""
    lines: list[tuple[int, str]] = []
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise ValueError(f"tab indentation: {raw!r}")
        lines.append((len(raw) - len(raw.lstrip(" ")), stripped))
    value, end = _block(lines, 0, lines[0][0] if lines else 0)
    if end != len(lines):
        raise ValueError(f"unparsed line: {lines[end][1]!r}")
    return value


def _scalar(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text.startswith(("{", "[", "|", ">", "&", "*", "!")):
        raise ValueError(f"unsupported YAML value: {text!r}")
    return text


def _block(lines: list[tuple[int, str]], i: int, indent: int) -> tuple[Any, int]:
    if lines[i][1].startswith("- "):
        items: list[Any] = []
        while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
            # "- key: value" opens a mapping whose keys sit at indent + 2
            inner = [(indent + 2, lines[i][1][2:])]
            j = i + 1
            while j < len(lines) and lines[j][0] > indent:
                inner.append(lines[j])
                j += 1
            value, used = _block(inner, 0, indent + 2)
            if used != len(inner):
                raise ValueError(f"bad list item near {lines[i][1]!r}")
            items.append(value)
            i = j
        return items, i
    mapping: dict[str, Any] = {}
    while i < len(lines) and lines[i][0] == indent:
        key, sep, rest = lines[i][1].partition(":")
        if not sep or not re.fullmatch(r"[A-Za-z_][\w.-]*", key):
            raise ValueError(f"not a mapping entry: {lines[i][1]!r}")
        if key in mapping:
            raise ValueError(f"duplicate key {key!r}")
        rest = rest.strip()
        if rest:
            mapping[key] = _scalar(rest)
            i += 1
        elif i + 1 < len(lines) and lines[i + 1][0] > indent:
            mapping[key], i = _block(lines, i + 1, lines[i + 1][0])
        else:
            mapping[key] = None
            i += 1
    if i < len(lines) and lines[i][0] > indent:
        raise ValueError(f"bad indentation: {lines[i][1]!r}")
    return mapping, i


def test_yaml_reader_rejects_what_it_does_not_understand() -> None:
    assert parse_yaml("a:\n  - b: 1\n    c: x\n  - b: 2\nd: true\n") == {
        "a": [{"b": 1, "c": "x"}, {"b": 2}], "d": True}
    for bad in ("a: [1, 2]\n", "a: 1\na: 2\n", "a:\n  b: 1\n    c: 2\n", "just text\n"):
        with pytest.raises(ValueError):
            parse_yaml(bad)


# ------------------------------------------------------------------ the data model

Measurement = names.Names
Schema = dict[str, Measurement]


def documented_schema() -> Schema:
    """The data model as the declarations (agent/schema.py) give it; docs/metrics.md is
    generated from them (tests/test_schema.py checks it is not stale)."""
    return names.declared()


def emitted_measurements() -> set[str]:
    """Measurement names the code writes: every `Point("name", ...)` in agent/ and
    collectors/ (a Point is always built with a literal name there)."""
    names: set[str] = set()
    for root in SOURCES:
        for path in root.rglob("*.py"):
            names |= set(re.findall(r'\bPoint\(\s*"(\w+)"', path.read_text()))
    return names


def test_the_schema_declares_exactly_the_measurements_the_code_emits() -> None:
    assert emitted_measurements() == MEASUREMENTS
    schema = documented_schema()
    assert set(schema) == MEASUREMENTS
    assert schema["quality"].fields.keys() == {"status", "score", "best"}
    assert schema["link_event"].tags == {"host", "interface", "carrier", "state"}
    assert schema["bgp_session"].tags == {"host", "carrier", "peer", "peer_as"}
    assert schema["probe"].tags == {"host", "carrier", "target", "method"}
    assert "rx_bps" in schema["link"].fields and "rx_bps" not in schema["billing"].fields
    for name, m in schema.items():
        assert m.fields, f"{name}: no fields declared"
        for f, typ in m.fields.items():
            _field_type(f, typ)  # raises for a field without a known type


# ------------------------------------------------------------------ InfluxQL names

# check_query lives with the generator (config/grafana/dashgen/names.py), which runs it on
# every query it builds; here it runs on the committed JSON, and is itself tested below.
check_query = names.check_query
_VAR = names._VAR


# ------------------------------------------------------------------ dashboards


def load(path: Path) -> Json:
    return json.loads(path.read_text())


def all_panels(dashboard: Json) -> Iterator[Json]:
    for p in dashboard.get("panels", []):
        yield p
        yield from p.get("panels", [])


def queries(dashboard: Json) -> Iterator[tuple[str, str]]:
    """(where, InfluxQL) of every panel target, annotation and query variable."""
    for p in all_panels(dashboard):
        for t in p.get("targets", []):
            yield f"panel {p.get('title')!r} {t.get('refId')}", t.get("query", "")
    for a in dashboard.get("annotations", {}).get("list", []):
        if a.get("builtIn"):
            continue
        texts = {a.get("query"), a.get("target", {}).get("query")} - {None}
        assert len(texts) == 1, f"annotation {a.get('name')!r}: differing queries {texts}"
        yield f"annotation {a.get('name')!r}", texts.pop()
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            query = v.get("query")
            yield f"variable {v.get('name')}", query if isinstance(query, str) else \
                query.get("query", "")


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


_BUILTIN_VARS = {"timeFilter", "col", "m", "measurement", "interval", "interval_ms"}


def undefined_variables(dashboard: Json) -> set[str]:
    defined = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
    used = set()
    for node in walk({k: v for k, v in dashboard.items() if k != "templating"}
                     | {"templating": [v.get("query") for v in
                                       dashboard.get("templating", {}).get("list", [])]}):
        if isinstance(node, str):
            for groups in _VAR.findall(node):
                name = next(g for g in groups if g)
                if not (name.startswith(("__", "tag_")) or name in _BUILTIN_VARS):
                    used.add(name)
    return used - defined


def datasource_problems(dashboard: Json, uid: str) -> list[str]:
    problems = []
    for node in walk(dashboard):
        if isinstance(node, dict) and "datasource" in node:
            ds = node["datasource"]
            if isinstance(ds, dict) and ds.get("type") == "grafana":
                continue
            if not isinstance(ds, dict) or ds.get("uid") != uid or ds.get("type") != "influxdb":
                problems.append(f"datasource {ds!r} is not {{influxdb, {uid}}}")
    for p in all_panels(dashboard):
        if p.get("type") != "row" and "datasource" not in p:
            problems.append(f"panel {p.get('title')!r} has no datasource")
        for t in p.get("targets", []):
            if "datasource" not in t:
                problems.append(f"target of {p.get('title')!r} has no datasource")
    return problems


def structure_problems(dashboard: Json) -> list[str]:
    problems = []
    if not dashboard.get("uid") or not re.fullmatch(r"[\w-]{1,40}", dashboard["uid"]):
        problems.append(f"bad uid {dashboard.get('uid')!r}")
    ids = [p.get("id") for p in all_panels(dashboard)]
    if None in ids or len(ids) != len(set(ids)):
        problems.append(f"panel ids missing or repeated: {ids}")
    cells: dict[tuple[int, int], str] = {}
    for p in all_panels(dashboard):
        g = p.get("gridPos", {})
        if not {"x", "y", "w", "h"} <= g.keys() or g["x"] + g["w"] > 24:
            problems.append(f"panel {p.get('title')!r}: bad gridPos {g}")
            continue
        for x, y in itertools.product(range(g["x"], g["x"] + g["w"]),
                                      range(g["y"], g["y"] + g["h"])):
            if (x, y) in cells:
                problems.append(f"panels {cells[(x, y)]!r} and {p.get('title')!r} overlap")
                break
            cells[(x, y)] = p.get("title", "")
    return problems


_PANEL_TYPES = {"row", "timeseries", "stat", "state-timeline", "table", "bargauge", "gauge",
                "barchart", "text", "status-history", "piechart", "heatmap"}


def target_problems(dashboard: Json) -> list[str]:
    """Per panel: a known type, unique refIds, and `$tag_X` aliases only for tags X that
    the query groups by (else Grafana prints an empty label)."""
    problems = []
    for p in all_panels(dashboard):
        title = p.get("title")
        if p.get("type") not in _PANEL_TYPES:
            problems.append(f"panel {title!r}: unknown type {p.get('type')!r}")
        refs = [t.get("refId") for t in p.get("targets", [])]
        if None in refs or len(refs) != len(set(refs)):
            problems.append(f"panel {title!r}: refIds missing or repeated {refs}")
        for t in p.get("targets", []):
            group = re.search(r"\bGROUP\s+BY\s+(.*?)(\bfill\s*\(|\bORDER\b|\bLIMIT\b|$)",
                              t.get("query", ""), re.I | re.S)
            grouped = set(re.findall(r'"(\w+)"', group.group(1))) if group else set()
            for tag in re.findall(r"\$tag_(\w+)", t.get("alias", "")):
                if tag not in grouped:
                    problems.append(f"panel {title!r} {t.get('refId')}: alias $tag_{tag} "
                                    "but the query does not GROUP BY it")
    return problems


def provisioned_uid() -> str:
    config = parse_yaml(DATASOURCES_YAML.read_text())
    (ds,) = config["datasources"]
    return str(ds["uid"])


@pytest.fixture(scope="module")
def dashboards() -> dict[str, Json]:
    assert len(DASHBOARDS) >= 4, DASHBOARDS
    return {path.name: load(path) for path in DASHBOARDS}


def test_dashboards_are_valid_with_uid_and_unique_panel_ids(
        dashboards: dict[str, Json]) -> None:
    uids = [d["uid"] for d in dashboards.values()]
    assert len(uids) == len(set(uids)), uids
    for name, d in dashboards.items():
        assert structure_problems(d) == [], name
        assert d.get("schemaVersion", 0) >= 36, name  # Grafana 9+
        assert d.get("title"), name
        assert any(p["type"] != "row" for p in all_panels(d)), name


def test_dashboards_are_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location("grafana_generate", GRAFANA / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered = module.render()
    assert sorted(rendered) == [p.name for p in DASHBOARDS]
    for name, text in rendered.items():
        assert (GRAFANA / "dashboards" / name).read_text() == text, (
            f"{name} differs from generate.py's output: run python config/grafana/generate.py")


def test_every_query_names_existing_measurements_fields_and_tags(
        dashboards: dict[str, Json]) -> None:
    schema = documented_schema()
    problems = []
    for name, d in dashboards.items():
        for where, query in queries(d):
            assert query, f"{name}: {where} has no query"
            problems += [f"{name}: {where}: {p}" for p in check_query(query, schema)]
    assert problems == []


def test_panels_have_known_types_unique_refids_and_grouped_alias_tags(
        dashboards: dict[str, Json]) -> None:
    for name, d in dashboards.items():
        assert target_problems(d) == [], name


def value_type_problems(dashboard: Json, schema: Schema) -> list[str]:
    """Grafana shows a bool or string value only where the panel can: a stat reduces only
    numeric fields unless told otherwise ("fields": "/.*/"), a time series plots numbers."""
    problems = []
    for p in all_panels(dashboard):
        for t in p.get("targets", []):
            query = t.get("query", "")
            source = re.search(r'\bFROM\s+"(\w+)"', query)
            if not source or source.group(1) not in schema:
                continue
            m = schema[source.group(1)]
            # values that reach the panel: last("x"), or a plain "x" not inside count()
            shown = re.findall(r'\b(?:last|first)\(\s*"(\w+)"\s*\)', query)
            head = query[: source.start()]
            head = re.sub(r'\w+\((?:[^()]|\([^()]*\))*\)', "", head)
            shown += [f for f in re.findall(r'"(\w+)"', head) if f in m.fields]
            odd = [f for f in shown if f in m.fields and
                   _field_type(f, m.fields[f]) in ("bool", "string")]
            if not odd:
                continue
            if p["type"] == "timeseries":
                problems.append(f"time series {p['title']!r} plots {odd}")
            if p["type"] in ("stat", "bargauge", "gauge") and not p["options"].get(
                    "reduceOptions", {}).get("fields"):
                problems.append(f"{p['type']} {p['title']!r} would hide {odd}: set "
                                'reduceOptions.fields to "/.*/"')
    return problems


def test_bool_and_string_values_go_to_panels_that_show_them(
        dashboards: dict[str, Json]) -> None:
    schema = documented_schema()
    for name, d in dashboards.items():
        assert value_type_problems(d, schema) == [], name
    d = _overview()
    link = next(p for p in all_panels(d) if p["title"] == "Link")
    link["options"]["reduceOptions"]["fields"] = ""
    assert value_type_problems(d, schema) != []


def test_every_measurement_is_on_some_dashboard(dashboards: dict[str, Json]) -> None:
    schema = documented_schema()
    used = {m for d in dashboards.values() for _, query in queries(d)
            for m in re.findall(r'\bFROM\s+"(\w+)"', query)}
    assert set(schema) - used == set()


def test_every_template_variable_is_defined(dashboards: dict[str, Json]) -> None:
    for name, d in dashboards.items():
        assert undefined_variables(d) == set(), name
        names = {v["name"] for v in d["templating"]["list"]}
        assert {"host"} <= names, name


def test_overview_quality_and_bgp_filter_by_host_and_carrier(
        dashboards: dict[str, Json]) -> None:
    for name, d in dashboards.items():
        names = {v["name"] for v in d["templating"]["list"]}
        if name != "egress-host.json":
            assert {"host", "carrier"} <= names, name
        for v in d["templating"]["list"]:
            if v["name"] in ("host", "carrier"):
                assert v["query"].startswith("SHOW TAG VALUES"), (name, v["query"])


def test_datasource_references_resolve_to_the_provisioned_datasource(
        dashboards: dict[str, Json]) -> None:
    uid = provisioned_uid()
    for name, d in dashboards.items():
        assert datasource_problems(d, uid) == [], name


def test_provisioning_files() -> None:
    config = parse_yaml(DATASOURCES_YAML.read_text())
    assert config["apiVersion"] == 1
    (ds,) = config["datasources"]
    assert ds["type"] == "influxdb" and ds["access"] == "proxy"
    assert ds["jsonData"]["dbName"] == "egress"
    assert ds["jsonData"].get("version", "InfluxQL") == "InfluxQL"
    url_var = re.fullmatch(r"\$\{?(\w+)\}?", ds["url"])
    assert url_var, f"url should come from an environment variable: {ds['url']!r}"
    defaults = dict(line.split("=", 1) for line in ENV_DEFAULTS.read_text().splitlines()
                    if line and not line.startswith("#"))
    assert defaults[url_var.group(1)] == "http://127.0.0.1:8086"
    text = DATASOURCES_YAML.read_text()
    assert re.search(r"^#\s+version: Flux$", text, re.M), "commented Flux variant missing"

    providers = parse_yaml(PROVIDERS_YAML.read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")


# ------------------------------------------------------------------ the checks can fail


def _overview() -> Json:
    return load(GRAFANA / "dashboards" / "egress-overview.json")


def test_check_reports_a_misspelt_field_tag_or_measurement() -> None:
    schema = documented_schema()
    good = ('SELECT mean("rx_bps") FROM "link" WHERE "host" =~ /^$host$/ AND $timeFilter '
            'GROUP BY time($__interval), "carrier" fill(null)')
    assert check_query(good, schema) == []
    assert check_query(good.replace('"rx_bps"', '"rx_bpz"'), schema) != []
    assert check_query(good.replace('"rx_bps"', "rx_bpz"), schema) != []
    assert check_query(good.replace('"carrier" fill', '"carier" fill'), schema) != []
    assert check_query(good.replace('"carrier" fill', '"rx_bps" fill'), schema) != []
    assert check_query(good.replace('"link"', '"links"'), schema) != []
    assert check_query(good.replace('"link"', '"billing"'), schema) != []
    assert check_query('SHOW TAG VALUES WITH KEY = "carier"', schema) != []

    broken = _overview()
    text = json.dumps(broken).replace('\\"rx_bps\\"', '\\"rx_bpz\\"')
    assert text != json.dumps(broken)
    problems = [p for _, q in queries(json.loads(text)) for p in check_query(q, schema)]
    assert any("rx_bpz" in p for p in problems), problems


def test_check_reports_a_dashboard_name_the_schema_does_not_declare(
        dashboards: dict[str, Json]) -> None:
    """The dashboards are checked against the declarations themselves: drop a declared
    field, tag or measurement and the queries that use it are reported."""

    def problems_without(measurement: str, name: str = "") -> list[str]:
        schema = documented_schema()
        if not name:
            del schema[measurement]
        else:
            schema[measurement].fields.pop(name, None)
            schema[measurement].tags.discard(name)
        return [p for d in dashboards.values() for _, q in queries(d)
                for p in check_query(q, schema)]

    assert any("'rx_bps'" in p for p in problems_without("link", "rx_bps"))
    assert any("billing: GROUP BY 'carrier'" in p
               for p in problems_without("billing", "carrier"))
    assert any("unknown measurement 'disk'" in p for p in problems_without("disk"))


def test_check_reports_undefined_variables_foreign_datasources_and_duplicate_ids() -> None:
    d = _overview()
    target = next(p for p in all_panels(d) if p.get("targets"))["targets"][0]
    target["query"] = target["query"].replace("$carrier", "$carier")
    assert undefined_variables(d) == {"carier"}

    d = _overview()
    d["panels"][1]["targets"][0]["datasource"] = {"type": "influxdb", "uid": "other"}
    assert datasource_problems(d, provisioned_uid()) != []

    d = _overview()
    d["panels"][2]["id"] = d["panels"][1]["id"]
    assert structure_problems(d) != []

    d = _overview()
    target = next(p for p in all_panels(d) if "$tag_carrier" in json.dumps(p))["targets"][0]
    target["query"] = target["query"].replace(', "carrier"', "")
    assert any("$tag_carrier" in p for p in target_problems(d))


# ------------------------------------------------------------------ against InfluxDB 1.6.7

_TAG_VALUES: dict[str, list[str]] = {
    "host": ["edge-1"], "carrier": ["telecom", "unicom"], "interface": ["eth1"],
    "target": ["203.0.113.10"], "method": ["icmp", "tcp:443"],
    "kind": ["session_up", "session_down", "own_prefix_missing", "origin_mismatch",
             "more_specific", "path_change"],
    "state": ["up", "down"], "prefix": ["198.51.100.0/24"], "peer": ["203.0.113.1"],
    "peer_as": ["4134"], "mount": ["/"], "output": ["influxdb"],
    "via": ["any", "telecom", "other"], "feed": ["ris_live"],
}
_VARIABLES = {"host": "edge-1", "carrier": "(telecom|unicom)", "target": "203.0.113.10",
              "method": "(icmp|tcp:443)", "prefix": "198.51.100.0/24", "mount": "/",
              "kind": "(" + "|".join(_TAG_VALUES["kind"]) + ")"}


def _field_type(name: str, typ: str) -> str:
    """int, float, bool or string: the type the schema gives the field."""
    for prefix, kind in (("int", "int"), ("uint", "int"), ("float", "float"),
                         ("bool", "bool"), ("str", "string")):
        if typ.startswith(prefix):
            return kind
    raise AssertionError(f"the schema gives field {name!r} no known type: {typ!r}")


def _escape(value: str, is_tag: bool) -> str:
    return re.sub(r"([ ,=])", r"\\\1", value) if is_tag else value


def sample_lines(schema: Schema, now_ns: int) -> str:
    """A few points of every series the schema describes, with its field types."""
    lines = []
    for name, m in sorted(schema.items()):
        tags = sorted(m.tags)
        for combo in itertools.product(*(_TAG_VALUES.get(t, ["x"]) for t in tags)):
            tagset = ",".join(f"{t}={_escape(v, True)}" for t, v in zip(tags, combo,
                                                                        strict=True))
            for step in range(5):
                t_ns = now_ns - (40 - 10 * step) * 60 * 10**9 + (50 * 10**9 if step == 4
                                                                   else 0)
                fields = []
                for f, typ in sorted(m.fields.items()):
                    kind = _field_type(f, typ)
                    if kind == "bool":
                        value = "true"
                    elif kind == "string":
                        text = {"status": "ok", "state": "up"}.get(
                            f, f"x{step % 2} y")
                        value = json.dumps(text)
                    elif kind == "int":
                        value = f"{100 * (step + 1)}i"
                    else:
                        value = repr(0.5 * (step + 1))
                    fields.append(f"{f}={value}")
                if fields:
                    lines.append(f"{name},{tagset} {','.join(fields)} {t_ns}")
    return "\n".join(lines) + "\n"


def expand(query: str) -> str:
    """Template variables as Grafana's InfluxDB datasource renders them for a 1 h range:
    multi-value regex values escaped, `/` escaped inside /.../."""

    def value(name: str, in_regex: bool) -> str:
        raw = _VARIABLES[name]
        if in_regex and not raw.startswith("("):
            raw = re.escape(raw)
        return raw.replace("/", r"\/") if in_regex else raw

    query = query.replace("$timeFilter", "time > now() - 1h")
    query = query.replace("$__interval", "1m")
    query = re.sub(r"/\^\$(\w+)\$/", lambda m: "/^" + value(m.group(1), True) + "$/", query)
    return _VAR.sub(lambda m: value(next(g for g in m.groups() if g), False), query)


@pytest.mark.servers
def test_every_query_runs_and_returns_rows_on_influxdb(
        dashboards: dict[str, Json], influxdb_v1: Any) -> None:
    schema = documented_schema()
    db = influxdb_v1.db
    influxdb_v1.write(db, sample_lines(schema, time.time_ns()))
    failures = []
    for name, d in dashboards.items():
        for where, query in queries(d):
            sql = expand(query)
            try:
                rows = influxdb_v1.query(sql, db=db)
            except Exception as exc:
                failures.append(f"{name}: {where}: {exc}")
                continue
            values = [v for row in rows for k, v in row.items()
                      if k not in ("time", "_measurement", "_tags") and v is not None]
            if not values:
                failures.append(f"{name}: {where}: no values for {sql}")
    assert failures == []


@pytest.mark.servers
def test_influxdb_check_catches_a_wrong_type_and_a_wrong_name(influxdb_v1: Any) -> None:
    schema = documented_schema()
    db = influxdb_v1.db
    influxdb_v1.write(db, sample_lines(schema, time.time_ns()))
    base = ('SELECT last("oper_up") FROM "link" WHERE "host" =~ /^$host$/ AND $timeFilter '
            'GROUP BY time($__interval), "carrier" fill(previous)')
    assert influxdb_v1.query(expand(base), db=db)
    with pytest.raises(Exception, match="InfluxQL error"):
        influxdb_v1.query(expand(base.replace("last(", "mean(")), db=db)  # mean of a bool
    assert influxdb_v1.query(expand(base.replace("oper_up", "oper_upp")), db=db) == []


def test_the_generator_refuses_a_name_the_schema_does_not_declare() -> None:
    parts = importlib.import_module("dashgen.parts")
    assert parts.q('SELECT last("rx_bps") FROM "link" WHERE $timeFilter')["query"]
    for bad in ('SELECT last("rx_bpz") FROM "link" WHERE $timeFilter',
                'SELECT last("rx_bps") FROM "links" WHERE $timeFilter',
                'SELECT last("rx_bps") FROM "billing" WHERE $timeFilter'):
        with pytest.raises(ValueError, match=r"rx_bp|links"):
            parts.q(bad)
    with pytest.raises(ValueError, match="undeclared bgp_event kinds"):
        names.kinds("session_up", "session_upp")
