"""The systemd unit: accepted by `systemd-analyze verify`, exposure at most 3.0, and the
settings the agent relies on (notify, watchdog, user, directories, least capabilities)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "config" / "systemd" / "egress-agent.service"
DROP_IN = ROOT / "config" / "systemd" / "notify-reload.conf"
MAX_EXPOSURE = 3.0

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze not installed (apt-get install systemd)"
)


def systemd_version() -> int:
    assert ANALYZE is not None
    out = subprocess.run([ANALYZE, "--version"], capture_output=True, text=True, check=True)
    match = re.match(r"systemd (\d+)", out.stdout)
    assert match, out.stdout
    return int(match.group(1))


def settings(text: str) -> dict[str, list[str]]:
    """Every `Key=value` of a unit (keys may repeat, e.g. SystemCallFilter)."""
    out: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def unit_copy(tmp_path: Path, text: str | None = None) -> Path:
    """The unit with ExecStart pointing to a binary that exists here (verify checks it)."""
    text = UNIT.read_text() if text is None else text
    assert "\nExecStart=/opt/egress-agent/bin/egress-agent run\n" in text
    copy = tmp_path / "egress-agent.service"
    copy.write_text(re.sub(r"(?m)^ExecStart=.*$", f"ExecStart={shutil.which('true')} run", text))
    return copy


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, "verify", str(path)], capture_output=True, text=True, timeout=60
    )


def exposure(path: Path) -> tuple[float, str]:
    assert ANALYZE is not None
    result = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for [^:]+: (\d+\.\d+) (\S+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1)), match.group(2)


@needs_analyze
def test_verify_passes_without_warnings(tmp_path: Path) -> None:
    result = verify(unit_copy(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # verify warns with exit code 0


@needs_analyze
def test_verify_catches_mistakes(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key and a missing binary are reported."""
    broken = UNIT.read_text().replace("WatchdogSec=", "WatchDogSec=")
    result = verify(unit_copy(tmp_path, broken))
    assert "Unknown key 'WatchDogSec'" in result.stderr
    missing = tmp_path / "missing"
    missing.mkdir()
    (missing / "egress-agent.service").write_text(UNIT.read_text())
    result = verify(missing / "egress-agent.service")
    if not Path("/opt/egress-agent/bin/egress-agent").exists():
        assert result.returncode != 0
        assert "/opt/egress-agent/bin/egress-agent" in result.stderr


@needs_analyze
def test_security_exposure_at_most_3(tmp_path: Path) -> None:
    score, verdict = exposure(unit_copy(tmp_path))
    assert score <= MAX_EXPOSURE, f"exposure {score} {verdict}"
    assert verdict in ("OK", "SAFE"), verdict


@needs_analyze
def test_security_score_reacts_to_hardening(tmp_path: Path) -> None:
    """The score is a real measurement: stripping the sandbox makes it worse."""
    kept = [
        line
        for line in UNIT.read_text().splitlines()
        if not line.startswith(("Protect", "Private", "Restrict", "SystemCall", "Memory"))
    ]
    loose_score, _ = exposure(unit_copy(tmp_path, "\n".join(kept) + "\n"))
    strict_dir = tmp_path / "strict"
    strict_dir.mkdir()
    strict_score, _ = exposure(unit_copy(strict_dir))
    assert loose_score > MAX_EXPOSURE > strict_score


@needs_analyze
def test_notify_reload_drop_in_matches_this_systemd(tmp_path: Path) -> None:
    """Type=notify-reload exists from systemd 253: the drop-in verifies cleanly there and is
    rejected as unknown before, which is why the main unit uses Type=notify + kill -HUP."""
    unit = unit_copy(tmp_path)
    drop_dir = tmp_path / "egress-agent.service.d"
    drop_dir.mkdir()
    shutil.copy(DROP_IN, drop_dir / "notify-reload.conf")
    result = verify(unit)
    if systemd_version() >= 253:
        assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    else:
        assert "Failed to parse service type" in result.stderr
        assert "notify-reload" in result.stderr


def test_unit_settings() -> None:
    unit = settings(UNIT.read_text())

    def one(key: str) -> str:
        assert len(unit.get(key, [])) == 1, (key, unit.get(key))
        return unit[key][0]

    assert one("Type") == "notify"
    assert one("ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one("NotifyAccess") == "main"
    assert one("Restart") == "on-failure"
    assert one("RestartPreventExitStatus") == "2"
    watchdog = one("WatchdogSec")
    assert re.fullmatch(r"\d+s", watchdog)
    assert one("User") == "egress-agent"
    assert one("StateDirectory") == "egress-agent"
    assert one("RuntimeDirectory") == "egress-agent"
    assert one("RuntimeDirectoryMode") == "0750"
    caps = {"CAP_NET_RAW", "CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"}
    assert set(one("CapabilityBoundingSet").split()) == caps
    assert set(one("AmbientCapabilities").split()) == caps
    assert set(one("RestrictAddressFamilies").split()) == {
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
        "AF_NETLINK",
    }
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
    }.items():
        assert one(key) == value, key
    assert unit["SystemCallFilter"][0] == "@system-service"
    # the agent's default paths live in the directories systemd creates for it
    example = (ROOT / "config" / "egress-agent.example.toml").read_text()
    assert 'data_dir = "/var/lib/egress-agent"' in example
    assert 'control_socket = "/run/egress-agent/control.sock"' in example


def test_drop_in_settings() -> None:
    drop_in = settings(DROP_IN.read_text())
    assert drop_in == {"Type": ["notify-reload"], "ExecReload": [""]}
