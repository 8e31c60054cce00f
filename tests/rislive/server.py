"""A RIS Live stand-in on 127.0.0.1: the `websockets` library speaking RIS Live's
documented messages.

Client → server: `ris_subscribe` ({"prefix", "moreSpecific", "type", "socketOptions":
{"acknowledge"}}), `ris_unsubscribe`, `ping`. Server → client: `ris_subscribe_ok` (when
acknowledge is on), `pong` (data null), `ris_message` (what `broadcast` is given), and
`ris_error` for a message it does not understand. Like RIS Live, a connection gets an
UPDATE only when one of its prefixes matches a subscription (the prefix itself, or a
more-specific with moreSpecific); announcements and withdrawals are cut down to the
matching prefixes. `firehose = True` sends every frame unfiltered instead.

Faults for the tests: `mode = "close"` closes each new connection right after its
subscriptions; `mode = "mute"` stays connected and says nothing (no ack, no pong);
`drop_all()` closes every connection now. Every frame sent is counted per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import threading
import time
from collections.abc import Iterable
from typing import Any

from websockets.asyncio.server import ServerConnection, serve


class Connection:
    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.subscriptions: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, bool]] = []
        self.sent = 0
        self.received: list[Any] = []

    def wants(self, prefix: str) -> bool:
        try:
            net = ipaddress.ip_network(prefix, strict=False)
        except ValueError:
            return False
        for sub, more in self.subscriptions:
            if net.version == sub.version and (
                    net == sub or (more and net.subnet_of(sub))):  # type: ignore[arg-type]
                return True
        return False

    def filtered(self, frame: str) -> str | None:
        message = json.loads(frame)
        data = message.get("data")
        if message.get("type") != "ris_message" or not isinstance(data, dict):
            return frame
        withdrawals = [p for p in data.get("withdrawals", []) if self.wants(p)]
        announcements = []
        for a in data.get("announcements", []):
            prefixes = [p for p in a["prefixes"] if self.wants(p)]
            if prefixes:
                announcements.append({**a, "prefixes": prefixes})
        if not withdrawals and not announcements:
            return None
        return json.dumps({"type": "ris_message", "data": {
            **data, "announcements": announcements, "withdrawals": withdrawals}})


class RisLiveServer:
    def __init__(self) -> None:
        self.connections: list[Connection] = []
        self.accepted: list[float] = []  # monotonic times of accepted connections
        self.mode = "normal"  # normal | close | mute
        self.firehose = False
        self._server: Any = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws/?client=egress-agent-test"

    async def start(self) -> None:
        self._server = await serve(self._handler, "127.0.0.1", 0, ping_interval=None)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    @property
    def live(self) -> list[Connection]:
        return [c for c in self.connections if c.ws.state.name == "OPEN"]

    @property
    def sent(self) -> int:
        return sum(c.sent for c in self.connections)

    async def _send(self, conn: Connection, frame: str | bytes) -> None:
        conn.sent += 1
        await conn.ws.send(frame)

    async def _handler(self, ws: ServerConnection) -> None:
        conn = Connection(ws)
        self.connections.append(conn)
        self.accepted.append(time.monotonic())
        mode = self.mode
        try:
            async for raw in ws:
                try:
                    message = json.loads(raw)
                    kind, data = message["type"], message.get("data")
                except (ValueError, KeyError, TypeError):
                    await self._send(conn, json.dumps(
                        {"type": "ris_error", "data": {"message": "Invalid message"}}))
                    continue
                conn.received.append(message)
                if mode == "mute":
                    continue
                if kind == "ris_subscribe":
                    conn.subscriptions.append(
                        (ipaddress.ip_network(data["prefix"]), bool(data.get("moreSpecific",
                                                                              True))))
                    if (data.get("socketOptions") or {}).get("acknowledge"):
                        await self._send(conn, json.dumps(
                            {"type": "ris_subscribe_ok", "data": {
                                "subscription": data, "socketOptions": data["socketOptions"]}}))
                    if mode == "close":
                        await ws.close()
                        return
                elif kind == "ping":
                    await self._send(conn, json.dumps({"type": "pong", "data": None}))
                else:
                    await self._send(conn, json.dumps(
                        {"type": "ris_error", "data": {"message": f"Unknown type {kind}"}}))
        except Exception:  # a closed connection ends the handler
            return

    async def broadcast(self, frames: Iterable[str | bytes], raw: bool = False) -> int:
        """Send frames to every open connection (filtered by its subscriptions unless
        `firehose` or `raw`); returns how many frames went out."""
        count = 0
        for frame in frames:
            for conn in self.live:
                out: str | bytes | None = frame
                if not (raw or self.firehose) and isinstance(frame, str):
                    out = conn.filtered(frame)
                if out is not None:
                    with contextlib.suppress(Exception):
                        await self._send(conn, out)
                        count += 1
        return count

    async def drop_all(self) -> None:
        for conn in self.live:
            with contextlib.suppress(Exception):
                await conn.ws.close()


class ThreadedServer:
    """The server on a loop of its own thread, for a client in another process."""

    def __init__(self) -> None:
        self.server = RisLiveServer()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self.server.start())

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call(self.server.stop(), 10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
