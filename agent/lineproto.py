"""Reading line protocol back (2.x escaping): `report` reads the spool's stored batches.

Not on the delivery path; written for clarity with a fast path for the common line that
holds no backslash and no quote.
"""

from __future__ import annotations

from collections.abc import Iterator

from agent.points import FieldValue, Point


def _split(text: str, sep: str, quotes: bool = False) -> list[str]:
    """Split on `sep` where it is not escaped (and, with quotes, not inside "...")."""
    parts: list[str] = []
    current: list[str] = []
    in_quotes = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if quotes and ch == '"':
            in_quotes = not in_quotes
        if ch == sep and not in_quotes:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in ",= \\":
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _value(text: str) -> FieldValue:
    if text.startswith('"'):
        body = text[1:-1]
        return body.replace('\\"', '"').replace("\\\\", "\\") if "\\" in body else body
    if text in ("true", "t", "T", "True", "TRUE"):
        return True
    if text in ("false", "f", "F", "False", "FALSE"):
        return False
    if text.endswith("i"):
        return int(text[:-1])
    if text.endswith("u"):
        return int(text[:-1])
    return float(text)


def parse_line(line: str) -> Point:
    """Raises ValueError on a line this agent could not have written."""
    if "\\" not in line and '"' not in line:
        sections = line.split(" ")
        key_parts = sections[0].split(",")
        field_parts = sections[1].split(",")
        time_text = sections[2] if len(sections) > 2 else "0"
    else:
        key_text = _split(line, " ")[0]
        rest = _split(line[len(key_text) + 1 :], " ", quotes=True)
        key_parts = _split(key_text, ",")
        field_parts = _split(rest[0], ",", quotes=True)
        time_text = rest[1] if len(rest) > 1 else "0"
    tags: dict[str, str] = {}
    for part in key_parts[1:]:
        key, _, value = part.partition("=") if "\\" not in part else _partition(part)
        tags[_unescape(key)] = _unescape(value)
    fields: dict[str, FieldValue] = {}
    for part in field_parts:
        key, _, value = part.partition("=") if "\\" not in part else _partition(part)
        fields[_unescape(key)] = _value(value)
    return Point(_unescape(key_parts[0]), tags, fields, int(time_text))


def _partition(part: str) -> tuple[str, str, str]:
    pieces = _split(part, "=")
    key = pieces[0]
    return key, "=", part[len(key) + 1 :]


def parse_lines(data: bytes) -> Iterator[Point]:
    for line in data.decode("utf-8", "replace").split("\n"):
        if line and not line.startswith("#"):
            try:
                yield parse_line(line)
            except (ValueError, IndexError):
                continue
