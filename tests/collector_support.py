"""A collector's context as the daemon gives it (200 ms interval), emitting into a test's
pipeline: for the scheduler tests and the stop-bound tests."""

from __future__ import annotations

from pathlib import Path

from agent.collector import CollectorContext
from agent.config import parse_config
from agent.pipeline import Pipeline


def make_ctx(tmp_path: Path, pipeline: Pipeline) -> CollectorContext:
    config = parse_config({"agent": {"data_dir": str(tmp_path), "interval": "200ms"}})
    return CollectorContext(config=config, emit=pipeline.emit, data_dir=tmp_path)
