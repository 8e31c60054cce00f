"""The ExaBGP API process, both implementations: bridge.py and its C twin
(`egress-agent-bridge`, built from _bridge.c by the install). Each runs as ExaBGP runs it,
with pipes for stdin/stdout, against a real unix socket standing for the agent."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.bgp.exabgp import BRIDGE, BRIDGE_EXECUTABLE, bridge_command

IMPLEMENTATIONS = {
    "python": [sys.executable, "-I", "-S", str(BRIDGE)],
    "c": [str(BRIDGE_EXECUTABLE)],
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def command(request: pytest.FixtureRequest) -> list[str]:
    argv = IMPLEMENTATIONS[request.param]
    if request.param == "c" and not os.access(BRIDGE_EXECUTABLE, os.X_OK):
        pytest.fail(f"{BRIDGE_EXECUTABLE} was not built (scripts/setup builds it)")
    return argv


class Agent:
    """The agent's end: a listening unix socket and the one bridge connection."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "bridge.sock"
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.path))
        self.listener.listen(1)
        self.listener.settimeout(15)
        self.conn: socket.socket | None = None

    def accept(self) -> dict[str, int]:
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(15)
        line = b""
        while not line.endswith(b"\n"):
            line += self.conn.recv(1)
        return dict(json.loads(line))

    def read_until_eof(self) -> bytes:
        assert self.conn is not None
        chunks = []
        while chunk := self.conn.recv(1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    agent = Agent(tmp_path)
    yield agent
    agent.close()


def start(command: list[str], agent: Agent, generation: int = 7) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*command, str(agent.path), str(generation)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def stream(lines: int) -> bytes:
    return b"".join(b'{"exabgp": "5.0.0", "n": %d, "pad": "%s"}\n' % (i, b"x" * (i % 97))
                    for i in range(lines))


def test_the_default_is_the_c_bridge_once_built() -> None:
    assert bridge_command() == [str(BRIDGE_EXECUTABLE)]


def test_hello_then_every_byte_in_order_then_eof(command: list[str], agent: Agent) -> None:
    proc = start(command, agent, generation=42)
    try:
        assert agent.accept() == {"bridge": 42, "pid": proc.pid}
        data = stream(60_000)  # 5 MB, many reads and coalesced writes
        assert proc.stdin is not None
        writer = threading.Thread(target=lambda: (proc.stdin.write(data), proc.stdin.close()))
        writer.start()
        received = agent.read_until_eof()  # EOF: ExaBGP's end closed, all relayed
        writer.join()
        assert received == data
        assert proc.wait(10) == 0
    finally:
        proc.kill()


def test_commands_reach_exabgp_and_agent_close_ends_it(command: list[str],
                                                        agent: Agent) -> None:
    proc = start(command, agent)
    try:
        agent.accept()
        assert agent.conn is not None and proc.stdout is not None
        commands = b"neighbor 192.0.2.1 announce route 198.51.100.0/24 next-hop self\n" * 500
        agent.conn.sendall(commands)
        got = b""
        while len(got) < len(commands):
            readable, _, _ = select.select([proc.stdout], [], [], 10)
            assert readable, f"only {len(got)} bytes of commands reached ExaBGP"
            got += os.read(proc.stdout.fileno(), 1 << 16)
        assert got == commands
        agent.conn.close()
        agent.conn = None
        assert proc.wait(10) == 0  # the agent went away: a new agent restarts ExaBGP
    finally:
        proc.kill()


def test_a_slow_agent_never_stalls_exabgp(command: list[str], agent: Agent) -> None:
    """8 MB written while the agent reads nothing: the writes complete (the bridge holds it
    in memory), and the agent then gets all of it."""
    proc = start(command, agent)
    try:
        agent.accept()
        data = stream(100_000)
        assert proc.stdin is not None
        done = threading.Event()

        def write() -> None:
            assert proc.stdin is not None
            proc.stdin.write(data)
            proc.stdin.flush()
            done.set()

        writer = threading.Thread(target=write)
        writer.start()
        assert done.wait(20), "ExaBGP's writes blocked while the agent was not reading"
        proc.stdin.close()
        assert agent.read_until_eof() == data
        writer.join()
        assert proc.wait(10) == 0
    finally:
        proc.kill()


def test_bad_arguments_and_no_agent(command: list[str], tmp_path: Path) -> None:
    usage = subprocess.run(command, capture_output=True, timeout=10, check=False)
    assert usage.returncode == 2 and b"usage" in usage.stderr
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listening.bind(str(tmp_path / "s"))
    listening.listen(1)
    bad = subprocess.run([*command, str(tmp_path / "s"), "x1"], capture_output=True,
                         timeout=10, check=False)
    listening.close()
    assert bad.returncode == 1
    assert bad.stderr.count(b"\n") == 1 and b"cannot reach the agent" in bad.stderr


def test_exabgp_gone_with_the_agent_listening_ends_it(command: list[str],
                                                      agent: Agent) -> None:
    proc = start(command, agent)
    try:
        agent.accept()
        assert proc.stdin is not None and agent.conn is not None
        proc.stdin.write(b'{"partial": ')
        proc.stdin.close()
        assert agent.read_until_eof() == b'{"partial": '
        started = time.monotonic()
        assert proc.wait(10) == 0 and time.monotonic() - started < 5
    finally:
        proc.kill()


def test_memory_of_the_c_bridge_is_a_fraction(agent: Agent) -> None:
    """Why it exists: resident size while relaying, against bridge.py's."""
    sizes = {}
    for name, argv in IMPLEMENTATIONS.items():
        if name == "c" and not os.access(BRIDGE_EXECUTABLE, os.X_OK):
            pytest.fail(f"{BRIDGE_EXECUTABLE} was not built")
        proc = start(argv, agent)
        try:
            agent.accept()
            assert proc.stdin is not None
            proc.stdin.write(stream(1000))
            proc.stdin.flush()
            time.sleep(0.3)
            status = Path(f"/proc/{proc.pid}/status").read_text()
            sizes[name] = int(next(line.split()[1] for line in status.splitlines()
                                   if line.startswith("VmRSS:")))
        finally:
            proc.kill()
            proc.wait()
            if agent.conn is not None:
                agent.conn.close()
                agent.conn = None
    assert sizes["c"] * 4 < sizes["python"], sizes
