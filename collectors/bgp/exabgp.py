"""ExaBGP's configuration and env, written from the agent's config; version detection.

Facts this relies on (measured on Debian 12 with ExaBGP 4.2 and 5.0):
- ExaBGP drops privileges to `nobody` by default and its API process then cannot write:
  the env sets `user` to the agent's own user and `drop = false`.
- The env path must be absolute (4.2 silently looks a relative one up under /etc/exabgp);
  5.x takes `--env-file`, 4.2 `--env`.
- `adj-rib-in false` on every neighbor: the default kept 1.7 GB at 500k routes.
- `cli = false`: no named pipes under /run/exabgp that two agents would fight over.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import pwd
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from agent.config import Config
from collectors.bgp.prefixes import Prefix
from collectors.bgp.session import Session

BRIDGE = Path(__file__).with_name("bridge.py")
BRIDGE_EXECUTABLE = Path(__file__).with_name("egress-agent-bridge")  # built from _bridge.c
LAUNCHER = Path(__file__).with_name("exabgp_launch.py")
PROCESS_NAME = "egress-agent-bridge"


@dataclass(frozen=True)
class ExabgpVersion:
    text: str  # "5.0.15"
    major: int


def resolve_executable(name: str) -> str:
    """A bare name is looked up on PATH, then beside the agent's interpreter (where pip
    puts ExaBGP's script in the agent's venv); a path is taken as given."""
    if "/" in name:
        return name
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def detect_version(executable: str, timeout_s: float = 20.0) -> ExabgpVersion:
    """Ask the executable; 4.2 answers `--version`, 5.x `version`. Raises RuntimeError."""
    for args in (["--version"], ["version"]):
        try:
            result = subprocess.run([executable, *args], capture_output=True, text=True,
                                    timeout=timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"cannot run {executable}: {exc}") from None
        match = re.search(r"ExaBGP\s*:\s*(\d+)\.(\d+)\.?(\d*)", result.stdout + result.stderr)
        if match and result.returncode == 0:
            return ExabgpVersion(".".join(g for g in match.groups() if g), int(match.group(1)))
    raise RuntimeError(f"{executable} does not look like ExaBGP (no version)")


def command_line(executable: str, version: ExabgpVersion, env_path: Path,
                 config_path: Path) -> list[str]:
    if version.major >= 5:
        args = ["--env-file", str(env_path.absolute()), "server", str(config_path.absolute())]
    else:
        args = ["--env", str(env_path.absolute()), str(config_path.absolute())]
    return [*launch_prefix(executable), *args]


def launch_prefix(executable: str) -> list[str]:
    """How to start ExaBGP through exabgp_launch.py, which skips what its console script
    costs: the ExaBGP beside the agent's interpreter (its venv's) with `-I -S`, 4.7 MB
    lighter; another Python console script (Debian's 4.2) with its own interpreter and
    `-I`, 6.4 MB lighter. Anything else (a shell wrapper, a binary) starts as it is."""
    spec = importlib.util.find_spec("exabgp")
    if spec is not None and spec.origin is not None and _beside_our_python(executable):
        site_packages = str(Path(spec.origin).parent.parent)
        return [sys.executable, "-I", "-S", str(LAUNCHER), site_packages, executable]
    interpreter = script_interpreter(executable)
    if interpreter is not None:
        return [interpreter, "-I", str(LAUNCHER), "", executable]
    return [executable]


def _beside_our_python(executable: str) -> bool:
    try:
        return os.path.samefile(Path(executable).parent, Path(sys.executable).parent)
    except OSError:
        return False


_PYTHON_SHEBANG = re.compile(rb"#!(/\S*/python3(?:\.\d+)?)\s*")


def script_interpreter(executable: str) -> str | None:
    """The Python a script names in its `#!` line, when that line names only it."""
    try:
        with open(executable, "rb") as script:
            first_line = script.readline(256)
    except OSError:
        return None
    match = _PYTHON_SHEBANG.fullmatch(first_line)
    if match is None or not os.access(match.group(1), os.X_OK):
        return None
    return match.group(1).decode()


REACTOR_SPEED = 100.0  # see env_text


def env_text() -> str:
    user = pwd.getpwuid(os.geteuid()).pw_name
    return (
        "[exabgp.daemon]\n"
        f"user = '{user}'\n"
        "drop = false\n"
        "daemonize = false\n"
        "\n[exabgp.api]\n"
        "ack = true\n"
        "cli = false\n"
        "respawn = true\n"
        "encoder = json\n"
        "\n[exabgp.log]\n"
        "level = WARNING\n"
        "destination = stdout\n"
        "short = true\n"
        # The reactor polls its sockets with a timeout of speed/100 s: 10 ms by default, a
        # hundred idle wake-ups a second, 2 % of a core with three quiet sessions (0.26 % at
        # 100 ms). Sockets and the API pipe wake it at once whatever the timeout, so 1 s only
        # makes its own timers (keepalives, hold and connect-retry checks) up to 1 s coarser,
        # against timers of tens of seconds: 0.04 %.
        f"\n[exabgp.reactor]\nspeed = {REACTOR_SPEED}\n"
    )


_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./+-]+$")


def bridge_command(python: str = sys.executable) -> list[str]:
    """The C bridge where it was built (1.4 MB of RSS); else bridge.py with -I -S: the
    standard library only, not even `site` (10.6 MB)."""
    if os.access(BRIDGE_EXECUTABLE, os.X_OK):
        return [str(BRIDGE_EXECUTABLE)]
    return [python, "-I", "-S", str(BRIDGE)]


def config_text(config: Config, sessions: dict[str, Session], own: list[Prefix],
                socket_path: Path, generation: int, python: str = sys.executable) -> str:
    """The ExaBGP configuration: one neighbor per carrier with `[carriers.bgp]`.

    Our prefixes go to each carrier as static routes with `next-hop self`, except those
    the session cannot carry (another family) or the operator withdrew from it.
    """
    assert config.bgp is not None
    bridge = bridge_command(python)
    for part in (*bridge, str(socket_path)):
        if not _SAFE_PATH.match(part):
            raise ValueError(f"path not usable in an ExaBGP `run` line: {part!r}")
    lines = [
        f"process {PROCESS_NAME} {{",
        f"    run {' '.join(bridge)} {socket_path} {int(generation)};",
        "    encoder json;",
        "}",
        "",
    ]
    for carrier in config.carriers:
        if carrier.bgp is None:
            continue
        session = sessions[carrier.name]
        bgp = carrier.bgp
        routes = [p for p in own if not session.announceable(p)]
        families = ["ipv4 unicast;", "ipv6 unicast;"]
        lines += [
            f"neighbor {ipaddress.ip_address(bgp.peer)} {{",
            f"    router-id {config.bgp.router_id};",
            f"    local-address {ipaddress.ip_address(bgp.local_address)};",
            f"    local-as {int(config.bgp.local_as)};",
            f"    peer-as {int(bgp.peer_as)};",
            f"    hold-time {int(bgp.hold_time_s)};",
            "    adj-rib-in false;",
            "    family {",
            *(f"        {f}" for f in families),
            "    }",
        ]
        if routes:
            lines.append("    static {")
            lines += [f"        route {p.text} next-hop self;" for p in routes]
            lines.append("    }")
        lines += [
            "    api {",
            f"        processes [ {PROCESS_NAME} ];",
            "        neighbor-changes;",
            "        receive { parsed; update; notification; }",
            "    }",
            "}",
            "",
        ]
    return "\n".join(lines)
