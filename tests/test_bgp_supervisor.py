"""Supervision without the lab: back-off, sessions marked down, a leftover ExaBGP stopped.

ExaBGP itself cannot fail on cue here, so a stand-in script plays an ExaBGP that answers
its version and then dies at once (what a broken install or config does); everything else
(the supervisor, its asyncio child handling, pid file, bridge socket) is the real code.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pwd
import subprocess
import sys
import time
from pathlib import Path

from agent.collector import CollectorContext
from agent.config import parse_config
from collectors.bgp import BgpStreamCollector, create


def make_ctx(tmp_path: Path, exabgp: str) -> CollectorContext:
    config = parse_config({
        "agent": {"hostname": "t"},
        "carriers": [{"name": "telecom", "interface": "x", "bgp": {
            "peer": "192.0.2.1", "peer_as": 4134, "local_address": "192.0.2.2"}}],
        "bgp": {"local_as": 64512, "router_id": "192.0.2.2", "announce": ["198.51.100.0/24"],
                "exabgp": exabgp},
    })
    return CollectorContext(config, lambda points: None, tmp_path / "data")


def test_crashing_exabgp_is_restarted_with_back_off(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    stand_in = tmp_path / "exabgp"
    stand_in.write_text(
        "#!/bin/sh\n"
        'case "$1" in --version) echo "ExaBGP : 5.0.15"; exit 0;; esac\n'
        f'echo "$(date +%s.%N) $*" >> {starts}\n'
        'echo "configuration error" ; exit 3\n')
    stand_in.chmod(0o755)
    ctx = make_ctx(tmp_path, str(stand_in))
    stream = next(c for c in create(ctx) if isinstance(c, BgpStreamCollector))

    seen: dict[str, object] = {}

    async def run_for(seconds: float) -> None:
        task = asyncio.ensure_future(stream.run())
        await asyncio.sleep(seconds)
        seen.update(stream.supervisor.status())
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(run_for(6.5))
    times = [float(line.split()[0]) for line in starts.read_text().splitlines()]
    # starts at 0, ~1, ~3 (back-off 1 s, 2 s; the next would be at ~7 after 4 s)
    assert len(times) == 3, times
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 0.9 < gaps[0] < 2.5 and 1.9 < gaps[1] < 3.5, gaps  # 1 s, then doubled
    assert seen["restarts"] == 3 and seen["last_exit"] == "exited with code 3"
    assert seen["running"] is False
    assert "configuration error" in " ".join(seen["log_tail"])  # type: ignore[arg-type]
    assert stream.state.sessions["telecom"].state == "exabgp_down"
    # its generated files: absolute env path, user not dropped, adj-rib-in off
    run_dir = tmp_path / "data" / "bgp"
    command = starts.read_text().splitlines()[0].split()[1:]
    assert command[:2] == ["--env-file", str(run_dir / "exabgp.env")]
    env = (run_dir / "exabgp.env").read_text()
    assert "drop = false" in env and f"user = '{pwd.getpwuid(os.geteuid()).pw_name}'" in env
    conf = (run_dir / "exabgp.conf").read_text()
    assert "adj-rib-in false;" in conf and "route 198.51.100.0/24 next-hop self;" in conf
    assert "receive { parsed; update; notification; }" in conf and "neighbor-changes;" in conf


def test_leftover_exabgp_of_a_killed_agent_is_stopped(tmp_path: Path) -> None:
    run_dir = tmp_path / "data" / "bgp"
    run_dir.mkdir(parents=True)
    conf = run_dir / "exabgp.conf"
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                                 str(conf)])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run_dir / "exabgp.pid").write_text(f"{leftover.pid}\n")
        ctx = make_ctx(tmp_path, "/bin/false")
        stream = next(c for c in create(ctx) if isinstance(c, BgpStreamCollector))
        stream.supervisor.run_dir = run_dir
        stream.supervisor._stop_leftover()
        assert leftover.wait(5) is not None
        # a pid file naming some other process (pid reuse) is left alone
        (run_dir / "exabgp.pid").write_text(f"{other.pid}\n")
        stream.supervisor._stop_leftover()
        time.sleep(0.2)
        assert other.poll() is None
    finally:
        for proc in (leftover, other):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
