"""Alert outputs: Prometheus Alertmanager (API v2) and a plain webhook.

Both are ordinary outputs of the spool (agent/outputs/base.py): the worker hands them every
batch from their durable cursor, they pick out the `alert` lines (state changes written by
the alert engine, agent/alerts/engine.py) and ignore the rest. An unreachable server is a
retryable error, so the batch stays in the spool and is delivered when the server is back:
an outage delays alerts, loses none, and shows as the output's lag and retries in
`status` and `agent_output`.

Alertmanager: firing alerts are POSTed with `endsAt` = now + 4 x resend_interval and
re-sent every resend_interval (as Prometheus does) by a thread of the output, from the set
of firing alerts it has delivered (kept in `<data_dir>/alerts/<output>.active.json`, so a
restart keeps re-sending); a resolved alert is sent once with `endsAt` = when it resolved.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.config import AlertmanagerConfig, WebhookConfig
from agent.lineproto import parse_line
from agent.outputs.base import Output, RetryableWriteError, classify_status, redact

log = logging.getLogger(__name__)

_PREFIX = b"alert,"
ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def alert_lines(body: bytes) -> list[bytes]:
    """The `alert` lines of a batch, found with bytes.find (a batch of other points costs a
    scan at memchr speed, no split)."""
    lines = []
    start = 0 if body.startswith(_PREFIX) else body.find(b"\n" + _PREFIX)
    while start != -1:
        if body[start:start + 1] == b"\n":
            start += 1
        end = body.find(b"\n", start)
        lines.append(body[start:] if end == -1 else body[start:end])
        if end == -1:
            break
        start = body.find(b"\n" + _PREFIX, end)
    return lines


def state_changes(body: bytes) -> list[dict[str, Any]]:
    """Each alert state change of a batch as Alertmanager's alert object (plus `firing`)."""
    changes = []
    for line in alert_lines(body):
        try:
            point = parse_line(line.decode("utf-8", "replace"))
        except (ValueError, IndexError):
            continue
        labels = {k: v for k, v in point.tags.items() if k != "state"}
        fields = point.fields
        firing = bool(fields.get("firing"))
        starts_ns = int(fields.get("starts_at_ns", point.time_ns) or point.time_ns)
        ends_ns = int(fields.get("ends_at_ns", 0) or 0)
        changes.append({
            "labels": labels,
            "annotations": {"summary": str(fields.get("summary", "")),
                            "description": str(fields.get("description", ""))},
            "startsAt": rfc3339(starts_ns),
            "endsAt": ZERO_TIME if firing else rfc3339(ends_ns or point.time_ns),
            "fingerprint": str(fields.get("fingerprint", "")),
            "firing": firing,
        })
    return changes


def _post_json(url: str, payload: Any, timeout_s: float) -> None:
    data = json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method="POST",  # noqa: S310
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            status, text, retry_after = response.status, response.read().decode(
                "utf-8", "replace"), response.headers.get("Retry-After")
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode("utf-8", "replace")
        retry_after = exc.headers.get("Retry-After") if exc.headers else None
    except (TimeoutError, OSError) as exc:
        raise RetryableWriteError(redact(f"{url}: {type(exc).__name__}: {exc}")) from None
    outcome = classify_status(status, text, retry_after)
    if outcome is not None:
        raise outcome


class AlertmanagerOutput(Output):
    batch_size = 50_000

    def __init__(self, config: AlertmanagerConfig, data_dir: Path,
                 name: str = "alertmanager") -> None:
        super().__init__()
        self.name = name
        self.config = config
        self.max_retry_delay_s = config.max_retry_delay_s
        self.active_path = Path(data_dir) / "alerts" / f"{name}.active.json"
        self.active: dict[str, dict[str, Any]] = self._load_active()
        self.resends = 0
        self.resend_errors = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._resender, name=f"{name}:resend",
                                        daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ state changes

    def send(self, body: bytes) -> None:
        changes = state_changes(body)
        if not changes:
            return
        now_ns = time.time_ns()
        ends = rfc3339(now_ns + int(4 * self.config.resend_interval_s * 1e9))
        alerts = []
        for change in changes:
            alert = {k: v for k, v in change.items() if k not in ("firing", "fingerprint")}
            if change["firing"]:
                alert["endsAt"] = ends
            alerts.append(alert)
        self._post_all(alerts)
        self.cursor_urgent = True  # a crash now must not notify them again
        with self._lock:
            for change in changes:
                if change["firing"]:
                    self.active[change["fingerprint"]] = {
                        k: change[k] for k in ("labels", "annotations", "startsAt")}
                else:
                    self.active.pop(change["fingerprint"], None)
            self._save_active()

    def _post_all(self, alerts: list[dict[str, Any]]) -> None:
        """Every URL (an HA pair gets every alert); any failure keeps the batch (a re-post
        to one that took it is harmless: Alertmanager merges by label set)."""
        errors = []
        for url in self.config.urls:
            try:
                _post_json(url + "/api/v2/alerts", alerts, self.config.timeout_s)
            except RetryableWriteError as exc:
                errors.append(str(exc))
        if errors:
            raise RetryableWriteError("; ".join(errors))

    # ------------------------------------------------------------ re-sending

    def _resender(self) -> None:
        self._check_reachable()
        while not self._stop.wait(self.config.resend_interval_s):
            self.resend_once()

    def _check_reachable(self) -> None:
        for url in self.config.urls:
            try:
                with urllib.request.urlopen(url + "/-/ready",  # noqa: S310
                                            timeout=self.config.timeout_s):
                    pass
            except (OSError, urllib.error.URLError) as exc:
                log.warning("output %s: %s not reachable at start (%s); alerts are kept "
                            "and delivered when it is", self.name, url, redact(str(exc)))

    def resend_once(self) -> None:
        with self._lock:
            active = [dict(a) for a in self.active.values()]
        if not active:
            return
        ends = rfc3339(time.time_ns() + int(4 * self.config.resend_interval_s * 1e9))
        for alert in active:
            alert["endsAt"] = ends
        try:
            self._post_all(active)
            self.resends += 1
        except Exception as exc:
            self.resend_errors += 1
            log.warning("output %s: re-sending %d firing alerts failed: %s", self.name,
                        len(active), redact(str(exc)))

    # ------------------------------------------------------------ persistence

    def _load_active(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.active_path.read_text())
            return {str(k): v for k, v in data.items() if isinstance(v, dict)}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("output %s: %s unreadable (%s)", self.name, self.active_path, exc)
            return {}

    def _save_active(self) -> None:
        try:
            self.active_path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            tmp = self.active_path.with_suffix(".tmp")
            with open(tmp, "w") as handle:
                json.dump(self.active, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.active_path)
        except OSError as exc:
            log.error("output %s: cannot write %s: %s", self.name, self.active_path, exc)

    def close(self) -> None:
        self._stop.set()


class WebhookOutput(Output):
    """One JSON POST per alert state change, in Alertmanager's webhook payload shape."""

    batch_size = 50_000

    def __init__(self, config: WebhookConfig, name: str = "webhook") -> None:
        super().__init__()
        self.name = name
        self.config = config
        self.max_retry_delay_s = config.max_retry_delay_s
        # (checksum of the batch, changes of it already posted): a retry of the batch does
        # not post those again
        self._progress: tuple[int, int] = (0, 0)

    def send(self, body: bytes) -> None:
        changes = state_changes(body)
        if not changes:
            return
        checksum = zlib.crc32(body)
        done = self._progress[1] if self._progress[0] == checksum else 0
        for index in range(done, len(changes)):
            _post_json(self.config.url, self.payload(changes[index]), self.config.timeout_s)
            self._progress = (checksum, index + 1)
        self._progress = (0, 0)
        self.cursor_urgent = True  # a crash now must not notify them again

    def payload(self, change: dict[str, Any]) -> dict[str, Any]:
        status = "firing" if change["firing"] else "resolved"
        alert = {k: v for k, v in change.items() if k != "firing"}
        alert["status"] = status
        alert["generatorURL"] = ""
        labels = change["labels"]
        group = "{}:{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
        return {
            "version": "4",
            "groupKey": group,
            "truncatedAlerts": 0,
            "status": status,
            "receiver": self.config.receiver,
            "groupLabels": {"alertname": labels.get("alertname", "")},
            "commonLabels": labels,
            "commonAnnotations": change["annotations"],
            "externalURL": "",
            "alerts": [alert],
        }
