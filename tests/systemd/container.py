"""A booted systemd container (systemd-nspawn), driven from outside with nsenter.

This machine's PID 1 is not systemd, hence `--register=no --keep-unit` (nspawn cannot
register with a machined that is not there). The container is a copy of the cached root
file system, optionally inside one of the lab's network namespaces, with host directories
bound read-only. It is stopped by PID: `poweroff`, then SIGKILL of its PID 1 (which ends
its whole PID namespace) if that does not finish in time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.lab.wait import wait_until


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids.extend(int(k) for k in (task / "children").read_text().split())
        except OSError:
            continue
    return kids


def _container_init(nspawn_pid: int) -> int | None:
    """The container's systemd: the child of nspawn in another PID namespace that has
    exec'd systemd. nspawn's first child is an intermediate that forks it and exits
    (the container's PID 1 is then re-parented to nspawn): taking whichever child came
    first once left a CI run entering a process that was gone, for the whole boot."""
    try:
        own = os.readlink(f"/proc/{nspawn_pid}/ns/pid")
    except OSError:
        return None
    for kid in _children(nspawn_pid):
        try:
            if (os.readlink(f"/proc/{kid}/ns/pid") != own
                    and Path(f"/proc/{kid}/comm").read_text().strip() == "systemd"):
                return kid
        except OSError:
            continue
    return None


class Container:
    def __init__(self, rootfs: Path, copy_to: Path, name: str, netns: str | None = None,
                 binds: Mapping[Path, str] | None = None) -> None:
        self.source = rootfs
        self.root = copy_to
        self.name = name
        self.netns = netns
        self.binds = dict(binds or {})
        self.log_path = copy_to.with_suffix(".console.log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0  # the container's systemd, as seen from the host

    # ------------------------------------------------------------ life cycle

    def boot(self, timeout_s: float = 60.0) -> Container:
        subprocess.run(["cp", "-a", "--reflink=auto", str(self.source), str(self.root)],
                       check=True)
        argv = ["systemd-nspawn", "-D", str(self.root), "--register=no", "--keep-unit", "-b",
                "--console=passive", f"--machine={self.name}"]
        if self.netns:
            # nspawn keeps CAP_NET_ADMIN from a container only without a network of its
            # own; in the lab's namespace the container is the provider host, whose root
            # (and so the unit's ambient set) has it, as on a real host.
            argv += [f"--network-namespace-path=/run/netns/{self.netns}",
                     "--capability=CAP_NET_ADMIN"]
        argv += [f"--bind-ro={host}:{inside}" for host, inside in self.binds.items()]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        proc = self.proc

        def init_started(_left: float) -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited {proc.returncode}: "
                                   + self.log_path.read_text(errors="replace")[-500:])
            self.pid = _container_init(proc.pid) or 0
            return self.pid != 0

        wait_until(init_started, timeout_s, "the container's systemd to start")
        state = ""

        def booted(_left: float) -> bool:
            # "offline" until systemd listens on its bus
            nonlocal state
            state = self.run(["systemctl", "is-system-running"], timeout=10).stdout.strip()
            return state in ("running", "degraded")

        try:
            wait_until(booted, timeout_s, "the container's boot", interval_s=0.2)
        except TimeoutError as exc:
            failed = self.run(["systemctl", "--failed", "--no-pager"]).stdout
            raise RuntimeError(f"container did not boot: {state}: {failed}") from exc
        return self

    def close(self, timeout_s: float = 20.0) -> None:
        """Power off (or kill) and remove the copy."""
        if self.proc is not None and self.proc.poll() is None:
            if self.pid:
                self.run(["systemctl", "poweroff", "--no-block"], timeout=10)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                if self.pid:
                    os.kill(self.pid, signal.SIGKILL)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------ commands

    def run(self, argv: Sequence[str], timeout: float = 60.0, check: bool = False,
            input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        """`argv` inside the container (every namespace of its PID 1), as root."""
        return subprocess.run(["nsenter", "-t", str(self.pid), "-a", *argv],
                              capture_output=True, text=True, timeout=timeout, check=check,
                              input=input_text)

    def systemctl(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return self.run(["systemctl", "--no-pager", *args], timeout=timeout)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.systemctl("show", unit, "-p", ",".join(props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def cursor(self) -> str:
        """The journal's current end, for `journal(after=...)`."""
        out = self.run(["journalctl", "-n", "0", "--show-cursor", "-q"]).stdout
        return out.strip().removeprefix("-- cursor: ")

    def journal(self, unit: str | None = None, after: str | None = None,
                identifier: str | None = None) -> list[dict[str, Any]]:
        argv = ["journalctl", "--no-pager", "-o", "json"]
        if unit:
            argv += ["-u", unit]
        if identifier:
            argv += ["-t", identifier]
        if after:
            argv.append(f"--after-cursor={after}")
        out = self.run(argv).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def write(self, path: str, text: str, mode: int = 0o644, owner: str = "root:root") -> None:
        host = self.root / path.lstrip("/")
        host.parent.mkdir(parents=True, exist_ok=True)
        host.write_text(text)
        self.run(["chown", owner, path], check=True)
        self.run(["chmod", f"{mode:o}", path], check=True)

    def wait_active(self, unit: str, timeout_s: float, not_pid: str | None = None) -> str:
        """Until `unit` is active (running) with a main PID other than `not_pid`; the PID."""
        main_pid = ""

        def active(_left: float) -> bool:
            nonlocal main_pid
            props = self.show(unit, "ActiveState", "SubState", "MainPID")
            main_pid = props.get("MainPID", "0")
            return (props.get("ActiveState") == "active" and props.get("SubState") == "running"
                    and main_pid not in ("0", not_pid))

        wait_until(active, timeout_s, f"{unit} active with a new main PID", interval_s=0.2)
        return main_pid
