"""ExaBGP API process: relays ExaBGP's stdout stream to the agent's unix socket and back.

The install builds the same relay in C (`_bridge.c` → `egress-agent-bridge`, a seventh of the
memory); this one runs where that was not built, and is the reference for both.

ExaBGP runs this (`process ... { run PYTHON bridge.py SOCKET GENERATION; }`). It must
never block ExaBGP (ExaBGP hangs when the 64 KiB pipe to its process fills): stdin is
drained continuously into memory and written to the agent when the socket takes it, so a
slow agent costs memory here, not a stalled BGP speaker. Commands from the agent
(`neighbor X withdraw ...`) go to ExaBGP's stdin; ExaBGP's `done`/`error` acks come back
in the stream like any line. Bytes are relayed unparsed: the agent splits lines.

Cheap by construction, since it sees every byte of a full table: one thread, poll(2), and
reads coalesced (ExaBGP writes each line with its own write(2); after a short read the
bridge waits a few ms so the next read takes many lines at once: 20 ms of latency at
most, a fraction of the system calls and wake-ups).

If the agent goes away, or more than MAX_BUFFER_BYTES pile up, the bridge exits: the
agent then restarts ExaBGP to get complete tables again (a gap would corrupt the RIB).
Standard library only, so it starts fast under any interpreter.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import socket
import sys
import time

MAX_BUFFER_BYTES = 1 << 30
CONNECT_TIMEOUT_S = 10.0
READ_BYTES = 1 << 20
PIPE_BYTES = 1 << 20  # asked of the kernel for ExaBGP's pipe to us (F_SETPIPE_SZ)
_F_SETPIPE_SZ = 1031


def _connect(path: str) -> socket.socket:
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def relay(stdin: int, stdout: int, sock: socket.socket) -> int:
    """Until stdin ends (ExaBGP stopped) or the agent goes away. Nothing here blocks:
    both directions are buffered, so neither ExaBGP nor the agent can stall the other
    (ExaBGP busy writing to us while we wait to write a command to it would deadlock)."""
    sock.setblocking(False)
    os.set_blocking(stdout, False)
    # With a 1 MiB pipe, waiting 20 ms after a short read is safe (ExaBGP writes a few
    # MB/s at most); with the default 64 KiB pipe, 4 ms.
    try:
        fcntl.fcntl(stdin, _F_SETPIPE_SZ, PIPE_BYTES)
        coalesce_s, small_read = 0.02, 1 << 18
    except OSError:
        coalesce_s, small_read = 0.004, 1 << 14
    to_agent = bytearray()
    to_exabgp = bytearray()
    poller = select.poll()
    poller.register(stdin, select.POLLIN)
    sock_fd = sock.fileno()
    stdin_open = True
    while stdin_open or to_agent:
        poller.register(sock_fd, select.POLLIN | (select.POLLOUT if to_agent else 0))
        if to_exabgp:
            poller.register(stdout, select.POLLOUT)
        for fd, mask in poller.poll():
            if fd == stdin:
                data = os.read(stdin, READ_BYTES)
                if not data:
                    stdin_open = False
                    poller.unregister(stdin)
                    continue
                to_agent += data
                if len(to_agent) > MAX_BUFFER_BYTES:
                    sys.stderr.write("egress-agent bridge: agent too slow, buffer full\n")
                    return 1
                if len(data) < small_read:
                    time.sleep(coalesce_s)
            elif fd == sock_fd:
                if mask & select.POLLIN:
                    try:
                        command = sock.recv(65536)
                    except BlockingIOError:
                        command = None
                    except OSError:
                        return 1
                    if command == b"":
                        return 0  # the agent closed: a new agent restarts ExaBGP
                    if command:
                        to_exabgp += command
                elif mask & (select.POLLHUP | select.POLLERR):
                    return 1
            elif fd == stdout and mask & (select.POLLHUP | select.POLLERR):
                return 1
        if to_agent:
            try:
                del to_agent[:sock.send(to_agent)]
            except BlockingIOError:
                pass
            except OSError:
                return 1
        if to_exabgp:
            try:
                del to_exabgp[:os.write(stdout, to_exabgp)]
            except BlockingIOError:
                pass
            except OSError:
                return 1
        with contextlib.suppress(KeyError):
            poller.unregister(stdout)
        poller.unregister(sock_fd)
    sock.shutdown(socket.SHUT_WR)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: bridge.py SOCKET GENERATION\n")
        return 2
    path, generation = argv[1], argv[2]
    try:
        sock = _connect(path)
        sock.sendall(f'{{"bridge": {int(generation)}, "pid": {os.getpid()}}}\n'.encode())
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"egress-agent bridge: cannot reach the agent at {path}: {exc}\n")
        return 1
    return relay(sys.stdin.fileno(), sys.stdout.fileno(), sock)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
