"""Points and the InfluxDB line-protocol encoder.

Why two protocol versions: InfluxDB 1.x unescapes only `\\,` `\\=` `\\ ` in tag keys and
values (a `\\\\` stays two backslashes and a trailing backslash cannot be written at all),
while 2.x and later also unescape `\\\\`. The spool keeps points, not lines, and each output
encodes for its own server. What a version cannot carry is replaced and counted, never
allowed to split a line or make the server reject the batch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

FieldValue = int | float | bool | str
ProtocolVersion = Literal[1, 2]

try:  # the C hot path (agent/_lineproto.c); same output, about 5x faster
    if os.environ.get("EGRESS_AGENT_PURE_PYTHON"):
        raise ImportError("pure Python requested")
    from agent import _lineproto  # type: ignore[attr-defined]
except ImportError:
    _lineproto = None

# Characters that end a line or cannot be carried in an identifier at all.
_UNCARRIABLE = {"\n": "\ufffd", "\r": "\ufffd", "\x00": "\ufffd"}
_UNCARRIABLE_TABLE = str.maketrans(_UNCARRIABLE)
_IDENT_ESCAPE = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_MEASUREMENT_ESCAPE = str.maketrans({",": "\\,", " ": "\\ "})
_STRING_ESCAPE = str.maketrans({"\\": "\\\\", '"': '\\"'})
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@dataclass(slots=True)
class Point:
    """One sample: `time_ns` 0 means "stamp it when collected" (the scheduler does)."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time_ns: int = 0

    def as_record(self) -> tuple[str, dict[str, str], dict[str, FieldValue], int]:
        return (self.measurement, self.tags, self.fields, self.time_ns)

    @classmethod
    def from_record(
        cls, record: tuple[str, dict[str, str], dict[str, FieldValue], int]
    ) -> Point:
        return cls(record[0], record[1], record[2], record[3])


def stamp_points(points: list[Point], now_ns: int, hostname: str) -> None:
    """A timestamp where a collector left none, and the host tag where it is absent."""
    if _lineproto is not None:
        _lineproto.stamp(points, now_ns, hostname)
        return
    for point in points:
        if not point.time_ns:
            point.time_ns = now_ns
        if "host" not in point.tags:
            point.tags["host"] = hostname


@dataclass
class EncodeStats:
    """What the encoder had to change or leave out, for `agent` self-metrics."""

    sanitized_values: int = 0
    dropped_fields: int = 0
    dropped_points: int = 0


def _safe_backslashes(value: str, specials: str) -> tuple[str, bool]:
    """Replace a backslash that 1.x would read as escaping a special or the line's end.

    A backslash immediately before a character we escape (or last in the value) cannot be
    written to InfluxDB 1.x; it becomes `/`. Elsewhere a backslash is literal in 1.x and 2.x.
    """
    if "\\" not in value:
        return value, False
    chars = list(value)
    changed = False
    for i, ch in enumerate(chars):
        if ch == "\\" and (i + 1 == len(chars) or chars[i + 1] in specials):
            chars[i] = "/"
            changed = True
    return ("".join(chars), True) if changed else (value, False)


def escape_identifier(value: str, version: ProtocolVersion, stats: EncodeStats) -> str:
    """Escape a tag key, tag value or field key for the given protocol version."""
    safe = value.translate(_UNCARRIABLE_TABLE)
    if safe != value:
        stats.sanitized_values += 1
    if version == 1:
        safe, changed = _safe_backslashes(safe, ",= ")
        if changed:
            stats.sanitized_values += 1
    else:
        safe = safe.replace("\\", "\\\\")
    return safe.translate(_IDENT_ESCAPE)


def escape_measurement(value: str, stats: EncodeStats) -> str:
    """Measurements are our own names; the same safe form is used for both versions."""
    safe = value.translate(_UNCARRIABLE_TABLE)
    if safe != value:
        stats.sanitized_values += 1
    safe, changed = _safe_backslashes(safe, ", ")
    if changed:
        stats.sanitized_values += 1
    return safe.translate(_MEASUREMENT_ESCAPE)


def format_field_value(value: FieldValue) -> str | None:
    """Line-protocol text of a field value; None when it cannot be carried (NaN, inf)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        # InfluxDB rejects the whole batch for an integer beyond int64: drop the field.
        return f"{value}i" if _INT64_MIN <= value <= _INT64_MAX else None
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)
        return None
    return '"' + value.translate(_UNCARRIABLE_TABLE).translate(_STRING_ESCAPE) + '"'


@dataclass
class LineEncoder:
    """Encodes points for one output; caches series keys since series repeat every interval."""

    version: ProtocolVersion = 2
    stats: EncodeStats = field(default_factory=EncodeStats)
    _series_cache: dict[tuple[str, tuple[tuple[str, str], ...]], str] = field(
        default_factory=dict, repr=False
    )
    _field_key_cache: dict[str, str] = field(default_factory=dict, repr=False)
    max_cached_series: int = 200_000

    def series_key(self, measurement: str, tags: dict[str, str]) -> str:
        # Keyed by the tags in the caller's order (cheap); the text itself sorts them.
        cache_key = (measurement, tuple(tags.items()))
        cached = self._series_cache.get(cache_key)
        if cached is not None:
            return cached
        parts = [escape_measurement(measurement, self.stats)]
        for key, value in sorted(tags.items()):
            if value == "":
                continue  # InfluxDB has no empty tag values: an empty tag is an absent tag
            parts.append(
                escape_identifier(key, self.version, self.stats)
                + "="
                + escape_identifier(value, self.version, self.stats)
            )
        key_text = ",".join(parts)
        if len(self._series_cache) >= self.max_cached_series:
            self._series_cache.clear()
        self._series_cache[cache_key] = key_text
        return key_text

    def _field_key(self, key: str) -> str:
        cached = self._field_key_cache.get(key)
        if cached is None:
            cached = escape_identifier(key, self.version, self.stats)
            if len(self._field_key_cache) < 10_000:
                self._field_key_cache[key] = cached
        return cached

    def encode(self, point: Point) -> str | None:
        """One line without the newline, or None when no field could be carried."""
        series = self._series_cache.get((point.measurement, tuple(point.tags.items())))
        if series is None:
            series = self.series_key(point.measurement, point.tags)
        field_parts = []
        key_cache = self._field_key_cache
        for key, value in point.fields.items():
            kind = type(value)
            # Inlined for the common kinds: this loop is the encoder's hot path.
            if kind is float:
                assert isinstance(value, float)
                if value - value != 0.0:  # NaN or infinity
                    self.stats.dropped_fields += 1
                    continue
                text = repr(value)
            elif kind is int and _INT64_MIN <= value <= _INT64_MAX:  # type: ignore[operator]
                text = f"{value}i"
            else:
                formatted = format_field_value(value)
                if formatted is None:
                    self.stats.dropped_fields += 1
                    continue
                text = formatted
            escaped = key_cache.get(key)
            if escaped is None:
                escaped = self._field_key(key)
            field_parts.append(f"{escaped}={text}")
        if not field_parts:
            self.stats.dropped_points += 1
            return None
        if point.time_ns:
            return f"{series} {','.join(field_parts)} {point.time_ns}"
        return f"{series} {','.join(field_parts)}"

    def encode_lines(self, points: Iterable[Point]) -> list[str]:
        lines = []
        for point in points:
            line = self.encode(point)
            if line is not None:
                lines.append(line)
        return lines

    def encode_body(self, points: Sequence[Point]) -> tuple[bytes, int]:
        """The batch as one request body (lines joined by newlines) and its line count."""
        if _lineproto is not None:
            body, lines, dropped_fields, dropped_points = _lineproto.encode_batch(
                points, self._series_cache, self.series_key, self._field_key_cache,
                self._field_key, format_field_value,
            )
            self.stats.dropped_fields += dropped_fields
            self.stats.dropped_points += dropped_points
            return body, lines
        encoded = self.encode_lines(points)
        return "\n".join(encoded).encode(), len(encoded)

    def encode_batch(self, points: Sequence[Point]) -> bytes:
        return self.encode_body(points)[0]
