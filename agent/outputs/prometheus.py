"""Prometheus output: the latest value of every numeric field, served over HTTP.

For sites that run Prometheus rather than InfluxDB. Unlike the InfluxDB outputs this one
keeps no history and needs no cursor: a scrape reads the newest value of each series, so
the core calls `observe()` with every batch it flushes and Prometheus does the rest.

Names: measurement `link`, field `rx_bytes` → metric `egress_link_rx_bytes`, tags → labels,
both sanitised to Prometheus' character sets. Booleans are 0/1; string fields have no
Prometheus form and are skipped. HELP and TYPE come from the measurement schema
(agent/schema.py): the field's meaning, unit and kind. Every metric is a gauge (a latest
value): counters such as `rx_bytes` keep their cumulative meaning, so `rate()` works on
them, but a TYPE counter would rename their samples `..._total` (see agent/schema.py).

The number of series is bounded (`max_series`): a new series beyond it is left out and
counted in `egress_exporter_samples_dropped_total`; a series not updated for
`stale_after_s` (an interface removed, a probe target dropped on reload) is forgotten, so
the bound is not used up by the past. One collector serves all of it from a snapshot taken
under a lock, so a scrape never sees half a batch and never blocks the core for long.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from agent.points import Point
from agent.schema import registry

log = logging.getLogger(__name__)

METRIC_PREFIX = "egress_"
SELF_PREFIX = "egress_exporter_"  # the exporter's own metrics; not a measurement name

_METRIC_INVALID = re.compile(r"[^a-zA-Z0-9_:]")
_LABEL_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_NAME_CACHE_MAX = 10_000

Labels = tuple[tuple[str, str], ...]


def metric_name(measurement: str, field: str) -> str:
    """`egress_<measurement>_<field>` with every character outside [a-zA-Z0-9_:] as `_`."""
    return _METRIC_INVALID.sub("_", f"{METRIC_PREFIX}{measurement}_{field}")


def help_and_type(measurement: str, field: str) -> tuple[str, str]:
    """HELP text and TYPE of a metric, from the field's declaration; a generic help and
    gauge for a field the schema does not declare."""
    declared = registry().measurements.get(measurement)
    f = next((f for f in declared.fields if f.name == field), None) if declared else None
    if f is None:
        return f"Latest value of field {field!r} of {measurement!r}.", "gauge"
    text = f"{measurement}.{field}: {f.description.replace('`', '')}"
    if f.unit:
        text += f" [{f.unit}]"
    if f.kind == "counter":
        text += " (a counter, exposed as a gauge)"
    return text, f.prometheus_type


def label_name(tag: str) -> str:
    """A tag key as a label name: [a-zA-Z_][a-zA-Z0-9_]*, never the reserved `__` prefix."""
    name = _LABEL_INVALID.sub("_", tag)
    if not name or name[0].isdigit() or name.startswith("__"):
        name = "tag_" + name
    return name


def sample_value(value: object) -> float | None:
    """Field value as a sample: numbers as floats, bools as 0/1, anything else None."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return None


def parse_listen(listen: str) -> tuple[str, int]:
    """'127.0.0.1:9273', '[::1]:9273', 'localhost:9273' or ':9273' (all IPv4 addresses)."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"bad listen address {listen!r} (use HOST:PORT, e.g. 127.0.0.1:9273)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)  # raises ValueError with the reason
    elif ":" in host:
        raise ValueError(f"bad listen address {listen!r} (write IPv6 as [ADDR]:PORT)")
    return host or "0.0.0.0", int(port_text)


@dataclass(slots=True)
class _Sample:
    value: float
    updated_s: float


class _LatestValues(Collector):
    """Latest value per series, and the exporter's own counts."""

    def __init__(self, max_series: int, stale_after_s: float) -> None:
        self._lock = threading.Lock()
        self._series: dict[str, dict[Labels, _Sample]] = {}
        self._help: dict[str, tuple[str, str]] = {}  # metric name -> HELP, TYPE
        self._count = 0
        self._dropped = 0
        self._last_expiry_s = 0.0
        self._max_series = max_series
        self._stale_after_s = stale_after_s
        self._metric_names: dict[tuple[str, str], str] = {}
        self._label_names: dict[str, str] = {}

    def _metric(self, measurement: str, field: str) -> str:
        key = (measurement, field)
        name = self._metric_names.get(key)
        if name is None:
            name = metric_name(measurement, field)
            if len(self._metric_names) >= _NAME_CACHE_MAX:
                self._metric_names.clear()
            self._metric_names[key] = name
            if name not in self._help:
                self._help[name] = help_and_type(measurement, field)
        return name

    def _labels(self, tags: dict[str, str]) -> Labels:
        labels: dict[str, str] = {}
        for key in sorted(tags):
            value = tags[key]
            if value == "":
                continue  # as in line protocol: an empty tag is an absent tag
            name = self._label_names.get(key)
            if name is None:
                name = label_name(key)
                if len(self._label_names) >= _NAME_CACHE_MAX:
                    self._label_names.clear()
                self._label_names[key] = name
            labels.setdefault(name, value)  # first of colliding keys (sorted) wins
        return tuple(sorted(labels.items()))

    def observe(self, points: Iterable[Point]) -> None:
        now = time.monotonic()
        with self._lock:
            for point in points:
                labels: Labels | None = None
                for field, raw in point.fields.items():
                    value = sample_value(raw)
                    if value is None:
                        continue
                    if labels is None:
                        labels = self._labels(point.tags)
                    self._set(self._metric(point.measurement, field), labels, value, now)

    def _set(self, name: str, labels: Labels, value: float, now: float) -> None:
        per_metric = self._series.get(name)
        if per_metric is None:
            per_metric = self._series[name] = {}
        sample = per_metric.get(labels)
        if sample is not None:
            sample.value = value
            sample.updated_s = now
            return
        if self._count >= self._max_series:
            self._expire(now, force=False)
            if self._count >= self._max_series:
                self._dropped += 1
                if not per_metric:
                    del self._series[name]
                return
        per_metric[labels] = _Sample(value, now)
        self._count += 1

    def _expire(self, now: float, *, force: bool) -> None:
        """Forget series older than stale_after_s; at most once a second unless forced."""
        if not force and now - self._last_expiry_s < 1.0:
            return
        self._last_expiry_s = now
        horizon = now - self._stale_after_s
        for name in list(self._series):
            per_metric = self._series[name]
            old = [labels for labels, sample in per_metric.items() if sample.updated_s < horizon]
            for labels in old:
                del per_metric[labels]
            self._count -= len(old)
            if not per_metric:
                del self._series[name]

    def snapshot(
        self,
    ) -> tuple[dict[str, list[tuple[Labels, float]]], dict[str, tuple[str, str]], int, int]:
        with self._lock:
            self._expire(time.monotonic(), force=True)
            series = {
                name: [(labels, sample.value) for labels, sample in per_metric.items()]
                for name, per_metric in self._series.items()
            }
            return series, dict(self._help), self._count, self._dropped

    def collect(self) -> Iterable[Metric]:
        series, help_texts, count, dropped = self.snapshot()
        for name in sorted(series):
            help_text, kind = help_texts.get(name, ("Latest value.", "gauge"))
            metric = Metric(name, help_text, kind)
            for labels, value in series[name]:
                metric.add_sample(name, dict(labels), value)
            yield metric
        own = Metric(f"{SELF_PREFIX}series", "Series currently exposed.", "gauge")
        own.add_sample(f"{SELF_PREFIX}series", {}, float(count))
        yield own
        limit = Metric(f"{SELF_PREFIX}series_limit", "Most series exposed at once.", "gauge")
        limit.add_sample(f"{SELF_PREFIX}series_limit", {}, float(self._max_series))
        yield limit
        left_out = Metric(
            f"{SELF_PREFIX}samples_dropped",
            "Samples of new series left out because the series limit was reached.",
            "counter",
        )
        left_out.add_sample(f"{SELF_PREFIX}samples_dropped_total", {}, float(dropped))
        yield left_out


class PrometheusExporter:
    """Serves the latest values on `listen` (HOST:PORT) from a background thread."""

    def __init__(
        self,
        listen: str,
        *,
        max_series: int = 100_000,
        stale_after_s: float = 900.0,
    ) -> None:
        if max_series < 1:
            raise ValueError("max_series must be at least 1")
        if not (stale_after_s > 0 and math.isfinite(stale_after_s)):
            raise ValueError("stale_after_s must be a positive number of seconds")
        self.listen = listen
        self._host, self._port = parse_listen(listen)
        registry()  # the core's declarations now; collectors register theirs as they load
        self._values = _LatestValues(max_series, stale_after_s)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self._values)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve; raises OSError (e.g. address in use) so the core can report it."""
        if self._server is not None:
            raise RuntimeError("exporter already started")
        self._server, self._thread = start_http_server(
            self._port, addr=self._host, registry=self.registry
        )
        log.info("prometheus exporter listening on %s", self.address_text)

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the port is the real one when `listen` asked for port 0."""
        if self._server is None:
            return self._host, self._port
        return self._host, int(self._server.server_address[1])

    @property
    def address_text(self) -> str:
        host, port = self.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def observe(self, points: Sequence[Point]) -> None:
        """Remember the latest value of every numeric field; thread-safe, cheap."""
        self._values.observe(points)

    def close(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5.0)
