"""The Prometheus / vmalert rules file (config/alerts), checked without servers.

- `promtool check rules` accepts both files, and `vmalert -dryRun` (MetricsQL) too;
- `promtool test rules` passes tests/rules/egress-agent-rules.test.yml against the
  VictoriaMetrics-named file, and the same tests with the input series renamed
  (`egress_` prefix) against the Prometheus-exposition file;
- the Prometheus file is what config/alerts/generate.py writes, with the prefix of
  agent/outputs/prometheus.py;
- every rule has a severity, a summary and a description, and a test case where it fires
  and one where it does not;
- every series a rule reads is a numeric field of the schema (agent/schema.py), and every label it
  matches or groups on is a documented tag (or one the rule makes itself).

The lab test (real agent, VictoriaMetrics and vmalert) is tests/test_alert_rules_lab.py.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

from agent.outputs.prometheus import METRIC_PREFIX, metric_name
from tests.grafana_names import names as dashgen

REPO = Path(__file__).resolve().parents[1]
ALERTS = REPO / "config" / "alerts"
RULES = ALERTS / "egress-agent-rules.yml"
PROM_RULES = ALERTS / "egress-agent-rules.prometheus.yml"
UNIT_TESTS = REPO / "tests" / "rules" / "egress-agent-rules.test.yml"

PROMTOOL = shutil.which("promtool")
VMALERT = shutil.which("vmalert")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian: apt-get install prometheus; "
    "scripts/setup installs it)")

# Labels the rules make (label_replace) or that every alert has.
MADE_LABELS = {"direction", "check", "family", "severity"}


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("alerts_generate", ALERTS / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


# ------------------------------------------------------------------ reading the rules


def rules(text: str) -> list[dict[str, str]]:
    """Each alerting rule as {"alert", "expr", "for", "severity", "summary",
    "description"} from the file's text (no YAML library in the test dependencies; the
    file keeps one layout, checked here: `- alert:` then expr, for, labels, annotations)."""
    found = []
    for chunk in re.split(r"\n\s*- alert: ", text)[1:]:
        name, _, body = chunk.partition("\n")
        rule = {"alert": name.strip()}
        expr = re.search(r"\n\s*expr: (\|\n(?P<block>(?:\s{10,}.*\n|\s*\n)+)|(?P<line>.*))",
                         "\n" + body)
        assert expr, f"{name}: no expr"
        rule["expr"] = textwrap.dedent(expr.group("block") or expr.group("line") or "").strip()
        if m := re.search(r"\n\s*for: (\S+)", "\n" + body):
            rule["for"] = m.group(1)
        if m := re.search(r"\n\s*severity: (\S+)", "\n" + body):
            rule["severity"] = m.group(1)
        for key in ("summary", "description"):
            if m := re.search(rf"\n\s*{key}: (>-\n)?(.*)", "\n" + body):
                rule[key] = m.group(2).strip()
        found.append(rule)
    return found


def test_rule_reader_reads_every_rule() -> None:
    text = RULES.read_text()
    names = [r["alert"] for r in rules(text)]
    assert len(names) == text.count("- alert:") == len(set(names))
    down = next(r for r in rules(text) if r["alert"] == "EgressBGPSessionDown")
    assert down == {**down, "expr": "bgp_session_up == 0", "for": "30s",
                    "severity": "critical"}
    quality = next(r for r in rules(text) if r["alert"] == "EgressAccessQualityBad")
    assert quality["expr"].startswith("quality_score\nand on (host, carrier, target)")
    assert quality["expr"].rstrip().endswith(")")


def test_every_rule_has_severity_summary_and_description() -> None:
    for rule in rules(RULES.read_text()):
        assert rule.get("severity") in ("warning", "critical"), rule["alert"]
        assert rule.get("summary"), rule["alert"]
        assert rule.get("description"), rule["alert"]
        assert rule["alert"].startswith("Egress"), rule["alert"]


# ------------------------------------------------------------------ names against the docs


KEYWORDS = {"by", "on", "and", "or", "unless", "offset", "group_left", "group_right",
            "ignoring", "without", "bool", "inf", "nan"}


def selectors(expr: str) -> list[str]:
    """Series names read by a PromQL expression; the `__name__` regex of the routing rule
    as "regex:<pattern>"."""
    found = [f"regex:{m.group(1)}" for m in re.finditer(r'__name__=~"([^"]+)"', expr)]
    expr = re.sub(r'"[^"]*"', '""', expr)                       # string literals
    expr = re.sub(r"\b(by|on|ignoring|without|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\boffset\s+\w+", " ", expr)  # matchers, ranges
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_][a-zA-Z0-9_]*)\b(?!\s*\()", expr):
        if m.group(1).lower() not in KEYWORDS:
            found.append(m.group(1))
    return found


def expr_labels(expr: str) -> set[str]:
    """Label names in matchers and in by/on/ignoring lists."""
    labels: set[str] = set()
    for group in re.findall(r"\b(?:by|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr):
        labels |= {x.strip() for x in group.split(",") if x.strip()}
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        labels |= {m.group(1) for m in re.finditer(r"(\w+)\s*(?:=~|!~|!=|=)", matchers)}
    return labels - {"__name__"}


def series_names() -> dict[str, tuple[str, str]]:
    """measurement_field → (measurement, field type) for every documented field."""
    names = {}
    for measurement, m in dashgen.declared().items():
        for field, typ in m.fields.items():
            names[f"{measurement}_{field}"] = (measurement, typ)
    return names


def test_selector_reader() -> None:
    got = selectors('label_replace({__name__=~"link_(route|gateway)6?_ok", carrier!=""},'
                    ' "check", "$1", "__name__", "link_(.+)_ok") == 0 and on (host) '
                    'max by (host) (rate(agent_points_written[5m]))')
    assert got == ["regex:link_(route|gateway)6?_ok", "agent_points_written"]
    assert selectors("a / (rate(b[10m]) + delta(c[10m] offset 3m) / 600) > 1e9 "
                     "and count by (host) (d{x=\"y\"} == 0)") == ["a", "b", "c", "d"]
    assert expr_labels('a{carrier!="",x=~"y"} / on (host, target) group_left () b') == {
        "carrier", "x", "host", "target"}


def test_rules_read_only_documented_numeric_fields_and_tags() -> None:
    names = series_names()
    schema = dashgen.declared()
    problems = []
    for rule in rules(RULES.read_text()):
        measurements = set()
        for name in selectors(rule["expr"]):
            if name.startswith("regex:"):
                regex = re.compile(name.removeprefix("regex:"))
                matched = [n for n in names if regex.fullmatch(n)]
                if not matched:
                    problems.append(f"{rule['alert']}: {name} matches no documented series")
                measurements |= {names[n][0] for n in matched}
                continue
            if name not in names:
                problems.append(f"{rule['alert']}: {name} is no documented measurement_field")
                continue
            measurement, typ = names[name]
            if typ not in ("int", "float", "bool"):
                problems.append(f"{rule['alert']}: {name} is a {typ or 'untyped'} field")
            measurements.add(measurement)
        tags = set().union(*(schema[m].tags for m in measurements)) if measurements else set()
        unknown = expr_labels(rule["expr"]) - tags - MADE_LABELS
        if unknown:
            problems.append(f"{rule['alert']}: labels {sorted(unknown)} are no tags of "
                            f"{sorted(measurements)}")
    assert not problems, "\n".join(problems)


def test_the_check_sees_a_string_field_and_an_unknown_tag() -> None:
    names = series_names()
    assert names["quality_status"][1] == "string"
    assert "link_oper_up" in names and "link_rx_util" in names
    assert "link_nonsense" not in names
    assert expr_labels('probe_loss_pct{targett="x"}') - dashgen.declared()["probe"].tags == {
        "targett"}


# ------------------------------------------------------------------ the Prometheus variant


def test_prometheus_file_is_what_the_generator_writes() -> None:
    gen = generator()
    assert gen.PREFIX == METRIC_PREFIX
    assert PROM_RULES.read_text() == gen.prometheus_rules(RULES.read_text()), (
        "egress-agent-rules.prometheus.yml is stale: run python config/alerts/generate.py")


def test_generator_prefixes_series_names_only() -> None:
    gen = generator()
    text = (
        "groups:\n  - name: g\n    rules:\n      - alert: A\n"
        "        # link_oper_up in a comment stays\n"
        "        expr: |\n"
        "          label_replace({__name__=~\"link_(route|gateway)_ok\"}, \"c\", \"$1\","
        " \"__name__\", \"link_(.+)_ok\") == 0 and on (host) agent_rss_bytes\n"
        "        labels:\n          severity: warning\n"
        "        annotations:\n"
        "          summary: '{{ $labels.host }} link_event has it; "
        "{{ with printf \"probe_loss_pct{host=%q}\" $labels.host | query }}x{{ end }}'\n")
    out = gen.prefix_names(text)
    assert '{__name__=~"egress_link_(route|gateway)_ok"}' in out
    assert '"__name__", "egress_link_(.+)_ok"' in out
    assert "on (host) egress_agent_rss_bytes" in out
    assert "# link_oper_up in a comment stays" in out
    assert "link_event has it" in out and '"egress_probe_loss_pct{host=%q}"' in out
    assert "$labels.host" in out
    for rule_vm, rule_prom in zip(rules(RULES.read_text()), rules(PROM_RULES.read_text()),
                                  strict=True):
        for name in selectors(rule_vm["expr"]):
            if not name.startswith("regex:"):
                measurement, field = name, ""
                for m in sorted(dashgen.declared(), key=len, reverse=True):
                    if name.startswith(m + "_"):
                        measurement, field = m, name[len(m) + 1:]
                        break
                assert metric_name(measurement, field) in rule_prom["expr"], name


# ------------------------------------------------------------------ promtool and vmalert


@needs_promtool
@pytest.mark.parametrize("path", [RULES, PROM_RULES], ids=["victoriametrics", "prometheus"])
def test_promtool_accepts_the_rules(path: Path) -> None:
    result = run([str(PROMTOOL), "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules(path.read_text()))} rules found" in result.stdout


@pytest.mark.skipif(VMALERT is None, reason="vmalert not installed (Debian package "
                    "victoria-metrics; scripts/setup installs it)")
@pytest.mark.parametrize("path", [RULES, PROM_RULES], ids=["victoriametrics", "prometheus"])
def test_vmalert_accepts_the_rules(path: Path) -> None:
    result = run([str(VMALERT), "-dryRun", f"-rule={path}", "-loggerLevel=ERROR"])
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    result = run([str(PROMTOOL), "test", "rules", str(UNIT_TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_promtool_unit_tests_pass_on_the_prometheus_names(tmp_path: Path) -> None:
    gen = generator()
    text = UNIT_TESTS.read_text().replace("../../config/alerts/egress-agent-rules.yml",
                                          str(PROM_RULES))
    assert str(PROM_RULES) in text
    renamed = gen.prefix_names(text)
    assert "'egress_link_oper_up{" in renamed
    (tmp_path / "prometheus.test.yml").write_text(renamed)
    result = run([str(PROMTOOL), "test", "rules", str(tmp_path / "prometheus.test.yml")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_has_a_firing_and_a_quiet_case() -> None:
    text = UNIT_TESTS.read_text()
    cases = re.findall(r"alertname: (\w+)\n\s*exp_alerts:( \[\])?", text)
    firing = {name for name, empty in cases if not empty}
    quiet = {name for name, empty in cases if empty}
    names = {r["alert"] for r in rules(RULES.read_text())}
    assert names - firing == set(), "rules never seen firing"
    assert names - quiet == set(), "rules never seen quiet"
    assert (firing | quiet) <= names
