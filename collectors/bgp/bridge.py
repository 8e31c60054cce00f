"""ExaBGP API process: relays ExaBGP's stdout stream to the agent's unix socket and back.

ExaBGP runs this (`process ... { run PYTHON bridge.py SOCKET GENERATION; }`). It must
never block ExaBGP: a thread reads stdin continuously into memory and another writes to
the agent, so a slow agent costs memory here, not a stalled BGP speaker (ExaBGP hangs when
the 64 KiB pipe to its process fills). Commands from the agent (`neighbor X withdraw ...`)
go to ExaBGP's stdin; ExaBGP's `done`/`error` acks come back in the stream like any line.
Bytes are relayed in chunks, unparsed: the agent splits lines.

If the agent goes away, or more than MAX_BUFFER_BYTES pile up, the bridge exits: the
agent then restarts ExaBGP to get a complete table again (a gap would corrupt the RIB).
Standard library only, so it starts fast under any interpreter.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time

MAX_BUFFER_BYTES = 1 << 30
CONNECT_TIMEOUT_S = 10.0


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


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: bridge.py SOCKET GENERATION\n")
        return 2
    path, generation = argv[1], argv[2]
    try:
        sock = _connect(path)
    except OSError as exc:
        sys.stderr.write(f"egress-agent bridge: cannot reach the agent at {path}: {exc}\n")
        return 1
    sock.sendall(f'{{"bridge": {int(generation)}, "pid": {os.getpid()}}}\n'.encode())

    chunks: list[bytes] = []
    state = {"bytes": 0, "eof": False}
    cond = threading.Condition()

    def to_agent() -> None:
        try:
            while True:
                with cond:
                    while not chunks and not state["eof"]:
                        cond.wait()
                    batch = b"".join(chunks)
                    chunks.clear()
                    state["bytes"] = 0
                    done = state["eof"]
                if batch:
                    sock.sendall(batch)
                if done:
                    sock.shutdown(socket.SHUT_WR)
                    return
        except OSError:
            os._exit(1)

    def to_exabgp() -> None:
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    os._exit(0)  # the agent closed: ExaBGP is restarted by a new agent
                view = memoryview(data)
                while view:
                    view = view[os.write(1, view):]
        except OSError:
            os._exit(1)

    writer = threading.Thread(target=to_agent, daemon=True)
    writer.start()
    threading.Thread(target=to_exabgp, daemon=True).start()
    stdin = sys.stdin.fileno()
    while True:
        data = os.read(stdin, 1 << 16)
        with cond:
            if not data:
                state["eof"] = True
                cond.notify()
                break
            chunks.append(data)
            state["bytes"] += len(data)
            if state["bytes"] > MAX_BUFFER_BYTES:
                sys.stderr.write("egress-agent bridge: agent too slow, buffer full; exiting\n")
                os._exit(1)
            cond.notify()
    writer.join(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
