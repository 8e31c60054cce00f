"""RTR client (RFC 8210 version 1, RFC 6810 version 0): VRPs from an RPKI cache.

One client per configured cache, a task on the agent's loop. It asks for version 1 and
falls back to 0 when the cache answers a Reset Query with Error Report 4 ("Unsupported
Protocol Version") or speaks version 0 (RFC 8210 section 7). After the first Reset Query
it keeps the data current with Serial Queries: at the cache's Serial Notify, and every
Refresh Interval (End of Data gives the cache's timers in version 1; version 0 uses
`[bgp.rpki] refresh`). A Cache Reset is answered with a Reset Query. Announcements and
withdrawals are buffered and applied together at End of Data, as the RFC asks, to the
client's own VrpIndex, then `on_update` is called.

An Error Report is logged (code, text) and counted; any error, a corrupt PDU or a closed
connection ends the session, which is re-established after a back-off (1 s doubling up to
the Retry Interval, at most 60 s) with a Serial Query when session id and serial are known,
else a Reset Query (also after a Serial Query at connect that got no answer: a restarted
StayRTR closes the connection rather than answer Cache Reset). Data not refreshed within
the Expire Interval is stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from collectors.bgp.rib import V4
from collectors.bgp.rpki.pdu import (
    CACHE_RESET,
    CACHE_RESPONSE,
    END_OF_DATA,
    ERROR_NAMES,
    ERROR_REPORT,
    IPV4_PREFIX,
    IPV6_PREFIX,
    ROUTER_KEY,
    SERIAL_NOTIFY,
    Pdu,
    RtrError,
    VersionFallback,
    error_report,
    parse_error_report,
    parse_header,
    parse_prefix_pdu,
    reset_query,
    serial_query,
)
from collectors.bgp.rpki.rov import VrpIndex

log = logging.getLogger(__name__)

DEFAULT_REFRESH_S = 3600.0
DEFAULT_RETRY_S = 600.0
DEFAULT_EXPIRE_S = 7200.0
BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 60.0
READ_TIMEOUT_S = 60.0  # a response in progress that stops for this long is a dead session


# ------------------------------------------------------------------ the client


@dataclass
class RtrStats:
    connects: int = 0
    sessions: int = 0  # responses completed (End of Data)
    resets: int = 0  # Reset Queries sent
    serial_queries: int = 0
    notifies: int = 0
    cache_resets: int = 0
    error_reports: int = 0
    announced: int = 0
    withdrawn: int = 0
    router_keys: int = 0  # version 1 BGPsec keys: skipped
    last_errors: deque[str] = field(default_factory=lambda: deque(maxlen=5))


class RtrClient:
    """Keeps `index` equal to what the cache at host:port serves."""

    def __init__(self, host: str, port: int, on_update: Callable[[RtrClient, bool], None],
                 refresh_s: float = DEFAULT_REFRESH_S, connect_timeout_s: float = 10.0,
                 version: int = 1, clock: Callable[[], float] = time.time) -> None:
        self.host = host
        self.port = port
        self.name = f"rtr://{host}:{port}" if ":" not in host else f"rtr://[{host}]:{port}"
        self.on_update = on_update
        self.clock = clock
        self.version = version
        self.index: VrpIndex | None = None
        self.session_id: int | None = None
        self.serial: int | None = None
        self.refresh_s = refresh_s
        self.retry_s = DEFAULT_RETRY_S
        self.expire_s = DEFAULT_EXPIRE_S
        self.connect_timeout_s = connect_timeout_s
        self.connected = False
        self.updated_s = 0.0  # wall time of the last End of Data
        # what the last incremental update changed in `index`, in order (None: a new index)
        self.last_changes: list[tuple[bool, int, int, int, int, int]] | None = None
        self.stats = RtrStats()
        self._writer: asyncio.StreamWriter | None = None

    # ---------------------------------------------------------------- state

    def stale(self, now: float | None = None) -> bool:
        """No End of Data within the Expire Interval (or none yet)."""
        if self.index is None:
            return True
        return (now if now is not None else self.clock()) - self.updated_s > self.expire_s

    def status(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "source": self.name, "connected": self.connected, "version": self.version,
            "session_id": self.session_id, "serial": self.serial,
            "vrps": len(self.index) if self.index is not None else 0,
            "last_update_s": round(self.updated_s, 3) if self.updated_s else None,
            "age_s": round(now - self.updated_s, 1) if self.updated_s else None,
            "stale": self.stale(now),
            "timers_s": {"refresh": self.refresh_s, "retry": self.retry_s,
                         "expire": self.expire_s},
            "connects": self.stats.connects, "responses": self.stats.sessions,
            "reset_queries": self.stats.resets, "serial_queries": self.stats.serial_queries,
            "serial_notifies": self.stats.notifies, "cache_resets": self.stats.cache_resets,
            "error_reports": self.stats.error_reports, "announced": self.stats.announced,
            "withdrawn": self.stats.withdrawn, "last_errors": list(self.stats.last_errors),
        }

    def _error(self, text: str) -> None:
        self.stats.last_errors.append(f"{time.strftime('%H:%M:%S')} {text}")

    # ---------------------------------------------------------------- life

    async def run(self) -> None:
        """Forever: a session, then a back-off, then the next session."""
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except VersionFallback as exc:
                log.warning("rpki: %s: %s; using RTR version %d", self.name, exc, exc.version)
                self._error(f"{exc}; falling back to version {exc.version}")
                self.version = exc.version
                self.session_id = self.serial = None
                attempt = 0
                continue
            except (OSError, asyncio.IncompleteReadError, TimeoutError, RtrError) as exc:
                reason = str(exc) or type(exc).__name__
                if isinstance(exc, asyncio.IncompleteReadError):
                    reason = "connection closed by the cache"
                log.warning("rpki: %s: %s", self.name, reason)
                self._error(reason)
            finally:
                self.connected = False
                if self._writer is not None:
                    self._writer.close()
                    self._writer = None
            if time.monotonic() - started > 60:
                attempt = 0
            delay = min(BACKOFF_MAX_S, self.retry_s, BACKOFF_START_S * 2 ** attempt)
            attempt += 1
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        async with asyncio.timeout(self.connect_timeout_s):
            reader, writer = await asyncio.open_connection(self.host, self.port)
        self._writer = writer
        with contextlib.suppress(OSError):
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET,
                                                       socket.SO_KEEPALIVE, 1)
        self.connected = True
        self.stats.connects += 1
        log.info("rpki: %s connected (version %d)", self.name, self.version)
        if self.session_id is not None and self.serial is not None:
            try:
                await self._query(reader, writer, reset=False)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, RtrError):
                # A restarted cache has a new session id, and some (StayRTR) close the
                # connection instead of answering Cache Reset: start over with a Reset
                # Query next time (the data in force stays until its answer).
                self.session_id = self.serial = None
                raise
        else:
            await self._query(reader, writer, reset=True)
        while True:
            # Wait for a Serial Notify or the refresh timer, then ask for what changed.
            try:
                async with asyncio.timeout(self.refresh_s):
                    pdu = await self._read(reader)
            except TimeoutError:
                await self._query(reader, writer, reset=False)
                continue
            if pdu.type == SERIAL_NOTIFY:
                self.stats.notifies += 1
                if pdu.field == self.session_id and len(pdu.body) >= 4 and \
                        pdu.serial() == self.serial:
                    continue  # nothing new for us
                await self._query(reader, writer, reset=False)
            elif pdu.type == ERROR_REPORT:
                self._error_report(pdu)
            elif pdu.type == CACHE_RESET:
                self.stats.cache_resets += 1
                await self._query(reader, writer, reset=True)
            else:
                raise RtrError(f"unexpected PDU type {pdu.type} between responses")

    async def _read(self, reader: asyncio.StreamReader) -> Pdu:
        header = await reader.readexactly(8)
        version, kind, value, length = parse_header(header)
        body = await reader.readexactly(length - 8) if length > 8 else b""
        pdu = Pdu(version, kind, value, body, header + body)
        if kind == ERROR_REPORT and value == 4 and version < self.version:
            raise VersionFallback(version, "the cache does not speak version "
                                  f"{self.version} (Error Report: Unsupported Protocol "
                                  "Version)")
        if version != self.version:
            if version < self.version and self.session_id is None:
                raise VersionFallback(version, f"the cache answered in version {version}")
            if kind != ERROR_REPORT:
                raise RtrError(f"Unexpected Protocol Version: PDU of version {version} in a "
                               f"version {self.version} session")
        return pdu

    def _error_report(self, pdu: Pdu) -> None:
        code, text = parse_error_report(pdu)
        self.stats.error_reports += 1
        name = ERROR_NAMES.get(code, f"code {code}")
        raise RtrError(f"Error Report from the cache: {name} ({code})"
                       + (f": {text}" if text else ""))

    async def _query(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     reset: bool) -> None:
        """Send a Reset or Serial Query and apply the whole response at End of Data."""
        if reset or self.session_id is None or self.serial is None:
            reset = True
            self.stats.resets += 1
            writer.write(reset_query(self.version))
        else:
            self.stats.serial_queries += 1
            writer.write(serial_query(self.version, self.session_id, self.serial))
        await writer.drain()
        changes: list[tuple[bool, int, int, int, int, int]] = []
        session_id: int | None = None
        while True:
            async with asyncio.timeout(READ_TIMEOUT_S):
                pdu = await self._read(reader)
            kind = pdu.type
            if kind in (IPV4_PREFIX, IPV6_PREFIX):
                if session_id is None:
                    raise RtrError("Prefix PDU before Cache Response")
                changes.append(parse_prefix_pdu(pdu))
            elif kind == CACHE_RESPONSE:
                session_id = pdu.field
                if not reset and session_id != self.session_id:
                    raise RtrError(f"Cache Response for session {session_id}, expected "
                                   f"{self.session_id}")
            elif kind == END_OF_DATA:
                if session_id is None or pdu.field != session_id:
                    raise RtrError("End of Data without a matching Cache Response")
                self._end_of_data(pdu, session_id, changes, reset)
                return
            elif kind == CACHE_RESET:
                if reset:
                    raise RtrError("Cache Reset in answer to a Reset Query")
                self.stats.cache_resets += 1
                await self._query(reader, writer, reset=True)
                return
            elif kind == ERROR_REPORT:
                self._error_report(pdu)
            elif kind == SERIAL_NOTIFY:
                self.stats.notifies += 1  # answered by this query anyway
            elif kind == ROUTER_KEY:
                self.stats.router_keys += 1
            else:
                # Unknown types (ASPA of version 2, ...) cannot arrive in a version we
                # speak: say so to the cache and start over.
                with contextlib.suppress(OSError):
                    writer.write(error_report(self.version, 5, pdu.raw,
                                              f"unsupported PDU type {kind}"))
                raise RtrError(f"unsupported PDU type {kind}")

    def _end_of_data(self, pdu: Pdu, session_id: int,
                     changes: list[tuple[bool, int, int, int, int, int]], reset: bool) -> None:
        body = pdu.body
        if pdu.version >= 1:
            if len(body) != 16:
                raise RtrError(f"corrupt End of Data: {len(body) + 8} bytes")
            serial, refresh, retry, expire = struct.unpack("!IIII", body)
            self.refresh_s, self.retry_s, self.expire_s = float(refresh), float(retry), \
                float(expire)
        else:
            if len(body) != 4:
                raise RtrError(f"corrupt End of Data: {len(body) + 8} bytes")
            (serial,) = struct.unpack("!I", body)
        index = VrpIndex() if reset or self.index is None else self.index
        if index is not self.index:
            index.start_bulk()
        announced = withdrawn = 0
        applied: list[tuple[bool, int, int, int, int, int]] = []
        for change in changes:
            announce, family, network, length, max_length, asn = change
            table = index.v4 if family == V4 else index.v6
            if announce:
                if table.add(network, length, max_length, asn):
                    announced += 1
                    applied.append(change)
                else:
                    self._error(f"duplicate announcement {network:x}/{length}-{max_length} "
                                f"AS{asn} (ignored)")
            elif table.remove(network, length, max_length, asn):
                withdrawn += 1
                applied.append(change)
            else:
                self._error(f"withdrawal of unknown record {network:x}/{length}-{max_length} "
                            f"AS{asn} (ignored)")
        index.end_bulk()
        index.serial = serial
        self.last_changes = None if index is not self.index else applied
        self.index = index
        self.session_id = session_id
        self.serial = serial
        self.updated_s = self.clock()
        self.stats.sessions += 1
        self.stats.announced += announced
        self.stats.withdrawn += withdrawn
        log.info("rpki: %s serial %d: +%d -%d, %d VRPs", self.name, serial, announced,
                 withdrawn, len(index))
        # called even when nothing changed: the data is fresh again
        self.on_update(self, reset or bool(announced or withdrawn))
