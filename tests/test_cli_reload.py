"""`egress-agent reload` against a real daemon, and the start-up errors that must exit 2
(a restart cannot fix them, so the unit's RestartPreventExitStatus=2 stops the loop)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.agentproc import ROOT, AgentProcess, write_config
from tests.lab.wait import wait_until


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def run_briefly(config: Path) -> subprocess.CompletedProcess[str]:
    return cli("run", "-c", str(config), "--duration", "5")


def test_unusable_paths_at_start_are_config_errors(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    cases = {
        "agent.data_dir": (f'data_dir = "{a_file}/data"\n', "",
                           f"cannot use {a_file}/data: Not a directory"),
        "agent.control_socket": (f'control_socket = "{a_file}/run/control.sock"\n', "",
                                 f"cannot use {a_file}/run/control.sock: Not a directory"),
        "outputs.influxdb.token_file": (
            "", f'[outputs.influxdb]\nurl = "http://127.0.0.1:9"\norg = "o"\nbucket = "b"\n'
                f'token_file = "{tmp_path}"\n',
            f"cannot use {tmp_path}: Is a directory"),
    }
    for key, (agent_line, body, reason) in cases.items():
        case_dir = tmp_path / key
        case_dir.mkdir()
        config = write_config(case_dir, body)
        text = config.read_text()
        if agent_line:
            name = agent_line.split(" = ")[0]
            text = "\n".join(line for line in text.splitlines() if not line.startswith(name))
            text = text.replace("[agent]\n", "[agent]\n" + agent_line)
        config.write_text(text)
        done = run_briefly(config)
        assert done.returncode == 2, (key, done.stderr)
        assert done.stderr.splitlines() == [f"{config}: {key}: {reason}"], key
        assert not (case_dir / "run" / "control.sock").exists(), key


def test_reload_reports_applied_and_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, "")
    agent = AgentProcess(config)
    try:
        socket_path = tmp_path / "run" / "control.sock"
        wait_until(lambda _left: socket_path.exists(), 20, "the agent's control socket")
        applied = cli("reload", "-c", str(config))
        assert applied.returncode == 0, applied.stderr
        assert applied.stdout.strip() == f"reloaded {config}"

        good = config.read_text()
        config.write_text(good.replace("[agent]\n", '[agent]\ncolour = "red"\n'))
        refused = cli("reload", "-c", str(config), "--socket", str(socket_path))
        assert refused.returncode == 2
        assert refused.stderr.splitlines() == [f"{config}: agent.colour: unknown key"]
        assert agent.proc.poll() is None, "a refused reload stopped the agent"
        assert "reload refused" in agent.log()

        # an output whose secret file cannot be read: refused before anything changes
        config.write_text(good + f'\n[outputs.influxdb]\nurl = "http://127.0.0.1:9"\n'
                          f'org = "o"\nbucket = "b"\ntoken_file = "{tmp_path}"\n')
        unreadable = cli("reload", "-c", str(config))
        assert unreadable.returncode == 2
        assert unreadable.stderr.splitlines() == [
            f"{config}: outputs.influxdb.token_file: cannot use {tmp_path}: Is a directory"]
        assert agent.proc.poll() is None, "a refused reload stopped the agent"
        config.write_text(good)
        assert cli("reload", "-c", str(config)).returncode == 0
    finally:
        assert agent.terminate() == 0
    gone = cli("reload", "--socket", str(socket_path))
    assert gone.returncode == 1
    assert gone.stderr.startswith("error: ") and len(gone.stderr.splitlines()) == 1
