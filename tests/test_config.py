"""Config validation: every bad-input class gives `FILE: key.path: reason` and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from agent.config import ConfigError, load_config, parse_duration, parse_size

ROOT = Path(__file__).resolve().parent.parent
GOOD = """
[agent]
hostname = "edge-1"
interval = "10s"
data_dir = "/tmp/x"

[[carriers]]
name = "telecom"
interface = "eth1"
source = "203.0.113.2"
committed_mbps = 1000
  [carriers.bgp]
  peer = "203.0.113.1"
  peer_as = 4134
  local_address = "203.0.113.2"

[bgp]
local_as = 64512
router_id = "203.0.113.2"
announce = ["198.51.100.0/24"]

[[probes]]
name = "p"
target = "192.0.2.1"
methods = ["icmp", "tcp:53", "dns:example.com", "http:/health"]
carriers = ["telecom"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def run_check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["check-config", "-c", str(path)])
    captured = capsys.readouterr()
    return code, captured.err


def test_example_and_lab_configs_are_valid() -> None:
    load_config(ROOT / "config" / "egress-agent.example.toml")
    if (ROOT / "config" / "lab.toml").exists():
        load_config(ROOT / "config" / "lab.toml")


def test_good_config_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD)
    assert main(["check-config", "-c", str(path)]) == 0
    assert "ok" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("mutation", "key", "reason"),
    [
        (('interval = "10s"', 'interval = "10 parsecs"'), "agent.interval", "bad duration"),
        (('interval = "10s"', "interval = 10"), "agent.interval", "expected a string"),
        (('hostname = "edge-1"', 'hostname = "edge-1"\ncolour = "red"'), "agent.colour",
         "unknown key"),
        (('source = "203.0.113.2"', 'source = "203.0.113.300"'), "carriers[0].source",
         "not an IP address"),
        (('announce = ["198.51.100.0/24"]', 'announce = ["198.51.100.1/24"]'), "bgp.announce",
         "bad prefix"),
        (('peer_as = 4134', 'peer_as = "4134"'), "carriers[0].bgp.peer_as",
         "expected an integer"),
        (('peer_as = 4134', 'peer_as = 0'), "carriers[0].bgp.peer_as", "between"),
        (('carriers = ["telecom"]', 'carriers = ["sprint"]'), "probes[0].carriers",
         "unknown carrier 'sprint'"),
        (('"tcp:53"', '"tcp:99999"'), "probes[0].methods", "unknown method"),
        (('committed_mbps = 1000', 'committed_mbps = -5'), "carriers[0].committed_mbps",
         "greater than 0"),
        (('interface = "eth1"', ''), "carriers[0].interface", "required key is missing"),
    ],
)
def test_each_bad_input_class(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mutation: tuple[str, str], key: str,
    reason: str,
) -> None:
    old, new = mutation
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    code, err = run_check(path, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{path}: {key}: ")
    assert reason in lines[0]


def test_duplicate_carrier_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = GOOD + '\n[[carriers]]\nname = "telecom"\ninterface = "eth2"\n'
    code, err = run_check(write(tmp_path, text), capsys)
    assert code == 2
    assert "carriers[1].name: duplicate carrier name 'telecom'" in err


def test_all_errors_reported_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (GOOD.replace('interval = "10s"', 'interval = "soon"')
            .replace('peer_as = 4134', 'peer_as = -1')
            .replace('hostname = "edge-1"', 'hostname = "edge-1"\nbogus = 1'))
    code, err = run_check(write(tmp_path, text), capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 3
    assert "agent.interval" in err and "peer_as" in err and "agent.bogus" in err


def test_toml_syntax_error_and_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run_check(write(tmp_path, "[agent\nx=1"), capsys)
    assert code == 2 and err.count("\n") == 1 and "(toml)" in err
    code, err = run_check(tmp_path / "nope.toml", capsys)
    assert code == 2 and "nope.toml: (file): No such file or directory" in err


def test_secret_in_config_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = GOOD + '\n[outputs.influxdb]\nurl = "http://127.0.0.1:1"\norg = "o"\nbucket = "b"\n' \
        'token = "s3cret-token"\n'
    code, err = run_check(write(tmp_path, text), capsys)
    assert code == 2
    assert "outputs.influxdb.token: put the token in token_file" in err
    assert "s3cret-token" not in err


def test_no_traceback_from_the_console_script(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('interval = "10s"', 'interval = "x"'))
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", "check-config", "-c", str(path)],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == f"{path}: agent.interval: bad duration 'x' " \
        "(use e.g. 500ms, 10s, 5m, 1h, 7d)"


def test_unknown_subcommand_argument_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_units() -> None:
    assert parse_duration("500ms") == 0.5
    assert parse_duration("5m") == 300
    assert parse_size("512MiB") == 512 * 2**20
    with pytest.raises(ValueError):
        parse_duration("-1s")
    with pytest.raises(ConfigError):
        load_config("/nonexistent/agent.toml")


def test_toml_keys_are_the_aliases_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A key is read by its TOML name (`interval`); the Python name is an unknown key, and a
    number where a duration is due is refused (only Python code passes seconds)."""
    path = write(tmp_path, GOOD.replace('interval = "10s"', 'interval_s = 10.0'))
    code, err = run_check(path, capsys)
    assert code == 2 and err.strip() == f"{path}: agent.interval_s: unknown key"
    from collectors.probes.config import TracerouteConfig

    assert TracerouteConfig(timeout_s=0.5).timeout_s == 0.5  # from Python: converted values


def test_collector_tables_are_the_collectors_models() -> None:
    from collectors.bgp.config import BgpConfig
    from collectors.probes.config import ProbeConfig, QualityConfig

    config = load_config(ROOT / "config" / "egress-agent.example.toml")
    assert isinstance(config.bgp, BgpConfig)
    assert all(isinstance(p, ProbeConfig) for p in config.probes)
    assert config.quality == QualityConfig()  # absent keys: the model's one default each
    assert config.agent.collectors == ("agent", "host", "disk", "links", "billing", "bgp",
                                       "probes")


def test_the_core_imports_no_collector() -> None:
    """agent/ reads configs and runs the daemon without importing collectors/ itself: the
    plugins are loaded by name once, before the first config is read (agent/registry.py)."""
    code = ("import sys, agent.config, agent.daemon, agent.collector, agent.scheduler\n"
            "assert not [m for m in sys.modules if m.startswith('collectors')], 'imported'\n"
            "from agent import registry\n"
            "registry.load_plugins()\n"
            "assert 'bgp' in registry.GROUPS and 'probes' in registry.TABLES\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_reload_slices_come_from_the_registry(tmp_path: Path) -> None:
    import tomllib

    from agent.config import parse_config
    from agent.registry import GROUPS, config_slice

    old = parse_config(tomllib.loads(GOOD))
    new = parse_config(tomllib.loads(GOOD + "\n[quality]\nrtt_degraded_ms = 50\n"))
    changed = {name for name in GROUPS if config_slice(name, old) != config_slice(name, new)}
    assert changed == {"probes"}
    faster = parse_config(tomllib.loads(GOOD.replace('interval = "10s"', 'interval = "5s"')))
    assert {n for n in GROUPS if config_slice(n, old) != config_slice(n, faster)} == set(GROUPS)
