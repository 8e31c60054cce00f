"""Small helpers to run commands and Python code inside a named network namespace.

`in_netns(name, fn)` runs `fn` in a fresh OS thread that has joined the namespace with
setns(2): sockets made there live in that namespace, the rest of the process is untouched.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def netns_path(name: str) -> str:
    return f"/var/run/netns/{name}"


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def in_netns(name: str | None, fn: Callable[[], T]) -> T:
    """Run fn() with the calling context's network namespace set to `name` (None: as is)."""
    if name is None:
        return fn()
    result: list[Any] = []
    error: list[BaseException] = []

    def worker() -> None:
        try:
            _setns(netns_path(name))
            result.append(fn())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=worker, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]  # type: ignore[no-any-return]


def ns_argv(netns: str | None, argv: Sequence[str]) -> list[str]:
    """argv prefixed with `ip netns exec NAME` (ip execs the command: same PID)."""
    if netns is None:
        return list(argv)
    return ["ip", "netns", "exec", netns, *argv]


def run(argv: Sequence[str], netns: str | None = None, check: bool = True,
        timeout: float = 30.0, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command (in a namespace), text output captured; raises with stderr on failure."""
    proc = subprocess.run(ns_argv(netns, argv), capture_output=True, text=True,
                          timeout=timeout, input=input, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(ns_argv(netns, argv))}: exit {proc.returncode}: "
                           f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    return run(["ip", *args], netns=netns, check=check).stdout


def netns_list() -> list[str]:
    out = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_pids(name: str) -> list[int]:
    out = run(["ip", "netns", "pids", name], check=False).stdout
    return [int(x) for x in out.split() if x.isdigit()]


def netns_works() -> tuple[bool, str]:
    """Whether we may create namespaces here (root and a working `ip netns`)."""
    if os.geteuid() != 0:
        return False, "needs root (network namespaces)"
    probe = f"labprobe{os.getpid()}"
    proc = run(["ip", "netns", "add", probe], check=False)
    if proc.returncode != 0:
        return False, f"ip netns add failed: {proc.stderr.strip()}"
    run(["ip", "netns", "del", probe], check=False)
    return True, ""


def stop_process(proc: subprocess.Popen[Any] | None, timeout: float = 10.0) -> None:
    """SIGTERM by PID, SIGKILL after `timeout`, and reap it."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
