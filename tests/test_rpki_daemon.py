"""[bgp.rpki] in the real daemon (`egress-agent run`, as tests/daemonproc.py runs it):
`egress-agent status` shows the VRP source, count and serial; a reload that changes only
`[bgp.rpki]` swaps the source without restarting ExaBGP (no session is touched)."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent.control import call
from tests.daemonproc import (
    STOP_LIMIT_S,
    Notifications,
    bgp_config,
    exabgp_pids,
    reload_and_wait,
    start_with_exabgp,
)
from tests.rpki_support import VRPS, roas_json


def with_rpki(text: str, vrp_file: Path) -> str:
    """The config with a [bgp.rpki] table (after everything: a sub-table of [bgp])."""
    return text + f'\n[bgp.rpki]\nvrp_file = "{vrp_file}"\nrefresh = "1s"\n'


def status_rpki(socket_path: Path) -> dict[str, object]:
    return call(socket_path, "status")["rpki"]  # type: ignore[no-any-return]


def wait_for(predicate: object, timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        got = predicate()  # type: ignore[operator]
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_status_shows_rpki_and_a_reload_of_rpki_keeps_exabgp(
        tmp_path: Path, notifications: Notifications) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps({"roas": roas_json()}))
    second.write_text(json.dumps({"roas": roas_json(VRPS[:4])}))
    base = bgp_config(tmp_path, ["127.0.0.2"], "127.0.0.1")
    daemon, config, before = start_with_exabgp(tmp_path, notifications,
                                               with_rpki(base, first))
    socket_path = tmp_path / "run" / "control.sock"
    try:
        rpki = wait_for(lambda: status_rpki(socket_path)["vrps"] == len(VRPS) and
                        status_rpki(socket_path), 20, "the VRP file loaded")
        assert isinstance(rpki, dict)
        [source] = rpki["sources"]
        assert (source["source"], source["serial"], source["in_force"]) == (str(first), 1, True)
        assert rpki["own"] == {"198.51.100.0/24": {"state": "invalid", "roa_expires": None}}
        text = subprocess.run(
            [sys.executable, "-m", "agent.cli", "status", "--socket", str(socket_path)],
            capture_output=True, text=True, timeout=30, check=True).stdout
        assert f"rpki: {len(VRPS)} VRPs in force (v4 8, v6 3) from {first}" in text
        assert f"  * {first}: {len(VRPS)} VRPs, serial 1, last update " in text
        assert "  own 198.51.100.0/24: invalid" in text

        config.write_text(with_rpki(base, second))
        reload_and_wait(daemon, notifications)
        wait_for(lambda: status_rpki(socket_path)["vrps"] == 4, 20, "the new file in force")
        assert status_rpki(socket_path)["source_in_force"] == str(second)
        assert exabgp_pids(daemon.proc.pid) == before, daemon.log()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(STOP_LIMIT_S) == 0, daemon.log()
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            daemon.wait(1)
        daemon.kill()
