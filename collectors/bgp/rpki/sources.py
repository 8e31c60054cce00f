"""VRP sources other than RTR: a JSON file (re-read when it changes) and a URL (polled).

Each keeps the last good set: a file or response that cannot be used is logged with
where it is wrong (one line), counted, and changes nothing. Parsing runs in a worker
thread so the loop keeps serving the BGP stream.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collectors.bgp.rpki.rov import VrpIndex
from collectors.bgp.rpki.vrp import ExpiryKey, VrpData, VrpFileError, parse_vrp_json

log = logging.getLogger(__name__)

KeepExpiry = Callable[[int, int, int], bool]


class JsonSource:
    """Common part: the current set, its age, the errors."""

    kind = "json"

    def __init__(self, name: str, on_update: Callable[[Any, bool], None],
                 refresh_s: float, stale_after_s: float, keep_expiry: KeepExpiry | None,
                 clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.on_update = on_update
        self.refresh_s = refresh_s
        self.stale_after_s = stale_after_s
        self.keep_expiry = keep_expiry
        self.clock = clock
        self.index: VrpIndex | None = None
        self.expires: dict[ExpiryKey, int] = {}
        self.serial: int | None = None  # loads so far
        self.updated_s = 0.0  # when the set in force was read (or re-confirmed)
        self.generated_s: float | None = None
        self.loads = 0
        self.errors = 0
        self.duplicates = 0
        self.last_errors: deque[str] = deque(maxlen=5)
        self.connected = False

    def age_s(self, now: float) -> float:
        """Age of the data: from the validator's own time stamp when it gives one."""
        born = self.generated_s if self.generated_s is not None else self.updated_s
        return now - born

    def stale(self, now: float | None = None) -> bool:
        if self.index is None:
            return True
        return self.age_s(now if now is not None else self.clock()) > self.stale_after_s

    async def _parse(self, raw: bytes) -> VrpData:
        """Parse in a worker thread; raises VrpFileError."""
        return await asyncio.to_thread(parse_vrp_json, raw, self.keep_expiry)

    def _install(self, data: VrpData) -> None:
        """Put a parsed set in force. On the loop, just before `on_update` re-validates the
        routes against it: installed from the worker thread, the new serial was seen on
        the loop before the routes were re-validated (a test read the counts of the old
        set under the new serial)."""
        self.index = data.index
        self.expires = data.expires
        self.generated_s = data.generated_s
        self.duplicates = data.duplicates
        self.loads += 1
        self.serial = self.loads
        data.index.serial = self.loads
        self.updated_s = self.clock()

    def _failed(self, reason: str) -> None:
        self.errors += 1
        self.last_errors.append(f"{time.strftime('%H:%M:%S')} {reason}")
        log.error("rpki: %s: %s (the previous VRP set stays in force)", self.name, reason)

    def status(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "source": self.name, "connected": self.connected, "serial": self.serial,
            "vrps": len(self.index) if self.index is not None else 0,
            "last_update_s": round(self.updated_s, 3) if self.updated_s else None,
            "generated_s": self.generated_s,
            "age_s": round(self.age_s(now), 1) if self.index is not None else None,
            "stale": self.stale(now), "loads": self.loads, "errors": self.errors,
            "duplicates": self.duplicates, "last_errors": list(self.last_errors),
        }


class FileSource(JsonSource):
    kind = "file"

    def __init__(self, path: Path, on_update: Callable[[Any, bool], None], refresh_s: float,
                 stale_after_s: float, keep_expiry: KeepExpiry | None,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(str(path), on_update, refresh_s, stale_after_s, keep_expiry, clock)
        self.path = path
        self._seen: tuple[int, int, int] | None = None

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.refresh_s)

    async def check(self) -> None:
        """Read the file when its identity, size or mtime changed since the last look."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            self.connected = False
            if self._seen != (0, 0, 0):
                self._seen = (0, 0, 0)
                self._failed(f"cannot read: {exc.strerror or exc}")
            return
        self.connected = True
        seen = (st.st_ino, st.st_size, st.st_mtime_ns)
        if seen == self._seen:
            return
        self._seen = seen
        try:
            raw = await asyncio.to_thread(self.path.read_bytes)
            data = await self._parse(raw)
        except VrpFileError as exc:
            self._failed(str(exc))
            return
        except OSError as exc:
            self._failed(f"cannot read: {exc.strerror or exc}")
            return
        self._install(data)
        log.info("rpki: %s: %d VRPs", self.name, len(data.index))
        self.on_update(self, True)


class UrlSource(JsonSource):
    kind = "url"

    def __init__(self, url: str, on_update: Callable[[Any, bool], None], refresh_s: float,
                 stale_after_s: float, keep_expiry: KeepExpiry | None,
                 timeout_s: float = 30.0, clock: Callable[[], float] = time.time) -> None:
        super().__init__(url, on_update, refresh_s, stale_after_s, keep_expiry, clock)
        self.url = url
        self.timeout_s = timeout_s
        self._etag = ""
        self._last_modified = ""

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.refresh_s)

    def _fetch(self) -> bytes | None:
        """The body, or None when unchanged (304)."""
        headers = {"Accept": "application/json", "User-Agent": "egress-agent"}
        if self._etag:
            headers["If-None-Match"] = self._etag
        if self._last_modified:
            headers["If-Modified-Since"] = self._last_modified
        # Imported here: urllib.request (and the email package under it) is 1.7 MB of RSS
        # that an agent without a VRP URL would carry for nothing.
        import urllib.error
        import urllib.request

        # the URL is http(s) only (collectors/bgp/config.py checks it)
        request = urllib.request.Request(self.url, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                body: bytes = response.read()
                self._etag = response.headers.get("ETag", "") or ""
                self._last_modified = response.headers.get("Last-Modified", "") or ""
                return body
        except urllib.error.HTTPError as exc:
            if exc.code == 304:
                return None
            raise

    async def check(self) -> None:
        try:
            raw = await asyncio.to_thread(self._fetch)
        except (OSError, ValueError) as exc:  # urllib's URLError and HTTPError included
            self.connected = False
            self._failed(f"fetch failed: {exc}")
            return
        self.connected = True
        if raw is None:
            self.updated_s = self.clock()  # confirmed unchanged
            self.on_update(self, False)
            return
        try:
            data = await self._parse(raw)
        except VrpFileError as exc:
            self._etag = self._last_modified = ""  # fetch it whole next time
            self._failed(str(exc))
            return
        self._install(data)
        self.on_update(self, True)


def http_date(seconds: float) -> str:
    return email.utils.formatdate(seconds, usegmt=True)
