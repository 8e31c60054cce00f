"""`[agent]`: the agent's own settings (interval, spool, control socket, logging, which
collector groups run)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator

from agent.config.base import Section
from agent.config.types import (
    FilePath,
    NonEmptyStr,
    Size,
    choice,
    duration,
    to_str_list,
)
from agent.registry import collector_names


class AgentConfig(Section):
    hostname: NonEmptyStr = Field(default_factory=socket.gethostname)
    interval_s: Annotated[float, duration(0.1, 86400)] = 10.0
    data_dir: FilePath = Path("/var/lib/egress-agent")
    control_socket: FilePath = Path("/run/egress-agent/control.sock")
    spool_max_bytes: Size = 1 << 30
    retention_s: Annotated[float, duration(60, 366 * 86400)] = 7 * 86400.0
    fsync: Annotated[str, choice("batch", "interval", "never")] = "batch"
    fsync_interval_s: Annotated[float, duration(0.01, 60)] = 1.0  # with fsync = "interval"
    log_level: Annotated[str, choice("debug", "info", "warning", "error")] = "info"
    log_format: Annotated[str, choice("text", "json")] = "text"
    # The registered collector groups (collectors/__init__.py), all of them by default.
    collectors: tuple[str, ...] = Field(default_factory=collector_names)

    @field_validator("collectors", mode="plain")
    @classmethod
    def _known_collectors(cls, value: Any, info: ValidationInfo) -> tuple[str, ...]:
        names = to_str_list(value)
        known = collector_names()
        for name in names:
            if name not in known:
                raise ValueError(f"unknown collector {name!r} (known: {', '.join(known)})")
        return names
