"""`egress-agent report`: a per-carrier summary from the embedded store (the spool).

Pure summarising over points, so it is tested without a daemon; the CLI only reads the
spool and prints.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from agent.points import Point


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


class _Series:
    """Values of one field over time: enough for last, mean and max."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.last_raw: Any = None
        self.last_ns = -1

    def add(self, value: Any, time_ns: int) -> None:
        number = _num(value)
        if number is not None:
            self.values.append(number)
        if time_ns >= self.last_ns:
            self.last_ns = time_ns
            self.last_raw = value

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"last": self.last_raw}
        if self.values:
            out["mean"] = statistics.fmean(self.values)
            out["max"] = max(self.values)
        return out


def summarize(points: Iterable[Point]) -> dict[str, Any]:
    """Group by measurement and by carrier (plus target/interface where they matter)."""
    carriers: dict[str, dict[str, dict[str, _Series]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(_Series))
    )
    host: dict[str, dict[str, _Series]] = defaultdict(lambda: defaultdict(_Series))
    events: list[dict[str, Any]] = []
    first_ns = last_ns = 0
    count = 0
    for point in points:
        count += 1
        first_ns = point.time_ns if not first_ns else min(first_ns, point.time_ns)
        last_ns = max(last_ns, point.time_ns)
        tags = point.tags
        if point.measurement in ("link_event", "bgp_event"):
            events.append({
                "time_ns": point.time_ns, "measurement": point.measurement,
                **{k: v for k, v in tags.items() if k != "host"}, **point.fields,
            })
            continue
        if point.measurement == "alert":  # alert state changes are events too
            events.append({
                "time_ns": point.time_ns, "measurement": "alert",
                **{k: v for k, v in tags.items() if k != "host"},
                "summary": point.fields.get("summary", ""),
            })
            continue
        carrier = tags.get("carrier")
        if carrier:
            key = point.measurement
            for extra in ("target", "method", "prefix"):
                if extra in tags:
                    key += f" {tags[extra]}"
            group = carriers[carrier][key]
        else:
            key = point.measurement
            if "mount" in tags:
                key += f" {tags['mount']}"
            elif "interface" in tags:
                key += f" {tags['interface']}"
            elif "output" in tags:
                key += f" {tags['output']}"
            group = host[key]
        for name, value in point.fields.items():
            group[name].add(value, point.time_ns)
    return {
        "points": count,
        "first_ns": first_ns,
        "last_ns": last_ns,
        "host": {k: {f: s.summary() for f, s in v.items()} for k, v in sorted(host.items())},
        "carriers": {
            c: {k: {f: s.summary() for f, s in v.items()} for k, v in sorted(groups.items())}
            for c, groups in sorted(carriers.items())
        },
        "events": sorted(events, key=lambda e: e["time_ns"])[-50:],
    }


_HEADLINE_FIELDS = {
    "link": ("oper_up", "rx_bps", "tx_bps", "rx_util", "tx_util", "route_ok", "gateway_ok"),
    "billing": ("p95_bps", "p95_util", "samples"),
    "bgp_session": ("state", "up", "prefixes_v4", "prefixes_v6", "flaps"),
    "bgp_prefix": ("announced", "visible", "origin_as", "as_path"),
    "probe": ("loss_pct", "rtt_median_ms", "rtt_p95_ms", "jitter_ms"),
    "quality": ("status", "score", "best"),
    "traceroute": ("hops", "reached", "path"),
    "host": ("cpu_percent", "load1", "mem_used_percent", "mem_available_bytes",
             "tcp_established"),
    "disk": ("used_percent", "free_bytes"),
    "agent": ("points_written", "points_dropped", "write_errors", "queue_points",
              "spool_bytes", "rss_bytes"),
}


def _fmt(summary: dict[str, Any]) -> str:
    last = summary.get("last")
    text = _number(last) if isinstance(last, float) else str(last)
    varied = "mean" in summary and (summary["mean"] != last or summary["max"] != last)
    if varied and not isinstance(last, bool | str):
        text += f" (mean {_number(summary['mean'])}, max {_number(summary['max'])})"
    return text


def _number(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _lines_for(key: str, fields: dict[str, dict[str, Any]]) -> list[str]:
    measurement = key.split(" ", 1)[0]
    wanted = _HEADLINE_FIELDS.get(measurement, tuple(fields))
    parts = [f"{f}={_fmt(fields[f])}" for f in wanted if f in fields]
    return [f"    {key}: " + ", ".join(parts)] if parts else []


def render_text(summary: dict[str, Any], since: str) -> str:
    lines = [f"egress-agent report, last {since}: {summary['points']} points"]
    if not summary["points"]:
        lines.append("  (no data in the embedded store for this period)")
        return "\n".join(lines)
    lines.append("  host")
    for key, fields in summary["host"].items():
        lines.extend(_lines_for(key, fields))
    for carrier, groups in summary["carriers"].items():
        lines.append(f"  carrier {carrier}")
        for key, fields in groups.items():
            lines.extend(_lines_for(key, fields))
    if summary["events"]:
        lines.append("  recent events")
        for event in summary["events"][-10:]:
            detail = ", ".join(
                f"{k}={v}" for k, v in event.items() if k not in ("time_ns", "measurement")
            )
            lines.append(f"    {event['measurement']}: {detail}")
    return "\n".join(lines)
