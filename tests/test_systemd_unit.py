"""The systemd unit: accepted by `systemd-analyze verify`, exposure at most 3.0, and the
settings the agent relies on (notify, watchdog, user, directories, least capabilities)."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.spool import Spool

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
    text = re.sub(r"(?m)^ExecStart=.*$", f"ExecStart={shutil.which('true')} run", text)
    copy.write_text(re.sub(r"(?m)^ExecReload=/.*$", f"ExecReload={shutil.which('true')} reload",
                           text))
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
    rejected as unknown before, which is why the main unit uses Type=notify with
    `egress-agent reload`."""
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
    assert one("ExecReload") == "/opt/egress-agent/bin/egress-agent reload"
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


# ---------------------------------------------------------------- scripts/install

INSTALL = ROOT / "scripts" / "install"


def run_install(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DESTDIR", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(INSTALL), *args], capture_output=True, text=True, timeout=600, env=env
    )


def group_id(root: Path, name: str) -> int | None:
    group = root / "etc" / "group"
    if not group.exists():
        return None
    for line in group.read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2])
    return None


def venv_python() -> str:
    """The interpreter for installed venvs: the distribution's, which any user can run
    (as on a real host), else this one."""
    system = "/usr/bin/python3"
    if Path(system).exists():
        check = subprocess.run(
            [system, "-c", "import venv, ensurepip"], capture_output=True, timeout=30
        )
        if check.returncode == 0:
            return system
    return sys.executable


@pytest.fixture(scope="module")
def installed() -> Iterator[tuple[Path, subprocess.CompletedProcess[str]]]:
    """One full install into a temp root (world-readable, so an unprivileged user can run
    the installed agent), shared by the tests of this module."""
    root = Path(tempfile.mkdtemp(prefix="egress-agent-install-"))
    root.chmod(0o755)
    try:
        yield root, run_install("--root", str(root), "--python", venv_python())
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_install_into_a_temp_root_is_complete_and_idempotent(
    tmp_path: Path, installed: tuple[Path, subprocess.CompletedProcess[str]]
) -> None:
    """Full install (venv from this checkout included) into a temp root, then again."""
    root, first = installed
    assert first.returncode == 0, first.stdout + first.stderr
    venv = root / "opt" / "egress-agent"
    unit = root / "etc" / "systemd" / "system" / "egress-agent.service"
    config = root / "etc" / "egress-agent" / "agent.toml"
    sysusers = root / "usr" / "lib" / "sysusers.d" / "egress-agent.conf"

    # the venv runs the agent's code as installed, not from the checkout
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import agent.sdnotify as m; print(m.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.startswith(str(venv))
    assert (venv / "bin" / "egress-agent").exists()
    assert (venv / "bin" / "exabgp").exists()
    assert (venv / "share" / "doc" / "egress-agent" / "operations.md").read_text() == (
        ROOT / "docs" / "operations.md"
    ).read_text()

    assert unit.read_text() == UNIT.read_text()  # default prefix: the unit as shipped
    assert config.read_text() == (ROOT / "config" / "egress-agent.example.toml").read_text()
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o750
    assert (
        sysusers.read_text() == (ROOT / "config" / "systemd" / "egress-agent.sysusers").read_text()
    )
    if shutil.which("systemd-sysusers"):
        passwd = (root / "etc" / "passwd").read_text().splitlines()
        entries = [line for line in passwd if line.startswith("egress-agent:")]
        assert len(entries) == 1, passwd
        assert entries[0].endswith(":/var/lib/egress-agent:/usr/sbin/nologin")
        gid = group_id(root, "egress-agent")
        assert gid is not None
        if os.geteuid() == 0:
            assert config.stat().st_uid == 0
            assert config.stat().st_gid == gid

    if ANALYZE is not None:  # the installed unit, started from the installed binary
        check = tmp_path / "check"
        check.mkdir()
        text = unit.read_text().replace("ExecStart=/opt/egress-agent/", f"ExecStart={venv}/")
        text = text.replace("ExecReload=/opt/egress-agent/", f"ExecReload={venv}/")
        (check / "egress-agent.service").write_text(text)
        result = verify(check / "egress-agent.service")
        assert result.returncode == 0 and result.stderr.strip() == "", result.stderr

    # operator edits, then a second install: the config stays, nothing is duplicated
    config.write_text(config.read_text() + "\n# edited by the operator\n")
    config.chmod(0o600)
    edited = config.read_text()
    passwd_before = (
        (root / "etc" / "passwd").read_text() if (root / "etc" / "passwd").exists() else ""
    )
    second = run_install("--root", str(root), "--python", venv_python())
    assert second.returncode == 0, second.stdout + second.stderr
    assert "kept existing" in second.stdout
    assert config.read_text() == edited
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    if passwd_before:
        assert (root / "etc" / "passwd").read_text() == passwd_before
    assert unit.read_text() == UNIT.read_text()
    assert not (ROOT / "build").exists(), "install built inside the checkout"


def test_install_prefix_and_bad_arguments(tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = run_install("--root", str(root), "--prefix", "/srv/egress", "--no-venv")
    assert result.returncode == 0, result.stderr
    unit = settings((root / "etc/systemd/system/egress-agent.service").read_text())
    assert unit["ExecStart"] == ["/srv/egress/bin/egress-agent run"]
    path_env = [v for v in unit["Environment"] if v.startswith("PATH=")]
    assert path_env and path_env[0].startswith("PATH=/srv/egress/bin:")
    assert not (root / "opt").exists()
    assert not (root / "srv" / "egress" / "bin").exists()  # --no-venv: no venv
    for bad in (["--bogus"], ["--prefix", "relative/dir"], ["--root"]):
        failed = run_install(*bad)
        assert failed.returncode == 2, (bad, failed.stderr)
        assert failed.stderr.startswith("install: "), failed.stderr


# ---------------------------------------------------------------- capabilities

# What each capability of the unit is for, as an operation the agent (or ExaBGP) performs.
# The script prints OK, or the errno name when the kernel refused.
_OPERATION = r"""
import errno, socket, struct, sys
op = sys.argv[1]
try:
    if op == "raw_icmp":  # probes and traceroute
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
    elif op == "bind_device":  # a probe socket bound to its uplink, re-bound (kernel >= 5.7)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
    elif op == "netlink_write":  # RTM_NEWNEIGH NTF_USE (links routing check); no such link
        nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        body = struct.pack("=BxxxiHBB", socket.AF_INET, 0x7FFFFFFF, 0, 0x01, 0)
        body += struct.pack("=HH", 8, 1) + socket.inet_aton("192.0.2.1")
        nl.send(struct.pack("=LHHLL", 16 + len(body), 28, 0x1 | 0x4 | 0x500, 1, 0) + body)
        reply = nl.recv(65536)
        if struct.unpack_from("=H", reply, 4)[0] == 2:
            err = -struct.unpack_from("=i", reply, 16)[0]
            if err == errno.EPERM:
                raise OSError(err, "netlink")
    elif op == "netlink_dump":  # RTM_GETLINK dump: needs nothing
        nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        nl.send(struct.pack("=LHHLL", 32, 18, 0x301, 1, 0) + bytes(16))
        nl.recv(65536)
    elif op == "bind_bgp":  # ExaBGP listening on 179
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.3", 179))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
except OSError as exc:
    print(errno.errorcode.get(exc.errno, exc.errno))
    sys.exit(0)
print("OK")
"""
_NEEDS = {
    "raw_icmp": "CAP_NET_RAW",
    "bind_device": "CAP_NET_RAW",
    "netlink_write": "CAP_NET_ADMIN",
    "bind_bgp": "CAP_NET_BIND_SERVICE",
    "netlink_dump": None,
}
_UNPRIVILEGED_PYTHON = Path("/usr/bin/python3")


def _as_nobody(caps: set[str], operation: str) -> str:
    """Run the operation as uid/gid 65534 with exactly `caps` (ambient, as the unit does)."""
    spec = ",".join(["-all", *sorted("+" + c.removeprefix("CAP_").lower() for c in caps)])
    result = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            f"--inh-caps={spec}",
            f"--ambient-caps={spec}",
            f"--bounding-set={spec}",
            "--no-new-privs",
            str(_UNPRIVILEGED_PYTHON),
            "-I",
            "-c",
            _OPERATION,
            operation,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) missing")
@pytest.mark.skipif(
    not _UNPRIVILEGED_PYTHON.exists(), reason="no /usr/bin/python3 an unprivileged user can run"
)
@pytest.mark.parametrize("operation", sorted(_NEEDS))
def test_each_capability_is_needed_and_enough(operation: str) -> None:
    """With the unit's ambient set the operation works; without its capability the kernel
    refuses it, so no capability in the unit is surplus and none is missing."""
    caps = set(settings(UNIT.read_text())["AmbientCapabilities"][0].split())
    assert _as_nobody(caps, operation) == "OK"
    needed = _NEEDS[operation]
    if needed is None:
        assert _as_nobody(set(), operation) == "OK"
    else:
        assert needed in caps
        assert _as_nobody(caps - {needed}, operation) in ("EPERM", "EACCES")
    # and every capability of the unit is the one some operation needs
    assert caps == {c for c in _NEEDS.values() if c}


# ---------------------------------------------------------------- MemoryDenyWriteExecute

_MDWE_PRELUDE = r"""
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    print("MDWE-UNSUPPORTED", ctypes.get_errno())
    sys.exit(0)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("MDWE not enforced: W+X mapping allowed")
except OSError:
    pass
import exabgp, influxdb_client, prometheus_client, psutil, pyroute2, scapy.all  # noqa
sys.argv = ["egress-agent", *sys.argv[1:]]
from agent.cli import main
sys.exit(main())
"""


def test_agent_runs_with_write_xor_execute_memory(tmp_path: Path) -> None:
    """MemoryDenyWriteExecute=yes must not break the agent or its libraries: run it under
    the kernel's own equivalent (prctl PR_SET_MDWE, Linux 6.3+) with its collectors and the
    Prometheus output; it has to start, collect and stop cleanly."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "agent.toml"
    config.write_text(
        f"""
[agent]
hostname = "mdwe"
interval = "1s"
data_dir = "{tmp_path}/data"
control_socket = "{tmp_path}/run/control.sock"
collectors = ["agent", "host", "disk", "links", "probes"]

[[probes]]
name = "loopback"
target = "127.0.0.1"
methods = ["tcp:9"]
interval = "1s"
count = 2
timeout = "200ms"

[outputs.prometheus]
listen = "127.0.0.1:{port}"
"""
    )
    result = subprocess.run(
        [sys.executable, "-c", _MDWE_PRELUDE, "run", "-c", str(config), "--duration", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    if "MDWE-UNSUPPORTED" in result.stdout:
        pytest.skip(f"kernel has no PR_SET_MDWE (errno {result.stdout.split()[-1]})")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "started:" in result.stderr and "stopped" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "data").exists()


# ---------------------------------------------------------------- the sandbox, emulated

_SANDBOX_PRELUDE = r"""
import ctypes, errno, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
# MemoryDenyWriteExecute=yes
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    print("MDWE unavailable", ctypes.get_errno(), file=sys.stderr)
# SystemCallArchitectures=native, SystemCallFilter=..., SystemCallErrorNumber=EPERM
allowed = [int(n) for n in os.environ.pop("SANDBOX_SYSCALLS").split(",")]
LD, JEQ, RET = 0x20, 0x15, 0x06
ALLOW, KILL, EPERM = 0x7FFF0000, 0x80000000, 0x00050000 | errno.EPERM
prog = [(LD, 0, 0, 4), (JEQ, 1, 0, 0xC000003E), (RET, 0, 0, KILL), (LD, 0, 0, 0)]
for nr in allowed:
    prog += [(JEQ, 0, 1, nr), (RET, 0, 0, ALLOW)]
prog.append((RET, 0, 0, EPERM))
code = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *i) for i in prog))
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Fprog(len(prog), ctypes.addressof(code))
if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, MODE_FILTER
    sys.exit(f"seccomp filter not installed: errno {ctypes.get_errno()}")
try:
    os.sched_setaffinity(0, {0})  # @resources: must be refused
    sys.exit("system call filter not enforced")
except PermissionError:
    pass
sys.argv = ["egress-agent", *sys.argv[1:]]
from agent.cli import main
sys.exit(main())
"""
_UNISTD = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
_NEWER_SYSCALLS = {"fchmodat2": 452}  # newer than some kernel headers


def _syscall_names(group: str) -> set[str]:
    assert ANALYZE is not None
    out = subprocess.run(
        [ANALYZE, "syscall-filter", group], capture_output=True, text=True, check=True
    ).stdout
    names: set[str] = set()
    for line in out.splitlines()[1:]:
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        names |= _syscall_names(item) if item.startswith("@") else {item}
    return names


def unit_syscall_numbers() -> list[int]:
    """The unit's SystemCallFilter= lines resolved to x86_64 numbers, as systemd would."""
    numbers = {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"#define __NR_(\w+) (\d+)", _UNISTD.read_text())
    } | _NEWER_SYSCALLS
    allowed: set[str] = set()
    for line in settings(UNIT.read_text())["SystemCallFilter"]:
        deny = line.startswith("~")
        names: set[str] = set()
        for item in line.removeprefix("~").split():
            names |= _syscall_names(item) if item.startswith("@") else {item}
        allowed = allowed - names if deny else allowed | names
    return sorted(numbers[n] for n in allowed if n in numbers)


def _written_by(uid: int, since: float, exclude: Path) -> list[str]:
    """Files owned by uid and changed after `since` in the places a process could write."""
    found = []
    for top in ("/tmp", "/var/tmp", "/var/lib", "/var/log", "/run", "/etc", "/dev/shm", "/home"):
        for dirpath, dirnames, filenames in os.walk(top):
            if Path(dirpath) == exclude or exclude in Path(dirpath).parents:
                dirnames.clear()
                continue
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                with contextlib.suppress(OSError):
                    st = os.lstat(path)
                    if st.st_uid == uid and st.st_mtime >= since:
                        found.append(path)
    return found


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) missing")
@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")
@pytest.mark.skipif(platform.machine() != "x86_64", reason="syscall numbers are x86_64 here")
@pytest.mark.skipif(not _UNISTD.exists(), reason=f"{_UNISTD} missing (linux-libc-dev)")
def test_installed_agent_runs_in_the_units_sandbox(
    installed: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    """The installed agent, with every collector and ExaBGP, runs the way the unit runs it:
    an unprivileged user with only the unit's ambient capabilities, no new privileges, the
    unit's system-call filter (EPERM otherwise, native ABI only) and no W+X memory. It
    probes with raw ICMP, keeps ExaBGP up, stops cleanly, and writes only to its data and
    runtime directories."""
    root, install = installed
    assert install.returncode == 0, install.stderr
    python = root / "opt" / "egress-agent" / "bin" / "python"
    caps = settings(UNIT.read_text())["AmbientCapabilities"][0].split()
    spec = ",".join(["-all", *("+" + c.removeprefix("CAP_").lower() for c in caps)])
    as_agent = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        f"--inh-caps={spec}",
        f"--ambient-caps={spec}",
        f"--bounding-set={spec}",
        "--no-new-privs",
    ]
    can_run = subprocess.run([*as_agent, str(python), "-c", "pass"], capture_output=True)
    if can_run.returncode != 0:
        pytest.skip(f"installed interpreter not runnable by an unprivileged user: {python}")

    box = Path(tempfile.mkdtemp(prefix="egress-agent-sandbox-"))
    try:
        box.chmod(0o755)
        for sub in ("data", "run"):
            (box / sub).mkdir()
            os.chown(box / sub, 65534, 65534)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            prom_port = s.getsockname()[1]
        config = box / "agent.toml"
        config.write_text(
            f"""
[agent]
hostname = "sandbox"
interval = "1s"
data_dir = "{box}/data"
control_socket = "{box}/run/control.sock"
collectors = ["agent", "host", "disk", "links", "billing", "bgp", "probes"]

[[carriers]]
name = "loop"
interface = "lo"
source = "127.0.0.1"
  [carriers.bgp]
  peer = "127.0.0.2"
  peer_as = 64600
  local_address = "127.0.0.1"

[bgp]
local_as = 64512
router_id = "192.0.2.1"
announce = ["198.51.100.0/24"]
exabgp = "{python.parent / "exabgp"}"

[[probes]]
name = "loopback"
target = "127.0.0.1"
methods = ["icmp"]
interval = "1s"
count = 2
timeout = "300ms"

[outputs.prometheus]
listen = "127.0.0.1:{prom_port}"
"""
        )
        config.chmod(0o644)
        started = time.time() - 1
        env = {
            "PATH": f"{python.parent}:/usr/sbin:/usr/bin:/sbin:/bin",
            "PYTHONDONTWRITEBYTECODE": "1",
            "SANDBOX_SYSCALLS": ",".join(map(str, unit_syscall_numbers())),
        }
        result = subprocess.run(
            [
                *as_agent,
                str(python),
                "-I",
                "-c",
                _SANDBOX_PRELUDE,
                "run",
                "-c",
                str(config),
                "--duration",
                "8",
            ],
            capture_output=True,
            text=True,
            timeout=90,
            cwd="/",
            env=env,
        )
        log = result.stdout + result.stderr
        assert result.returncode == 0, log
        assert "started:" in log and "stopped" in log, log
        for bad in (
            "Traceback",
            "PermissionError",
            "Operation not permitted",
            "ExaBGP stopped",
            "MDWE unavailable",
        ):
            assert bad not in log, log
        assert "exabgp: reactor" in log, log  # ExaBGP ran (and was stopped by the agent)

        points = list(Spool(box / "data", read_only=True).iter_points())
        measurements = {p.measurement for p in points}
        assert {"host", "disk", "link", "probe", "bgp_session", "agent"} <= measurements
        icmp = [p for p in points if p.measurement == "probe" and p.tags["method"] == "icmp"]
        assert icmp and all(p.fields["received"] == p.fields["sent"] == 2 for p in icmp)

        assert _written_by(65534, started, box) == []
    finally:
        shutil.rmtree(box, ignore_errors=True)
