"""InfluxDB 1.x `/write` over one persistent HTTP connection (the 1.x escaping rules)."""

from __future__ import annotations

import base64
import gzip
import http.client
import urllib.parse
from pathlib import Path

from agent.config import InfluxDBv1Config
from agent.logsetup import register_secret
from agent.outputs.base import Output, RetryableWriteError, classify_status, redact


def read_secret(path: Path | None) -> str | None:
    """Read a token or password file; the value is registered so no log line can carry it."""
    if path is None:
        return None
    secret = path.read_text().strip()
    if secret:
        register_secret(secret)
    return secret


class InfluxDBv1Output(Output):
    protocol_version = 1

    def __init__(self, config: InfluxDBv1Config, name: str = "influxdb_v1") -> None:
        super().__init__()
        self.name = name
        self.config = config
        self.batch_size = config.batch_size
        self.max_retry_delay_s = config.max_retry_delay_s
        parsed = urllib.parse.urlsplit(config.url)
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname or "127.0.0.1"
        self._port = parsed.port or (443 if self._https else 80)
        query = {"db": config.database, "precision": "ns"}
        if config.retention_policy:
            query["rp"] = config.retention_policy
        self._path = (parsed.path.rstrip("/") or "") + "/write?" + urllib.parse.urlencode(query)
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if config.username:
            password = read_secret(config.password_file) or ""
            token = base64.b64encode(f"{config.username}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        if config.gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self.config.timeout_s)
        return self._conn

    def send(self, body: bytes) -> None:
        if self.config.gzip:
            body = gzip.compress(body, compresslevel=1)
        try:
            conn = self._connection()
            conn.request("POST", self._path, body=body, headers=self._headers)
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            self.close()
            raise RetryableWriteError(redact(f"{type(exc).__name__}: {exc}")) from None
        outcome = classify_status(response.status, text, response.getheader("Retry-After"))
        if outcome is not None:
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            raise outcome

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
