"""The names the dashboards may use: measurements, tags and fields of the measurement
schema (agent/schema.py), and the BGP event kinds from their one declaration
(collectors/bgp/metrics.py). `checked()` stops the generator at a query that names
anything else; tests/test_grafana.py runs the same check on the written JSON."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from agent.schema import load_declarations
from collectors.bgp.metrics import EVENT_KINDS

_REPO = Path(__file__).resolve().parents[3]


@dataclass
class Names:
    """One measurement as a query sees it: its tags, and its fields with their types."""

    tags: set[str] = field(default_factory=lambda: {"host"})
    fields: dict[str, str] = field(default_factory=dict)  # name -> int, float, bool, string


def declared() -> dict[str, Names]:
    """Every declared measurement's names (a fresh copy: callers may change it)."""
    return {m.name: Names({t.name for t in m.all_tags}, {f.name: f.type_name for f in m.fields})
            for m in load_declarations(_REPO, ("agent", "collectors"))}


@cache
def _declared_once() -> dict[str, Names]:
    return declared()


def kinds(*names: str) -> str:
    """`a|b|c` of BGP event kinds for a regex match, once each is a declared kind."""
    unknown = [n for n in names if n not in EVENT_KINDS]
    if unknown:
        raise ValueError(f"undeclared bgp_event kinds {unknown}")
    return "|".join(names)


def checked(query: str) -> str:
    """The query, once every name in it is declared; ValueError otherwise."""
    problems = check_query(query, _declared_once())
    if problems:
        raise ValueError(f"{query!r}: " + "; ".join(problems))
    return query


_KEYWORDS = {
    "select", "from", "where", "and", "or", "group", "by", "fill", "null", "previous",
    "linear", "none", "order", "asc", "desc", "limit", "slimit", "offset", "soffset", "as",
    "true", "false", "show", "tag", "values", "with", "key", "in", "measurements",
    "measurement", "field", "keys", "series", "tz", "not", "time",
}
_VAR = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def _mask(query: str) -> str:
    """Regex and string literals and template variables replaced by a number."""
    query = re.sub(r"([=!]~)\s*/(?:\\.|[^/\\])*/", r"\1 0", query)
    query = re.sub(r"'(?:\\.|[^'\\])*'", "0", query)
    return _VAR.sub("0", query)


def check_query(query: str, schema: Mapping[str, Names]) -> list[str]:
    """Names in one InfluxQL query that the schema does not have (empty: fine)."""
    text = _mask(query)
    problems: list[str] = []
    show = re.match(r'\s*SHOW\s+TAG\s+VALUES\s+(?:FROM\s+"(\w+)"\s+)?WITH\s+KEY\s*=\s*"(\w+)"'
                    r"(.*)$", text, re.I | re.S)
    if show:
        name, key, rest = show.groups()
        if name is not None and name not in schema:
            return [f"unknown measurement {name!r}"]
        pool = [schema[name]] if name else list(schema.values())
        tags = set().union(*(m.tags for m in pool))
        problems += [f"{n!r} is not a tag" for n in [key, *re.findall(r'"(\w+)"', rest)]
                     if n not in tags]
        return problems
    if re.match(r"\s*SHOW\b", text, re.I):
        return problems
    if re.search(r"\bFROM\s*\(", text, re.I):
        return ["subquery: this check (and generate.py) supports one measurement per query"]
    source = re.search(r'\bFROM\s+("(\w+)"|\S+)\s*(,)?', text, re.I)
    if not source or source.group(2) is None:
        return ["FROM must name one double-quoted measurement"]
    if source.group(3):
        return ["FROM names several measurements"]
    name = source.group(2)
    if name not in schema:
        return [f"unknown measurement {name!r}"]
    m = schema[name]
    known = m.tags | set(m.fields) | {"time"}
    body = text[: source.start()] + text[source.end():]
    body = re.sub(r'\bAS\s+("[^"]*"|\w+)', "", body, flags=re.I)
    for ident in re.findall(r'"([^"]*)"', body):
        if ident not in known:
            problems.append(f"{name}: no field or tag {ident!r}")
    bare = re.sub(r'"[^"]*"', "0", body)
    for word in re.findall(r"(?<![\w.])([A-Za-z_]\w*)\b(?!\s*\()", bare):
        if word.lower() not in _KEYWORDS and word not in known:
            problems.append(f"{name}: no field or tag {word!r} (unquoted)")
    group = re.search(r"\bGROUP\s+BY\s+(.*?)(\bfill\s*\(|\bORDER\b|\bLIMIT\b|\bSLIMIT\b|$)",
                      text, re.I | re.S)
    if group:
        for ident in re.findall(r'"([^"]*)"', group.group(1)):
            if ident not in m.tags:
                problems.append(f"{name}: GROUP BY {ident!r} is not a tag")
    return problems
