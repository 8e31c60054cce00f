"""`[outputs.*]`: where points and alerts go (InfluxDB 2 and 1.x, Prometheus, Alertmanager,
a webhook). Secrets are never in the file itself, only the path of a file holding them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, PlainValidator

from agent.config.base import Section
from agent.config.types import (
    Bool,
    FilePath,
    Listen,
    NonEmptyStr,
    Url,
    UrlList,
    duration,
    int_range,
)

Timeout = Annotated[float, duration(0.1, 600)]
RetryDelay = Annotated[float, duration(0.1, 3600)]


def refused_secret(key: str, where: str) -> PlainValidator:
    """A key that is always refused: the secret itself in the config (it would end up in
    backups, diffs and `ps`); only the file holding it is named. The value is never shown."""

    def refuse(_value: Any) -> None:
        raise ValueError(f"put the {key} in {where}, not in the config")

    return PlainValidator(refuse)


class _Retried(Section):
    """Keys every output that sends requests shares."""

    timeout_s: Timeout = 10.0
    max_retry_delay_s: RetryDelay = 60.0


class _Batched(_Retried):
    batch_size: Annotated[int, int_range(1, 1_000_000)] = 5000


class InfluxDBConfig(_Batched):
    url: Url
    org: NonEmptyStr
    bucket: NonEmptyStr
    token: Annotated[None, refused_secret("token", "token_file or $INFLUX_TOKEN")] = Field(
        default=None, exclude=True, repr=False)
    token_file: FilePath | None = None
    gzip: Bool = True


class InfluxDBv1Config(_Batched):
    url: Url
    database: NonEmptyStr
    retention_policy: NonEmptyStr | None = None
    username: NonEmptyStr | None = None
    password: Annotated[None, refused_secret("password", "password_file")] = Field(
        default=None, exclude=True, repr=False)
    password_file: FilePath | None = None
    gzip: Bool = False


class PrometheusConfig(Section):
    listen: Listen = "127.0.0.1:9273"


class AlertmanagerConfig(_Retried):
    urls: UrlList
    resend_interval_s: Annotated[float, duration(1, 3600)] = 60.0


class WebhookConfig(_Retried):
    url: Url
    receiver: NonEmptyStr = "egress-agent"


class OutputsConfig(Section):
    influxdb: InfluxDBConfig | None = None
    influxdb_v1: InfluxDBv1Config | None = None
    prometheus: PrometheusConfig | None = None
    alertmanager: AlertmanagerConfig | None = None
    webhook: WebhookConfig | None = None
