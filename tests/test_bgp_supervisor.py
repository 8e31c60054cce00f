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
import socket
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
    stream = next(c for c in create(ctx).collectors if isinstance(c, BgpStreamCollector))

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
        # Until the child has exec'd, /proc shows the parent's command line (a loaded CI
        # machine took seconds once): wait for the one the supervisor recognises.
        deadline = time.monotonic() + 10
        while str(conf).encode() not in Path(f"/proc/{leftover.pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline, "the stand-in never exec'd"
            time.sleep(0.01)
        (run_dir / "exabgp.pid").write_text(f"{leftover.pid}\n")
        ctx = make_ctx(tmp_path, "/bin/false")
        stream = next(c for c in create(ctx).collectors if isinstance(c, BgpStreamCollector))
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


def test_lines_of_a_finished_run_are_never_applied(tmp_path: Path) -> None:
    """A bridge of an older generation is refused, and what the current bridge still
    relays after its ExaBGP stopped is dropped (no stale route survives the restart)."""
    from collectors.bgp.supervisor import Supervisor, _BridgeProtocol

    ctx = make_ctx(tmp_path, "/bin/false")
    state = next(c for c in create(ctx).collectors if isinstance(c, BgpStreamCollector)).state
    emitted: list[object] = []
    supervisor = Supervisor(ctx.config, state, emitted.extend, tmp_path)
    peer = '{"address": {"peer": "192.0.2.1"}'
    up = f'{{"type": "state", "neighbor": {peer}, "state": "up"}}}}\n'.encode()
    update = (f'{{"type": "update", "neighbor": {peer}, "message": {{"update": {{'
              '"attribute": {"as-path": [4134]}, "announce": {"ipv4 unicast": '
              '{"192.0.2.1": [{"nlri": "10.0.0.0/8"}]}}}}}}\n').encode()

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        supervisor.generation = 2
        supervisor.process = object()  # type: ignore[assignment]  # "ExaBGP runs"
        # a bridge of generation 1 (a previous run): closed, nothing applied
        old_a, old_b = socket.socketpair()
        await loop.connect_accepted_socket(lambda: _BridgeProtocol(supervisor), old_a)
        old_b.sendall(b'{"bridge": 1, "pid": 1}\n' + up + update)
        await asyncio.sleep(0.1)
        assert old_b.recv(10) == b"" and supervisor.bridge is None
        assert not state.sessions["telecom"].up
        # the current one: applied
        a, b = socket.socketpair()
        await loop.connect_accepted_socket(lambda: _BridgeProtocol(supervisor), a)
        b.sendall(b'{"bridge": 2, "pid": 2}\n' + up + update)
        await asyncio.sleep(0.1)
        assert state.sessions["telecom"].up and len(state.sessions["telecom"].rib) == 1
        # a second bridge of the same run (ExaBGP respawned it: lines were lost): refused,
        # and ExaBGP is to be restarted
        again_a, again_b = socket.socketpair()
        await loop.connect_accepted_socket(lambda: _BridgeProtocol(supervisor), again_a)
        again_b.sendall(b'{"bridge": 2, "pid": 3}\n' + update.replace(b"10.0.0.0/8", b"11.0.0.0/8"))
        await asyncio.sleep(0.1)
        assert again_b.recv(10) == b"" and supervisor._restart_now.is_set()
        assert len(state.sessions["telecom"].rib) == 1
        again_b.close()
        # ExaBGP stops; the bridge's tail arrives afterwards: dropped
        supervisor.last_exit = "exited with code -9"
        supervisor._end_run()
        assert len(state.sessions["telecom"].rib) == 0
        with contextlib.suppress(OSError):
            b.sendall(up + update)
        await asyncio.sleep(0.1)
        assert not state.sessions["telecom"].up and len(state.sessions["telecom"].rib) == 0
        for sock in (old_b, b):
            sock.close()

    asyncio.run(scenario())
    assert state.stats.bad_lines == 0
