"""The daemon's collector groups across a reload, in process: what a factory built is kept
with its group, a kept group's context gets the new config, a changed slice rebuilds a group
whose collectors cannot take it in place (Collector.reconfigure is False by default)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.config import load_config
from agent.daemon import Agent

TEXT = """
[agent]
hostname = "{hostname}"
interval = "{interval}"
data_dir = "{tmp}/data"
control_socket = "{tmp}/control.sock"
collectors = ["host", "links"]
"""


def test_reload_keeps_or_rebuilds_groups_by_their_slice(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"

    def write(hostname: str, interval: str) -> None:
        path.write_text(TEXT.format(hostname=hostname, interval=interval, tmp=tmp_path))

    async def scenario() -> None:
        write("edge-1", "10s")
        agent = Agent(load_config(path))
        await agent.start()
        try:
            host_ctx, host_built = agent.groups["host"]
            assert set(agent.status_providers) == {"links"}
            assert "links" in agent.status()
            write("edge-2", "10s")  # nothing a group reads: every group kept
            assert await agent.reload()
            assert agent.groups["host"] == (host_ctx, host_built)
            assert host_ctx.config.agent.hostname == "edge-2"
            assert host_built.collectors[0].ctx is host_ctx
            write("edge-2", "5s")  # every group reads the interval: rebuilt
            assert await agent.reload()
            ctx, built = agent.groups["host"]
            assert built is not host_built and ctx.config.agent.interval_s == 5.0
            assert set(agent.status_providers) == {"links"}
        finally:
            await agent.stop()

    asyncio.run(scenario())
