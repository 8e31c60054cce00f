"""docs/metrics.md, rendered from the measurement schema (agent/schema.py): the intro below,
then per section its prose, and per measurement its tags, closed tag values and fields.
Consecutive fields (or tags) with one meaning share a row. scripts/gen-metrics-doc writes it."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from agent.schema import Field, Measurement, Registry, Tag, registry

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"

DOC_INTRO = """\
# Measurements

<!-- Generated from the declarations (each producer's metrics.py; agent/schema.py) by
scripts/gen-metrics-doc; edit those, not this file. -->

Every measurement carries the tag `host` (`agent.hostname`). Counters are cumulative
integers; rates are floats. Timestamps are nanoseconds; polled collectors stamp their
points with the interval tick they belong to (aligned to the interval), streaming ones with
the moment the event was seen. Units are in the field names where they are not obvious.

The Prometheus output (`[outputs.prometheus]`) exposes every numeric field as
`egress_<measurement>_<field>` with the meaning below as its help text. Every series there
is a gauge, counters too (a Prometheus counter would have to be renamed `..._total`):
`rate()` and `increase()` work on the counters all the same.
"""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _field_rows(m: Measurement) -> list[str]:
    rows: list[tuple[list[str], Field]] = []
    for f in m.fields:
        last = rows[-1][1] if rows else None
        if last is not None and (last.type, last.unit, last.description, last.kind) == (
                f.type, f.unit, f.description, f.kind):
            rows[-1][0].append(f.name)
        else:
            rows.append(([f.name], f))
    out = ["| field | type | kind | unit | meaning |", "| --- | --- | --- | --- | --- |"]
    for names, f in rows:
        out.append(f"| {', '.join(names)} | {f.type_name} | {f.kind} | {_cell(f.unit)} | "
                   f"{_cell(f.description)} |")
    return out


def _tag_rows(m: Measurement) -> list[str]:
    rows: list[tuple[list[str], Tag]] = []
    for t in m.all_tags:
        if rows and (rows[-1][1].description, rows[-1][1].optional) == (t.description,
                                                                        t.optional):
            rows[-1][0].append(t.name)
        else:
            rows.append(([t.name], t))
    out = ["| tag | meaning |", "| --- | --- |"]
    for names, t in rows:
        optional = " (absent where it does not apply)" if t.optional else ""
        out.append(f"| {', '.join(names)} | {_cell(t.description)}{optional} |")
    return out


def _value_tables(m: Measurement) -> list[str]:
    out: list[str] = []
    for t in m.all_tags:
        if not t.values:
            continue
        name_col, meaning_col = t.values_heading
        out += ["", f"`{t.name}`:", "", f"| {name_col} | {meaning_col} |", "| --- | --- |"]
        out += [f"| `{v}` | {_cell(text)} |" for v, text in t.values]
    return out


def _paragraphs(text: str) -> list[str]:
    """Prose, one blank line before each paragraph, wrapped at the doc's 92 columns."""
    out: list[str] = []
    for paragraph in text.strip().split("\n\n"):
        if paragraph.strip():
            out += ["", textwrap.fill(" ".join(paragraph.split()), width=92,
                                      break_on_hyphens=False, break_long_words=False)]
    return out


def markdown(reg: Registry | None = None) -> str:
    """docs/metrics.md as the declarations make it."""
    reg = reg or registry()
    lines = [DOC_INTRO.rstrip("\n")]
    for section in reg.sections:
        lines += ["", f"## {section.title}"]
        lines += _paragraphs(section.intro)
        for m in section.measurements:
            lines += ["", f"### `{m.name}` — {m.summary}"]
            lines += _paragraphs(m.description)
            lines += ["", *_tag_rows(m)]
            lines += _value_tables(m)
            lines += ["", *_field_rows(m)]
            lines += _paragraphs(m.notes)
        lines += _paragraphs(section.notes)
    return "\n".join(lines) + "\n"


def write_or_check(text: str, check: bool, path: Path = DOC_PATH) -> int:
    """scripts/gen-metrics-doc: write the doc, or exit status 1 when it is stale."""
    if check:
        if path.read_text() != text:
            print(f"{path}: stale; run scripts/gen-metrics-doc", file=sys.stderr)
            return 1
        return 0
    path.write_text(text)
    print(path)
    return 0
