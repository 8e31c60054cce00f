"""Real InfluxDB 1.6.7 and VictoriaMetrics servers for tests and the lab.

Each server is a child process with its data in its own directory, bound to loopback
(of the host, or of a named network namespace), waited on until it answers, and stopped
by PID. `stop()` then `start()` restarts it on the same port and data directory, so
outage tests can take a server away mid-run and bring it back with its data.
"""

from __future__ import annotations

import datetime
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPException
from pathlib import Path
from typing import Any, Self

from tests.lab.netns import in_netns, ns_argv, stop_process
from tests.lab.wait import TRANSIENT, NotYet, WaitTimeout, wait_until

# one request's failures that mean "not answering yet": refused, reset, timed out, or a
# connection closed before a whole response while the server starts
HTTP_TRANSIENT = (*TRANSIENT, HTTPException)

INFLUXD = "influxd"
VICTORIA_METRICS = "victoria-metrics"


class ServerError(RuntimeError):
    pass


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def binary_missing(name: str) -> str | None:
    """None if the binary is on PATH, else a reason to skip."""
    if shutil.which(name) is None:
        return f"{name} not installed (scripts/setup installs it)"
    return None


def http(method: str, url: str, data: bytes | None = None, netns: str | None = None,
         timeout: float = 10.0, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One HTTP request (from inside `netns` when given); returns (status, body)."""

    def go() -> tuple[int, bytes]:
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    return in_netns(netns, go)


class _Server:
    """Common life cycle: argv from subclass, readiness by URL, stop by PID."""

    name = "server"
    ready_path = "/"

    def __init__(self, data_dir: Path | str | None = None, port: int | None = None,
                 host: str = "127.0.0.1", netns: str | None = None,
                 log_file: Path | str | None = None) -> None:
        self._own_dir = data_dir is None
        self.data_dir = (Path(data_dir) if data_dir
                         else Path(tempfile.mkdtemp(prefix=f"{self.name}-")))
        self.host = host
        self.netns = netns
        self.port = port if port is not None else (self.default_port if netns else free_port())
        self.log_file = Path(log_file) if log_file else self.data_dir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None

    default_port = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def argv(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self) -> None:
        pass

    def start(self, timeout: float = 20.0) -> None:
        """Start (or restart on the same port and data dir) and wait until it answers."""
        if self.running():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare()
        log = open(self.log_file, "ab")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(ns_argv(self.netns, self.argv()), stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        finally:
            log.close()
        self.pid = self.proc.pid
        proc = self.proc

        def answers(left: float) -> bool:
            if proc.poll() is not None:
                tail = self.log_file.read_text(errors="replace")[-2000:]
                raise ServerError(f"{self.name} exited with {proc.returncode}: {tail}")
            status, body = http("GET", self.url + self.ready_path, netns=self.netns,
                                timeout=min(1.0, left))
            if status < 300:
                return True
            raise NotYet(f"HTTP {status}: {body[:300]!r}")

        try:
            wait_until(answers, timeout, f"{self.name} to answer GET {self.url}{self.ready_path}",
                       transient=HTTP_TRANSIENT)
        except WaitTimeout:
            self.stop()
            raise

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM by PID, SIGKILL after `timeout`; data dir and port stay for a restart."""
        stop_process(self.proc, timeout)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL by PID (a crash, not a clean stop)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @classmethod
    def attach(cls, port: int | None = None, netns: str | None = None,
               host: str = "127.0.0.1") -> Self:
        """A handle on a server someone else runs (query helpers only; no start/stop)."""
        server = cls.__new__(cls)
        _Server.__init__(server, data_dir="/nonexistent", port=port or cls.default_port,
                         host=host, netns=netns)
        return server

    def close(self) -> None:
        """Stop and, if we made the data dir, remove it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> _Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, params: dict[str, str] | list[tuple[str, str]] | None = None,
             timeout: float = 30.0) -> bytes:
        query = "?" + urllib.parse.urlencode(params) if params else ""
        status, body = http("GET", self.url + path + query, netns=self.netns, timeout=timeout)
        if status >= 300:
            raise ServerError(f"GET {path}: HTTP {status}: {body[:500]!r}")
        return body

    def _post(self, path: str, data: bytes, params: dict[str, str] | None = None,
              headers: dict[str, str] | None = None, timeout: float = 30.0) -> bytes:
        query = "?" + urllib.parse.urlencode(params) if params else ""
        status, body = http("POST", self.url + path + query, data=data, netns=self.netns,
                            timeout=timeout, headers=headers)
        if status >= 300:
            raise ServerError(f"POST {path}: HTTP {status}: {body[:500]!r}")
        return body


class InfluxDBv1(_Server):
    """InfluxDB 1.6.7 (`influxd -config FILE`): /write and InfluxQL /query."""

    name = "influxd"
    ready_path = "/ping"
    default_port = 8086

    def __init__(self, *args: Any, rpc_port: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rpc_port = rpc_port if rpc_port is not None else (
            8088 if self.netns else free_port())
        self.config_file = self.data_dir / "influxdb.conf"

    def _prepare(self) -> None:
        d = self.data_dir
        self.config_file.write_text(f"""\
reporting-disabled = true
bind-address = "{self.host}:{self.rpc_port}"
[meta]
  dir = "{d}/meta"
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
[http]
  enabled = true
  bind-address = "{self.host}:{self.port}"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[logging]
  level = "warn"
""")

    def argv(self) -> list[str]:
        return [INFLUXD, "-config", str(self.config_file)]

    def query(self, q: str, db: str | None = None, epoch: str = "ns") -> list[dict[str, Any]]:
        """Run InfluxQL; rows as dicts (columns → values) plus `_measurement` and `_tags`."""
        params = {"q": q, "epoch": epoch}
        if db:
            params["db"] = db
        body = json.loads(self._post("/query", urllib.parse.urlencode(params).encode(),
                                     headers={"Content-Type":
                                              "application/x-www-form-urlencoded"}))
        rows: list[dict[str, Any]] = []
        for result in body.get("results", []):
            if "error" in result:
                raise ServerError(f"InfluxQL error: {result['error']} (query: {q})")
            for series in result.get("series", []):
                for values in series.get("values", []):
                    row = dict(zip(series["columns"], values, strict=False))
                    row["_measurement"] = series.get("name")
                    row["_tags"] = series.get("tags", {})
                    rows.append(row)
        return rows

    def create_database(self, db: str) -> None:
        self.query(f'CREATE DATABASE "{db}"')

    def drop_database(self, db: str) -> None:
        self.query(f'DROP DATABASE "{db}"')

    def write(self, db: str, lines: str | bytes, precision: str = "ns") -> None:
        data = lines.encode() if isinstance(lines, str) else lines
        self._post("/write", data, params={"db": db, "precision": precision})

    def count(self, db: str, measurement: str, field: str) -> int:
        rows = self.query(f'SELECT count("{field}") FROM "{measurement}"', db=db)
        return int(rows[0]["count"]) if rows else 0


class VictoriaMetrics(_Server):
    """VictoriaMetrics: accepts influxdb-client writes on /api/v2/write; query by export."""

    name = "victoria-metrics"
    ready_path = "/health"
    default_port = 8428

    def argv(self) -> list[str]:
        return [
            VICTORIA_METRICS,
            f"-httpListenAddr={self.host}:{self.port}",
            f"-storageDataPath={self.data_dir / 'data'}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=1s",
            "-search.disableCache",
            "-loggerLevel=ERROR",
        ]

    def flush(self, timeout: float = 30.0) -> None:
        """Make just-written samples searchable (/internal/force_flush)."""
        self._get("/internal/force_flush", timeout=timeout)

    def export(self, match: str | list[str], start: str | None = None,
               end: str | None = None, min_samples: int = 1,
               wait_s: float = 5.0) -> list[dict[str, Any]]:
        """/api/v1/export for one or more series selectors (e.g. `{__name__=~"probe_.*"}`
        or `probe_rtt_avg_ms{carrier="telecom"}`): one dict per series with `metric`
        (labels incl. __name__ = measurement_field), `values` and `timestamps` (ms).

        Samples take ~0.2 s from a write to export even after /internal/force_flush, so
        this polls until at least `min_samples` samples in total are there or `wait_s`
        passes (then returns what there is; pass min_samples=0 for one plain read). A
        request that times out or finds the server not answering is retried until then;
        if none got an answer, WaitTimeout says why."""
        matches = [match] if isinstance(match, str) else match
        params: list[tuple[str, str]] = [("match[]", m) for m in matches]
        if start:
            params.append(("start", start))
        if end:
            params.append(("end", end))

        def read(timeout: float) -> list[dict[str, Any]]:
            end = time.monotonic() + timeout
            self.flush(timeout)
            body = self._get("/api/v1/export", params,
                             timeout=max(end - time.monotonic(), 0.001))
            return [json.loads(line) for line in body.decode().splitlines() if line.strip()]

        if wait_s <= 0:
            return read(30.0)
        last: list[list[dict[str, Any]]] = []

        def enough(left: float) -> tuple[list[dict[str, Any]]]:
            series = read(left)
            last[:] = [series]
            samples = sum(len(s["values"]) for s in series)
            if samples >= min_samples:
                return (series,)  # truthy even when empty (min_samples=0)
            raise NotYet(f"{samples} samples in {len(series)} series")

        try:
            (series,) = wait_until(enough, wait_s, f"{min_samples} samples of {matches} in "
                                   f"{self.name}", interval_s=0.1, transient=HTTP_TRANSIENT)
        except WaitTimeout:
            if not last:
                raise
            return last[0]  # what there is
        return series

    def query(self, promql: str, time_s: float | None = None) -> list[dict[str, Any]]:
        """Instant /api/v1/query (fresh points only after -search.latencyOffset, 1 s here)."""
        params = {"query": promql}
        if time_s is not None:
            params["time"] = str(time_s)
        body = json.loads(self._get("/api/v1/query", params))
        if body.get("status") != "success":
            raise ServerError(f"query failed: {body}")
        return list(body["data"]["result"])

    def series_names(self) -> list[str]:
        body = json.loads(self._get("/api/v1/label/__name__/values"))
        return list(body.get("data", []))

    def write_influx(self, lines: str | bytes) -> None:
        """Line protocol via the InfluxDB 1.x-style /write endpoint of VictoriaMetrics."""
        data = lines.encode() if isinstance(lines, str) else lines
        self._post("/write", data)



ALERTMANAGER = "prometheus-alertmanager"


class WebhookReceiver:
    """A small HTTP server of the test: every JSON body POSTed to it, in order (`bodies`).
    Alertmanager's webhook receiver, or the agent's own `[outputs.webhook]`."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        import http.server
        import threading

        received: list[dict[str, Any]] = []
        lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = {"_raw": body.decode("utf-8", "replace")}
                with lock:
                    received.append(parsed)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.bodies = received
        self._lock = lock
        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://{host}:{self.port}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="webhook-receiver")
        self._thread.start()

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert of every payload received, each with the payload's status."""
        with self._lock:
            return [alert for body in self.bodies for alert in body.get("alerts", [])]

    @staticmethod
    def started_s(alert: dict[str, Any]) -> float:
        """When the alert's condition became true (its startsAt), Unix seconds."""
        return datetime.datetime.fromisoformat(alert["startsAt"]).timestamp()

    def wait_for(self, alertname: str, status: str, timeout: float = 20.0,
                 started_after_s: float | None = None, **labels: str) -> dict[str, Any]:
        """The first alert received with that name, status and labels; with
        `started_after_s`, only one whose condition became true after that time."""
        def found() -> dict[str, Any] | None:
            for alert in self.alerts():
                got = alert.get("labels", {})
                if (got.get("alertname") == alertname and alert.get("status") == status
                        and all(got.get(k) == v for k, v in labels.items())
                        and (started_after_s is None
                             or self.started_s(alert) >= started_after_s)):
                    return alert
            return None

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alert = found()
            if alert is not None:
                return alert
            time.sleep(0.05)
        raise TimeoutError(f"no {status} {alertname} {labels} at the receiver within "
                          f"{timeout}s; got {self.alerts()}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Alertmanager(_Server):
    """Prometheus Alertmanager (Debian `prometheus-alertmanager`), clustering off, routing
    every alert at once (group_wait 100ms, group_interval 1s) to one webhook receiver."""

    name = "alertmanager"
    ready_path = "/-/ready"
    default_port = 9093

    def __init__(self, *args: Any, webhook_url: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.webhook_url = webhook_url
        self.config_file = self.data_dir / "alertmanager.yml"

    def _prepare(self) -> None:
        self.config_file.write_text(f"""\
route:
  receiver: test
  group_by: ['...']
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: test
    webhook_configs:
      - url: "{self.webhook_url}"
        send_resolved: true
""")

    def argv(self) -> list[str]:
        return [ALERTMANAGER, f"--config.file={self.config_file}",
                f"--storage.path={self.data_dir / 'data'}",
                f"--web.listen-address={self.host}:{self.port}",
                "--cluster.listen-address=", "--log.level=warn"]

    def alerts(self, active_only: bool = False) -> list[dict[str, Any]]:
        """GET /api/v2/alerts: what Alertmanager holds now."""
        params = {"active": "true", "silenced": "false", "inhibited": "false"} \
            if active_only else None
        return list(json.loads(self._get("/api/v2/alerts", params)))
