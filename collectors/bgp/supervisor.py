"""Runs ExaBGP as a child and feeds its API stream (via the bridge) into BgpState.

Life cycle of one ExaBGP run ("generation"): write config and env, start ExaBGP, accept
the bridge's connection (its hello names the generation; connections of an older run are
closed unread, so nothing of a dead run is applied twice), feed lines until ExaBGP exits.
Then every session is marked down and its routes dropped (ExaBGP sends no withdraws),
and ExaBGP is started again after a back-off (1 s doubling to 60 s, reset after a run of
60 s). If the bridge connection of a live run breaks, lines may have been lost, so ExaBGP
is restarted to get complete tables again.

A pid file in the run directory lets a restarted agent stop an ExaBGP left behind by a
killed one (checked against its command line); the child also gets PDEATHSIG.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from agent.config import Config
from agent.points import Point
from collectors.bgp.exabgp import (
    ExabgpVersion,
    command_line,
    config_text,
    detect_version,
    env_text,
    resolve_executable,
)
from collectors.bgp.state import BgpState

log = logging.getLogger(__name__)

BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 60.0
HEALTHY_RUN_S = 60.0
STOP_TIMEOUT_S = 5.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def run_directory(data_dir: Path) -> Path:
    """data_dir/bgp, unless its socket path would exceed the unix-socket limit (108)."""
    path = data_dir / "bgp"
    if len(str((path / "bridge.sock").absolute())) < 100:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path.absolute()
    return Path(tempfile.mkdtemp(prefix="egress-agent-bgp-"))


class _BridgeProtocol(asyncio.Protocol):
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.transport: asyncio.Transport | None = None
        self.generation = -1
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.buffer:
            data = self.buffer + data
        lines = data.split(b"\n")
        self.buffer = lines.pop()
        if len(self.buffer) > 16 << 20:  # no line is that long: count it and move on
            self.supervisor.state.handle_line(b"<oversized line>")
            self.buffer = b""
        if self.generation < 0:
            if not lines:
                return
            if not self.supervisor.attach(self, lines[0]):
                assert self.transport is not None
                self.transport.close()
                return
            lines = lines[1:]
        if self.supervisor.bridge is not self:
            return  # a connection of a finished run (being closed): nothing of it applies
        self.supervisor.feed(lines)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.buffer and self.supervisor.bridge is self:
            self.supervisor.feed([self.buffer])
        self.buffer = b""
        self.supervisor.detach(self)


class Supervisor:
    def __init__(self, config: Config, state: BgpState, emit: Callable[[Iterable[Point]], None],
                 data_dir: Path) -> None:
        assert config.bgp is not None
        self.config = config
        self.state = state
        self.emit = emit
        self.data_dir = data_dir
        self.executable = resolve_executable(config.bgp.exabgp)
        self.version: ExabgpVersion | None = None
        self.run_dir: Path | None = None
        self.socket_path: Path | None = None
        self.reloads = 0
        self.generation = 0
        self.process: asyncio.subprocess.Process | None = None
        self.bridge: _BridgeProtocol | None = None
        self.restarts = 0
        self.started_s = 0.0
        self.last_exit = ""
        self.log_tail: deque[str] = deque(maxlen=20)
        self._restart_now = asyncio.Event()
        self._stopping = False
        self._attached_generation = -1
        self._reload_pending = False

    # -------------------------------------------------------------- stream

    def attach(self, protocol: _BridgeProtocol, hello: bytes) -> bool:
        try:
            data = json.loads(hello)
            generation = int(data["bridge"])
        except (ValueError, KeyError, TypeError):
            self.state.handle_line(hello)  # counted as a bad line
            return False
        if generation != self.generation or self.process is None:
            return False  # a bridge of a previous run: its lines are not applied
        if self._attached_generation == generation:
            # ExaBGP respawned its API process: lines were lost in between, so the
            # tables cannot be trusted; start over with a fresh ExaBGP.
            log.warning("bgp: the bridge was respawned by ExaBGP; restarting ExaBGP")
            self._restart_now.set()
            return False
        self._attached_generation = generation
        protocol.generation = generation
        self.bridge = protocol
        if self._reload_pending:
            self._reload_pending = False
            self._signal_reload()
        return True

    def feed(self, lines: list[bytes]) -> None:
        handle = self.state.handle_line
        points: list[Point] = []
        for line in lines:
            got = handle(line)
            if got:
                points.extend(got)
        if points:
            self.emit(points)

    def detach(self, protocol: _BridgeProtocol) -> None:
        if self.bridge is not protocol:
            return
        self.bridge = None
        if self.process is not None and self.process.returncode is None and not self._stopping:
            # ExaBGP may just be dying (the bridge sees EOF first): give it a moment.
            process = self.process
            asyncio.get_running_loop().call_later(1.0, self._bridge_gone, process)

    def _bridge_gone(self, process: asyncio.subprocess.Process) -> None:
        if self.process is process and process.returncode is None and self.bridge is None:
            log.warning("bgp: bridge connection lost while ExaBGP runs; restarting ExaBGP")
            self._restart_now.set()

    def send_command(self, command: str) -> None:
        if self.bridge is None or self.bridge.transport is None:
            raise RuntimeError("ExaBGP is not running")
        self.bridge.transport.write(command.encode() + b"\n")

    # -------------------------------------------------------------- child

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.version = await asyncio.to_thread(detect_version, self.executable)
        self.run_dir = run_directory(self.data_dir)
        socket_path = self.socket_path = self.run_dir / "bridge.sock"
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        self._stop_leftover()
        server = await loop.create_unix_server(lambda: _BridgeProtocol(self), str(socket_path))
        os.chmod(socket_path, 0o600)
        attempt = 0
        try:
            while True:
                started = time.monotonic()
                await self._run_once(socket_path)
                if time.monotonic() - started > HEALTHY_RUN_S:
                    attempt = 0
                delay = min(BACKOFF_MAX_S, BACKOFF_START_S * 2**attempt)
                attempt += 1
                self.restarts += 1
                log.warning("bgp: ExaBGP stopped (%s); restart in %.0fs", self.last_exit, delay)
                await asyncio.sleep(delay)
        finally:
            self._stopping = True
            self.last_exit = "stopped by the agent"
            await self._stop_process()
            server.close()
            with contextlib.suppress(OSError):
                socket_path.unlink()

    async def _run_once(self, socket_path: Path) -> None:
        assert self.run_dir is not None and self.version is not None
        self.generation += 1
        env_path = self.run_dir / "exabgp.env"
        config_path = self.run_dir / "exabgp.conf"
        env_path.write_text(env_text())
        config_path.write_text(config_text(self.config, self.state.sessions, self.state.own,
                                           socket_path, self.generation))
        command = command_line(self.executable, self.version, env_path, config_path)
        self._restart_now.clear()
        self.process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, preexec_fn=_die_with_parent,
        )
        self.started_s = time.time()
        (self.run_dir / "exabgp.pid").write_text(f"{self.process.pid}\n")
        output = asyncio.create_task(self._read_output(self.process))
        waiter = asyncio.create_task(self.process.wait())
        restart = asyncio.create_task(self._restart_now.wait())
        try:
            await asyncio.wait({waiter, restart}, return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():
                self.last_exit = "restarted: bridge connection lost"
                await self._stop_process()
            else:
                self.last_exit = f"exited with code {self.process.returncode}"
        except asyncio.CancelledError:
            self._stopping = True
            self.last_exit = "stopped by the agent"
            raise
        finally:
            restart.cancel()
            if not waiter.done():
                await self._stop_process()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(2.0):
                    await output
            self._end_run()

    def _end_run(self) -> None:
        """After ExaBGP stopped: whatever the old bridge still relays belongs to a dead run
        and is cut off before the reset, so no line of it lands in the next run's tables;
        then every session is down and its routes gone."""
        self.process = None
        self._reload_pending = False  # the next run reads the newest config anyway
        bridge, self.bridge = self.bridge, None
        if bridge is not None and bridge.transport is not None:
            bridge.transport.abort()
        self.emit(self.state.exabgp_lost(f"ExaBGP {self.last_exit or 'stopped'}"))

    async def _read_output(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while True:
            line = await process.stdout.readline()
            if not line:
                return
            text = line.decode(errors="replace").rstrip()
            self.log_tail.append(text)
            log.info("exabgp: %s", text)

    async def _stop_process(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    def _stop_leftover(self) -> None:
        """Stop an ExaBGP of ours left running by an agent that was killed."""
        assert self.run_dir is not None
        pid_path = self.run_dir / "exabgp.pid"
        try:
            pid = int(pid_path.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if str(self.run_dir / "exabgp.conf").encode() not in cmdline:
            return
        log.warning("bgp: stopping ExaBGP %d left by a previous agent", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if not Path(f"/proc/{pid}").exists():
                return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def reload(self, config: Config) -> None:
        """Use `config` from now on; a running ExaBGP re-reads its rewritten config
        (SIGUSR1): only neighbors whose definition changed are reset, and static routes
        added or removed are announced or withdrawn. The API process line is unchanged
        (same generation), so the bridge keeps running."""
        self.config = config
        process = self.process
        if process is None or process.returncode is not None or self.run_dir is None:
            return  # the next start writes the new config
        assert self.socket_path is not None
        (self.run_dir / "exabgp.conf").write_text(config_text(
            config, self.state.sessions, self.state.own, self.socket_path, self.generation))
        if self.bridge is None:
            # ExaBGP installs its signal handlers just before it starts the API process:
            # until the bridge is attached, SIGUSR1 would kill it. Send it once attached.
            self._reload_pending = True
            return
        self._signal_reload()

    def _signal_reload(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGUSR1)
        self.reloads += 1

    def kill_now(self) -> None:
        """Synchronous stop for Collector.close()."""
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()

    def status(self) -> dict[str, Any]:
        running = self.process is not None and self.process.returncode is None
        return {
            "executable": self.executable,
            "version": self.version.text if self.version else "",
            "running": running,
            "pid": self.process.pid if running and self.process else None,
            "generation": self.generation,
            "restarts": self.restarts,
            "reloads": self.reloads,
            "uptime_s": round(time.time() - self.started_s, 1) if running else 0.0,
            "last_exit": self.last_exit,
            "bridge_connected": self.bridge is not None,
            "log_tail": list(self.log_tail)[-5:],
        }
