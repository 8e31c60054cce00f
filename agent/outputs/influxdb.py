"""`/api/v2/write` through influxdb-client (InfluxDB 2.x, 3.x, 1.8+, VictoriaMetrics).

The client is used only for the HTTP write (SYNCHRONOUS, its own retries off): its batching
layer is slow and drops a batch after its retries, so batching and retries stay in the
agent's spool and worker.
"""

from __future__ import annotations

import os
from typing import Any

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from agent.config import InfluxDBConfig
from agent.logsetup import register_secret
from agent.outputs.base import Output, RetryableWriteError, classify_status, redact
from agent.outputs.influxdb_v1 import read_secret


def resolve_token(config: InfluxDBConfig) -> str:
    token = read_secret(config.token_file) if config.token_file else None
    token = token or os.environ.get("INFLUX_TOKEN", "")
    if token:
        register_secret(token)
    return token


class InfluxDBOutput(Output):
    protocol_version = 2

    def __init__(self, config: InfluxDBConfig, name: str = "influxdb") -> None:
        super().__init__()
        self.name = name
        self.config = config
        self.batch_size = config.batch_size
        self.max_retry_delay_s = config.max_retry_delay_s
        self._client = InfluxDBClient(
            url=config.url,
            token=resolve_token(config),
            org=config.org,
            timeout=int(config.timeout_s * 1000),
            enable_gzip=config.gzip,
            retries=False,
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    def send(self, body: bytes) -> None:
        try:
            self._write_api.write(
                bucket=self.config.bucket,
                org=self.config.org,
                record=body,
                write_precision=WritePrecision.NS,  # type: ignore[arg-type]
            )
        except ApiException as exc:
            headers: Any = exc.headers or {}
            outcome = classify_status(
                int(exc.status or 0), str(exc.body or exc.reason or ""),
                headers.get("Retry-After") if hasattr(headers, "get") else None,
            )
            raise (outcome or RetryableWriteError(f"HTTP {exc.status}")) from None
        except Exception as exc:  # urllib3 connection errors, timeouts
            raise RetryableWriteError(redact(f"{type(exc).__name__}: {exc}")) from None

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]
