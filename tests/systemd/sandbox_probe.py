"""Run by the unit itself (an ExecStartPost= drop-in of the systemd stage), so it has
exactly the service's sandbox: user, capabilities, seccomp filter, mount namespace. It
tries what the sandbox must refuse and what the agent needs, and prints one line,
`sandbox-probe {json}`, outcome per attempt: "ok" or the errno's name. Always exits 0,
so the unit's start does not depend on it. Standard library only: it runs in the
installed venv."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket
from collections.abc import Callable

SYS_FINIT_MODULE = 313  # x86_64
SYS_INIT_MODULE = 175


def attempt(action: Callable[[], object]) -> str:
    try:
        action()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return "ok"


def write(path: str) -> None:
    with open(path, "w") as handle:
        handle.write("x")
    os.unlink(path)


def syscall(number: int, *args: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(number, *args) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def load_module() -> None:
    fd = os.open("/opt/egress-agent/bin/python", os.O_RDONLY)
    try:
        syscall(SYS_FINIT_MODULE, fd, ctypes.addressof(ctypes.c_char(0)), 0)
    finally:
        os.close(fd)


def status_field(name: str) -> str:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    return ""


def main() -> None:
    results = {
        "uid": os.getuid(),
        "cap_eff": status_field("CapEff"),
        "cap_bnd": status_field("CapBnd"),
        "no_new_privs": status_field("NoNewPrivs"),
        "seccomp": status_field("Seccomp"),
        "write_state_dir": attempt(lambda: write("/var/lib/egress-agent/.sandbox-probe")),
        "write_etc": attempt(lambda: write("/etc/egress-agent/.sandbox-probe")),
        "write_opt": attempt(lambda: write("/opt/egress-agent/.sandbox-probe")),
        "write_var_lib": attempt(lambda: write("/var/lib/.sandbox-probe")),
        "list_home": attempt(lambda: os.listdir("/home")),
        "list_root": attempt(lambda: os.listdir("/root")),
        "load_module": attempt(load_module),
        "init_module": attempt(lambda: syscall(SYS_INIT_MODULE, 0, 0, 0)),
        "setuid_root": attempt(lambda: os.setuid(0)),
        "packet_socket": attempt(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW).close()),
        "raw_icmp_socket": attempt(lambda: socket.socket(
            socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()),
        "dev_block_devices": sorted(n for n in os.listdir("/dev") if n.startswith(("vd", "sd"))),
    }
    print("sandbox-probe " + json.dumps(results), flush=True)


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # never fail the unit's start; say what broke instead
        print(f"sandbox-probe-error {type(exc).__name__}: {exc}", flush=True)
