"""The RIS Live websocket: connect, subscribe, read, ping, notice silence, reconnect.

One coroutine (`run`) for the agent's life, on the agent's loop (the view needs no lock).
Each connection: the `ris_subscribe` messages (one per own and watched prefix, with its
more-specifics, UPDATEs only, `acknowledge` on), then every frame goes to the view. A
`ping` message every `ping_interval` keeps a quiet feed talking (RIS Live answers `pong`,
which counts as a message). No frame at all for `silence_timeout` is a silent feed: event
`ris_feed_silent`, the connection is closed and made again. A failed or lost connection is
retried after `reconnect_min`, doubling up to `reconnect_max`; the back-off starts again
from `reconnect_min` after a connection that stayed up for `silence_timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from agent.points import FieldValue, Point
from collectors.bgp.config import RisLiveConfig
from collectors.bgp.metrics import EVENT_RIS_FEED_RESTORED, EVENT_RIS_FEED_SILENT
from collectors.bgp.rislive.view import RisView

log = logging.getLogger(__name__)

Emit = Callable[[Iterable[Point]], None]
USER_AGENT = "egress-agent (collectors/bgp/rislive)"
MAX_FRAME = 4 << 20


def effective_url(config: RisLiveConfig) -> str:
    """The URL with `client` as its ?client= parameter when the config names one."""
    if config.client is None:
        return config.url
    parts = urlsplit(config.url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "client"]
    query.append(("client", config.client))
    return urlunsplit(parts._replace(query=urlencode(query)))


def subscribe_message(prefix: str) -> str:
    """RIS Live's documented `ris_subscribe`: one prefix, its more-specifics, UPDATEs."""
    return json.dumps({"type": "ris_subscribe", "data": {
        "prefix": prefix, "moreSpecific": True, "lessSpecific": False, "type": "UPDATE",
        "socketOptions": {"acknowledge": True},
    }})


PING_MESSAGE = json.dumps({"type": "ping", "data": None})


class RisLiveClient:
    def __init__(self, config: RisLiveConfig, view: RisView, emit: Emit,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.view = view
        self.emit = emit
        self.clock = clock
        self.connected = False
        self.connected_since = 0.0
        self.first_connected = 0.0  # warm-up runs from here (kept across reconnects)
        self.started = clock()
        self.last_message = 0.0
        self.silent = False
        self.connects = 0
        self.attempts = 0
        self.reconnects = 0  # connections made after the first
        self.failures = 0  # attempts that failed, connections lost or closed as silent
        self.last_error = ""
        self.backoff_s = config.reconnect_min_s
        self.attempt_times: deque[float] = deque(maxlen=50)
        self.recent: deque[float] = deque()  # frame times of the last minute
        self._ws: Any = None
        self._reconnect_now = asyncio.Event()

    # ------------------------------------------------------------ state for the collector

    def reconfigure(self, config: RisLiveConfig, resubscribe: bool) -> None:
        """Thresholds take effect at once; a new URL, client, proxy or prefix list makes
        a new connection (subscriptions cannot be taken back one by one by prefix text)."""
        reconnect = resubscribe or (config.url, config.client, config.proxy) != (
            self.config.url, self.config.client, self.config.proxy)
        self.config = config
        if reconnect:
            self._reconnect_now.set()
            if self._ws is not None:
                task = asyncio.ensure_future(self._ws.close())
                task.add_done_callback(lambda _t: None)

    def warmed_up(self, now: float) -> bool:
        return bool(self.first_connected) and now - self.first_connected >= self.config.warmup_s

    def judging(self, now: float) -> bool:
        """Counts can be trusted to judge visibility lost: connected, not silent, warm."""
        return self.connected and not self.silent and self.warmed_up(now)

    def messages_per_min(self, now: float) -> float:
        recent = self.recent
        while recent and recent[0] <= now - 60.0:
            recent.popleft()
        return float(len(recent))

    def check_silence(self, now: float) -> list[Point]:
        """A feed with no frame for silence_timeout (connected or not) is silent once."""
        if self.silent:
            return []
        since = max(self.last_message, self.connected_since, self.started)
        if now - since < self.config.silence_timeout_s:
            return []
        self.silent = True
        state = "connected" if self.connected else f"not connected ({self.last_error or '-'})"
        age = f"{now - self.last_message:.1f} s ago" if self.last_message else "never"
        detail = (f"no message from RIS Live for {now - since:.1f} s, {state}; last message "
                  f"{age}")
        log.warning("RIS Live feed silent: %s", detail)
        return [self._feed_event(EVENT_RIS_FEED_SILENT, now, detail)]

    def _feed_event(self, kind: str, now: float, detail: str) -> Point:
        fields: dict[str, FieldValue] = {"prefix": "", "as_path": "", "origin_as": 0,
                                         "detail": detail, "peers": self.view.vantage_points(),
                                         "via": ""}
        self.view.events.append({"time": now, "kind": kind, "carrier": "", **fields})
        return Point("bgp_event", {"kind": kind}, fields, int(now * 1e9))

    def feed_point(self, now: float, time_ns: int = 0) -> Point:
        stats = self.view.stats
        fields: dict[str, FieldValue] = {
            "connected": self.connected,
            "silent": self.silent,
            "warmed_up": self.warmed_up(now),
            "messages": stats.messages,
            "messages_per_min": self.messages_per_min(now),
            "bad_messages": stats.bad_messages,
            "ris_errors": stats.ris_errors,
            "reconnects": self.reconnects,
            "vantage_points": self.view.vantage_points(),
        }
        if self.last_message:
            fields["last_message_age_s"] = round(max(0.0, now - self.last_message), 3)
        return Point("bgp_feed", {"feed": "ris_live"}, fields, time_ns)

    def status(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "url": effective_url(self.config),
            "connected": self.connected,
            "connected_for_s": round(now - self.connected_since, 1) if self.connected else 0.0,
            "silent": self.silent,
            "warmed_up": self.warmed_up(now),
            "warmup_left_s": round(max(0.0, self.first_connected + self.config.warmup_s - now),
                                   1) if self.first_connected else None,
            "last_message_age_s": round(now - self.last_message, 1) if self.last_message
            else None,
            "messages_per_min": self.messages_per_min(now),
            "connects": self.connects,
            "reconnects": self.reconnects,
            "failures": self.failures,
            "backoff_s": self.backoff_s,
            "last_error": self.last_error,
        }

    # ------------------------------------------------------------ the connection

    async def run(self) -> None:
        while True:
            self._reconnect_now.clear()
            self.attempts += 1
            self.attempt_times.append(self.clock())
            lived = 0.0
            try:
                lived = await self._connection()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every way a connection can fail: retried
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("RIS Live: %s (retry in %.1f s)", self.last_error, self.backoff_s)
            finally:
                self._disconnected()
            if self._reconnect_now.is_set():
                self.backoff_s = self.config.reconnect_min_s
                continue
            self.failures += 1
            if lived >= self.config.silence_timeout_s:
                self.backoff_s = self.config.reconnect_min_s
            delay = self.backoff_s
            self.backoff_s = min(self.backoff_s * 2, self.config.reconnect_max_s)
            self.emit(self.check_silence(self.clock()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._reconnect_now.wait()

    def _disconnected(self) -> None:
        if self.connected:
            log.info("RIS Live: disconnected")
        self.connected = False
        self._ws = None

    def _proxy(self) -> str | Literal[True] | None:
        proxy = self.config.proxy
        return True if proxy == "env" else None if proxy == "none" else proxy

    async def _connection(self) -> float:
        """One connection until it fails or goes silent; returns how long it lived."""
        from websockets.asyncio.client import connect

        url = effective_url(self.config)
        timeout = max(1.0, min(30.0, self.config.silence_timeout_s))
        ws = await connect(url, proxy=self._proxy(), open_timeout=timeout,
                           ping_interval=None, close_timeout=2.0, max_size=MAX_FRAME,
                           user_agent_header=USER_AGENT)
        self._ws = ws
        started = self.clock()
        try:
            for prefix in self.view.settings.subscriptions():
                await ws.send(subscribe_message(prefix))
            self.connects += 1
            if self.connects > 1:
                self.reconnects += 1
            self.connected, self.connected_since = True, started
            if not self.first_connected:
                self.first_connected = started
            self.last_error = ""
            log.info("RIS Live: connected to %s, %d subscriptions", url,
                     len(self.view.settings.subscriptions()))
            pinger = asyncio.create_task(self._pinger(ws))
            try:
                await self._read(ws)
            finally:
                pinger.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pinger
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(3.0):
                    await ws.close()
        return self.clock() - started

    async def _pinger(self, ws: Any) -> None:
        while True:
            await asyncio.sleep(self.config.ping_interval_s)
            await ws.send(PING_MESSAGE)

    async def _read(self, ws: Any) -> None:
        while True:
            now = self.clock()
            since = max(self.last_message, self.connected_since)
            left = self.config.silence_timeout_s - (now - since)
            try:
                async with asyncio.timeout(max(0.0, left)):
                    frame = await ws.recv()
            except TimeoutError:
                self.emit(self.check_silence(self.clock()))
                self.last_error = (f"silent for {self.config.silence_timeout_s:g} s: "
                                   "closed to reconnect")
                raise ConnectionError(self.last_error) from None
            now = self.clock()
            self.last_message = now
            self.recent.append(now)
            points = self.view.handle_text(frame, now)
            if self.silent:
                self.silent = False
                points.append(self._feed_event(EVENT_RIS_FEED_RESTORED, now,
                                               "messages from RIS Live again"))
                log.info("RIS Live feed: messages again")
            if points:
                self.emit(points)
