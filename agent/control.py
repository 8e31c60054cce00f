"""The control socket: newline-delimited JSON over a unix socket.

Request `{"command": "status", "args": {...}}` → `{"ok": true, "result": ...}` or
`{"ok": false, "error": "..."}`. Collectors add commands (e.g. `bgp.lookup`) through
a collector group's Built.controls. The socket's directory is made 0750 and the socket 0660
so only the agent's user and group can talk to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024


class ControlError(Exception):
    """The daemon could not be reached or answered with an error."""


Handler = Callable[[dict[str, Any]], Any]


class ControlServer:
    def __init__(self, path: Path, handlers: dict[str, Handler]) -> None:
        self.path = Path(path)
        self.handlers = handlers
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(PermissionError):
            os.chmod(directory, 0o750)  # noqa: S103 - owner and group only
        if self.path.exists() or self.path.is_symlink():
            if await _is_alive(self.path):
                raise ControlError(f"{self.path}: another agent is running")
            self.path.unlink()
        old_umask = os.umask(0o117)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_REQUEST_BYTES
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o660)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    await self._reply(writer, {"ok": False, "error": "request too long"})
                    return
                if not line:
                    return
                await self._reply(writer, await self._dispatch(line))
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            command = request["command"]
            args = request.get("args") or {}
            if not isinstance(command, str) or not isinstance(args, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError, AttributeError):
            return {"ok": False, "error": "bad request: expected {\"command\": str, \"args\": {}}"}
        handler = self.handlers.get(command)
        if handler is None:
            return {"ok": False, "error": f"unknown command {command!r}"}
        try:
            result = handler(args)
            if inspect.isawaitable(result):
                result = await result
            return {"ok": True, "result": result}
        except Exception as exc:
            log.warning("control: %s failed: %s", command, exc)
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
        writer.write(json.dumps(answer, default=str).encode() + b"\n")
        await writer.drain()


async def _is_alive(path: Path) -> bool:
    try:
        async with asyncio.timeout(1.0):
            _, writer = await asyncio.open_unix_connection(str(path))
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def call(
    socket_path: Path | str,
    command: str,
    args: dict[str, Any] | None = None,
    timeout_s: float = 2.0,
) -> Any:
    """Blocking client: one request, one answer. Raises ControlError."""
    request = json.dumps({"command": command, "args": args or {}}).encode() + b"\n"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(socket_path))
            sock.sendall(request)
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except FileNotFoundError:
        raise ControlError(f"{socket_path}: no agent running (socket not found)") from None
    except PermissionError:
        raise ControlError(f"{socket_path}: permission denied (agent's group only)") from None
    except OSError as exc:
        raise ControlError(f"{socket_path}: {exc.strerror or exc}") from None
    try:
        answer = json.loads(data)
    except ValueError:
        raise ControlError(f"{socket_path}: malformed answer") from None
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error", "unknown error")))
    return answer.get("result")
