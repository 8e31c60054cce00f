"""The alert engine: conditions over the points the collectors emit, and each alert's life.

The engine is an observer of the pipeline (agent/pipeline.py): it sees every batch once
it is durable, on the event loop, and looks at a point only when a condition asked for
its measurement (one dict lookup per point). Conditions (agent/alerts/conditions/) call
`set_active(...)` with what they see; the engine owns the life cycle:

    inactive -> pending (condition true; `for` running) -> firing -> resolved

A condition that becomes false while pending drops the alert silently; one that becomes
false while firing resolves it. Hysteresis is each condition's own (a lower level to
resolve than to fire, or a number of good rounds). Time comes from the injected clock, so
the whole life cycle runs on a fake clock in tests.

Every firing and resolved transition becomes an `alert` point (labels as tags, plus
`state`), emitted into the same pipeline: the spool makes it durable, and the alert
outputs (agent/outputs/alertmanager.py, webhook.py) deliver it from their own cursors.
Firing alerts are kept in `<data_dir>/alerts/state.json` (rewritten on each transition),
so after a restart a firing alert is still firing and is not announced again.

One file (~440 lines): the life cycle, its queries and its state file all work on the one
table of alerts; the conditions are in agent/alerts/conditions/.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import agent.points
from agent.points import Point

# None: the pure-Python encoder is in use, or an older build of the extension
_c_select = getattr(getattr(agent.points, "_lineproto", None), "select", None)
_EMPTY: frozenset[str] = frozenset()

log = logging.getLogger(__name__)

Emit = Callable[[list[Point]], None]

# A pending alert whose condition has not said "true" for this long is dropped (its source
# stopped: a carrier or probe removed, a collector stopped) rather than fired by the clock.
STALE_PENDING_S = 300.0

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_SEP = b"\xff"


def fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's label-set fingerprint (FNV-1a 64 over sorted names and values).
    Conditions ask for it on every point they judge, mostly for the same few label sets:
    computed once per set (about 20 us in Python), then a dictionary lookup."""
    return _fingerprint_of(tuple(sorted(labels.items())))


@functools.lru_cache(maxsize=8192)
def _fingerprint_of(items: tuple[tuple[str, str], ...]) -> str:
    h = _FNV_OFFSET
    for name, value in items:
        for chunk in (name.encode(), _SEP, value.encode(), _SEP):
            for byte in chunk:
                h ^= byte
                h = (h * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def format_duration(seconds: float) -> str:
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{seconds / 86400:g}d"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


@dataclass
class Alert:
    condition: str
    labels: dict[str, str]
    annotations: dict[str, str]
    active_at: float
    for_s: float
    state: str = "pending"  # pending | firing
    fired_at: float = 0.0
    value: float | None = None
    fingerprint: str = ""
    confirmed_at: float = 0.0  # the condition last said "true"

    def as_dict(self) -> dict[str, Any]:
        return {
            "condition": self.condition,
            "state": self.state,
            "labels": self.labels,
            "annotations": self.annotations,
            "active_at": self.active_at,
            "fired_at": self.fired_at,
            "for_s": self.for_s,
            "value": self.value,
            "fingerprint": self.fingerprint,
        }


@dataclass
class EngineStats:
    fired: int = 0
    resolved: int = 0
    points_seen: int = 0
    condition_errors: int = 0
    state_write_errors: int = 0
    last_error: str = ""
    by_condition: dict[str, int] = field(default_factory=dict)


class AlertEngine:
    def __init__(
        self,
        config: Any,
        emit: Emit,
        clock: Callable[[], float] = time.time,
        state_path: Path | None = None,
        lookup: Callable[[dict[str, Any]], Any] | None = None,
        billing_reader: Any = None,
    ) -> None:
        self.emit = emit
        self.clock = clock
        self.state_path = state_path
        self.lookup = lookup
        self.billing_reader = billing_reader
        self.alerts: dict[str, Alert] = {}
        self.stats = EngineStats()
        self.config = config
        self.hostname = config.agent.hostname
        self.conditions: list[Any] = []
        self._handlers: dict[str, list[Callable[[Point], None]]] = {}
        self._link_handlers: list[Callable[[Point], None]] = []
        self._uplinks: frozenset[str] = frozenset()
        self._wanted: frozenset[str] = frozenset()
        self._dirty = False  # firing set changed: state.json is rewritten (once per call)
        self._load_state()
        self.reconfigure(config)

    # ------------------------------------------------------------ configuration

    def reconfigure(self, config: Any) -> None:
        """Build the conditions of `config`; alerts of a condition no longer enabled resolve.
        Alerts of conditions still enabled keep their state (a reload is not a restart)."""
        from agent.alerts.conditions import build_conditions

        self.config = config
        self.hostname = config.agent.hostname
        self.conditions = build_conditions(self, config) if config.alerts.enabled else []
        handlers: dict[str, list[Callable[[Point], None]]] = {}
        for condition in self.conditions:
            for measurement in condition.measurements:
                handlers.setdefault(measurement, []).append(condition.on_point)
        self._link_handlers = handlers.pop("link", [])
        self._uplinks = frozenset(c.interface for c in config.carriers)
        self._handlers = handlers
        self._wanted = frozenset(handlers)
        names = {c.name for c in self.conditions}
        carriers = {c.name for c in config.carriers}
        for alert in list(self.alerts.values()):
            carrier = alert.labels.get("carrier")
            gone = carrier is not None and bool(carriers) and carrier not in carriers
            if alert.condition not in names or gone:
                self._drop(alert, self.clock())
        if self._dirty:
            self._save_state()

    # ------------------------------------------------------------ input

    def observe(self, points: Sequence[Point]) -> None:
        """The pipeline observer. Which points concern a condition is decided per point by
        the measurement's name, and for `link` (the bulk: every interface, every interval)
        by the interface against the carrier uplinks: in C (agent/_lineproto.c `select`,
        about 15 ns per point) or in Python (`select_points`, about 100 ns). Only those
        reach a condition (bench/alerts.py measures the cost against the pipeline's)."""
        uplinks = self._uplinks if self._link_handlers else _EMPTY
        if _c_select is not None and type(points) is list:
            selected = _c_select(points, self._wanted, "link", "interface", uplinks)
        else:
            selected = select_points(points, self._wanted, "link", "interface", uplinks)
        if not selected:
            return
        get = self._handlers.get
        for point in selected:
            wanted = self._link_handlers if point.measurement == "link" else get(
                point.measurement, ())
            self.stats.points_seen += 1
            for handler in wanted:
                try:
                    handler(point)
                except Exception as exc:  # a bad point or a bug: never the pipeline's problem
                    self._condition_failed(exc)
        if self._dirty:
            self._save_state()

    def tick(self, self_stats: dict[str, Any] | None = None) -> None:
        """Pending alerts whose `for` has run fire; time-based conditions re-evaluate."""
        now = self.clock()
        for condition in self.conditions:
            try:
                condition.on_tick(now, self_stats)
            except Exception as exc:
                self._condition_failed(exc)
        for alert in list(self.alerts.values()):
            if alert.state != "pending":
                continue
            if now - alert.confirmed_at > STALE_PENDING_S:
                del self.alerts[alert.fingerprint]  # nobody judges it any more
            elif now - alert.active_at >= alert.for_s:
                self._fire(alert, now)
        if self._dirty:
            self._save_state()

    def _condition_failed(self, exc: Exception) -> None:
        self.stats.condition_errors += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
        if self.stats.condition_errors <= 10:
            log.exception("alerts: a condition failed")

    # ------------------------------------------------------------ life cycle

    def labels_for(self, alertname: str, severity: str, extra: dict[str, str]) -> dict[str, str]:
        labels = {"alertname": alertname, "severity": severity, "host": self.hostname}
        labels.update(extra)
        return labels

    def get(self, labels: dict[str, str]) -> Alert | None:
        return self.alerts.get(fingerprint(labels))

    def is_active(self, labels: dict[str, str]) -> bool:
        """Pending or firing: the condition's hysteresis uses the lower level to resolve."""
        return fingerprint(labels) in self.alerts

    def set_active(
        self,
        condition: str,
        labels: dict[str, str],
        active: bool,
        summary: str = "",
        description: str = "",
        for_s: float = 0.0,
        value: float | None = None,
    ) -> None:
        fp = fingerprint(labels)
        alert = self.alerts.get(fp)
        now = self.clock()
        if active:
            if alert is None:
                alert = Alert(condition, dict(labels),
                              {"summary": summary, "description": description},
                              now, for_s, value=value, fingerprint=fp)
                self.alerts[fp] = alert
            elif alert.state == "pending":
                alert.annotations = {"summary": summary, "description": description}
                alert.value = value
            alert.confirmed_at = now
            if alert.state == "pending" and now - alert.active_at >= alert.for_s:
                self._fire(alert, now)
            return
        if alert is None:
            return
        if alert.state == "pending":
            del self.alerts[fp]
            return
        self._resolve(alert, now)

    def _fire(self, alert: Alert, now: float) -> None:
        alert.state = "firing"
        alert.fired_at = now
        self.stats.fired += 1
        self.stats.by_condition[alert.condition] = (
            self.stats.by_condition.get(alert.condition, 0) + 1)
        log.warning("alert firing: %s %s: %s", alert.labels["alertname"],
                    _label_text(alert.labels), alert.annotations.get("summary", ""))
        self._emit(alert, now, firing=True)
        self._dirty = True

    def _resolve(self, alert: Alert, now: float) -> None:
        del self.alerts[alert.fingerprint]
        self.stats.resolved += 1
        log.info("alert resolved: %s %s", alert.labels["alertname"], _label_text(alert.labels))
        self._emit(alert, now, firing=False)
        self._dirty = True

    def _drop(self, alert: Alert, now: float) -> None:
        if alert.state == "firing":
            self._resolve(alert, now)
        else:
            self.alerts.pop(alert.fingerprint, None)

    def _emit(self, alert: Alert, now: float, firing: bool) -> None:
        tags = dict(alert.labels)
        tags["state"] = "firing" if firing else "resolved"
        fields: dict[str, Any] = {
            "firing": firing,
            "summary": alert.annotations.get("summary", ""),
            "description": alert.annotations.get("description", ""),
            "fingerprint": alert.fingerprint,
            "starts_at_ns": int(alert.active_at * 1e9),
            "ends_at_ns": 0 if firing else int(now * 1e9),
        }
        if alert.value is not None:
            fields["value"] = float(alert.value)
        try:
            self.emit([Point("alert", tags, fields, int(now * 1e9))])
        except Exception as exc:
            self._condition_failed(exc)

    # ------------------------------------------------------------ queries

    def active(self) -> list[dict[str, Any]]:
        """Pending and firing alerts, firing first, most severe first."""
        order = {"critical": 0, "warning": 1, "info": 2}
        alerts = sorted(
            self.alerts.values(),
            key=lambda a: (a.state != "firing", order.get(a.labels.get("severity", ""), 3),
                           a.active_at),
        )
        return [a.as_dict() for a in alerts]

    def status(self) -> dict[str, Any]:
        firing = sum(1 for a in self.alerts.values() if a.state == "firing")
        return {
            "firing": firing,
            "pending": len(self.alerts) - firing,
            "fired_total": self.stats.fired,
            "resolved_total": self.stats.resolved,
            "conditions": len(self.conditions),
            "condition_errors": self.stats.condition_errors,
            "state_write_errors": self.stats.state_write_errors,
            "last_error": self.stats.last_error,
            "active": [
                f"{a['state']} {a['labels'].get('severity')} {a['labels']['alertname']} "
                f"{_label_text(a['labels'])}: {a['annotations'].get('summary', '')}"
                for a in self.active()
            ],
        }

    # ------------------------------------------------------------ persistence

    def _load_state(self) -> None:
        if self.state_path is None:
            return
        try:
            data = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("alerts: %s unreadable (%s); starting without alert state",
                        self.state_path, exc)
            return
        for item in data.get("firing", []):
            try:
                alert = Alert(
                    condition=str(item["condition"]),
                    labels={str(k): str(v) for k, v in item["labels"].items()},
                    annotations={str(k): str(v) for k, v in item["annotations"].items()},
                    active_at=float(item["active_at"]),
                    for_s=float(item.get("for_s", 0.0)),
                    state="firing",
                    fired_at=float(item.get("fired_at", item["active_at"])),
                    value=item.get("value"),
                )
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
            alert.fingerprint = fingerprint(alert.labels)
            self.alerts[alert.fingerprint] = alert

    def _save_state(self) -> None:
        self._dirty = False
        if self.state_path is None:
            return
        firing = [a.as_dict() for a in self.alerts.values() if a.state == "firing"]
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            tmp = self.state_path.with_suffix(".tmp")
            with open(tmp, "w") as handle:
                json.dump({"version": 1, "firing": firing}, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.state_path)
        except OSError as exc:
            self.stats.state_write_errors += 1
            self.stats.last_error = f"state file: {exc}"
            log.error("alerts: cannot write %s: %s", self.state_path, exc)


def select_points(points: Sequence[Point], wanted: frozenset[str], filtered: str, tag: str,
                  values: frozenset[str]) -> list[Point]:
    """What agent/_lineproto.c `select` does, in Python: the points whose measurement is
    in `wanted`, and those of measurement `filtered` whose tag `tag` is in `values`."""
    out = []
    for point in points:
        if point.measurement == filtered:
            if point.tags.get(tag) in values:
                out.append(point)
        elif point.measurement in wanted:
            out.append(point)
    return out


def _label_text(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted(labels.items())
                           if k not in ("alertname", "severity", "host")) + "}"


class LagTracker:
    """How long an output has not delivered what the spool held: the age of the newest
    moment all of whose records the output has delivered (sampled; independent of the
    points' own timestamps, which may be old by design, e.g. a closed month's billing)."""

    def __init__(self, keep_s: float = 7 * 86400.0) -> None:
        self.keep_s = keep_s
        self._samples: list[tuple[float, int]] = []  # (time, spool next_seq then)

    def sample(self, now: float, next_seq: int) -> None:
        if not self._samples or self._samples[-1][1] != next_seq:
            self._samples.append((now, next_seq))
        while len(self._samples) > 2 and now - self._samples[1][0] > self.keep_s:
            self._samples.pop(0)

    def lag_s(self, now: float, cursor: int) -> float:
        """0 when caught up; else since when the oldest undelivered record is in the
        spool (the first sample whose head was past the cursor)."""
        for when, seq in self._samples:
            if seq > cursor:
                return max(0.0, now - when)
        return 0.0
