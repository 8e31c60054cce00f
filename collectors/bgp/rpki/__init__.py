"""RPKI route origin validation (RFC 6811) of what each carrier sends and of what we
announce, with VRPs from RTR caches (rtr.py), a JSON file or a URL (sources.py).

The manager runs every configured source on the agent's loop; the set in force is the
most preferred source's (RTR caches as listed, then vrp_file, then vrp_url) that has data
and is not stale, else the most preferred one with data (flagged stale: a monitor keeps
the last data rather than turning every count into not-found). Each source keeps its own
index, so N sources cost N indexes. When the set in force changes, the routes the change
can affect are validated again (validation.py) on the loop, in one go; every route when
that is most of them (seconds for three full tables: bench/bgp.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from agent.points import FieldValue, Point
from collectors.bgp.config import RpkiConfig
from collectors.bgp.rpki import metrics  # noqa: F401  (declares bgp_rpki)
from collectors.bgp.rpki.rtr import RtrClient
from collectors.bgp.rpki.sources import FileSource, UrlSource
from collectors.bgp.rpki.validation import RovState

if TYPE_CHECKING:  # state.py imports validation.py from this package
    from collectors.bgp.state import BgpState

log = logging.getLogger(__name__)

CHECK_EVERY_S = 10.0  # staleness and ROA expiry checks

Source = RtrClient | FileSource | UrlSource


class RpkiManager:
    def __init__(self, config: RpkiConfig, state: BgpState,
                 emit: Callable[[Iterable[Point]], None],
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.state = state
        self.emit = emit
        self.clock = clock
        self.rov = RovState(state.local_as, clock)
        state.rov = self.rov
        self.sources: list[Source] = [
            RtrClient(host, port, self._updated, refresh_s=config.refresh_s,
                      connect_timeout_s=config.timeout_s, clock=clock)
            for host, port in config.rtr
        ]
        if config.vrp_file is not None:
            self.sources.append(FileSource(config.vrp_file, self._updated, config.refresh_s,
                                           config.stale_after_s, self._keep_expiry, clock))
        if config.vrp_url is not None:
            self.sources.append(UrlSource(config.vrp_url, self._updated, config.refresh_s,
                                          config.stale_after_s, self._keep_expiry,
                                          config.timeout_s, clock))
        self.active: Source | None = None
        self._was_stale: dict[str, bool] = {}

    def _keep_expiry(self, family: int, network: int, length: int) -> bool:
        """Keep the expiry of VRPs that cover, or lie inside, one of our prefixes."""
        bits = 32 if family == 4 else 128
        for prefix in self.state.own:
            if prefix.family != family:
                continue
            shortest = min(length, prefix.length)
            shift = bits - shortest
            if network >> shift == prefix.network >> shift:
                return True
        return False

    def _choose(self) -> Source | None:
        now = self.clock()
        with_data = [s for s in self.sources if s.index is not None]
        fresh = [s for s in with_data if not s.stale(now)]
        chosen = fresh or with_data
        return chosen[0] if chosen else None

    def _updated(self, source: Source, changed: bool) -> None:
        """A source has a new set (changed) or confirmed its set (not changed)."""
        chosen = self._choose()
        if chosen is not self.active or (changed and source is chosen):
            self.apply(chosen)
        self._check_stale()

    def apply(self, source: Source | None) -> None:
        self.active = source
        if source is None:
            return
        expires = getattr(source, "expires", {})
        points = self.rov.set_vrps(source.index, expires, source.name,
                                   self.state.sessions.values(), self.state.own,
                                   getattr(source, "last_changes", None))
        log.info("rpki: %s in force (%d VRPs, serial %s); %d routes re-validated in %.0f ms",
                 source.name, len(source.index or ()), source.serial,
                 self.rov.last_revalidated_routes, self.rov.last_revalidation_s * 1000)
        if points:
            self.emit(points)

    def _check_stale(self) -> None:
        now = self.clock()
        points = []
        for source in self.sources:
            stale = source.stale(now) and source.index is not None
            if stale and not self._was_stale.get(source.name):
                age = now - source.updated_s
                points.append(self.rov.stale_event(
                    source.name, f"VRP data not refreshed for {age:.0f} s"))
                log.warning("rpki: %s is stale (%.0f s since the last update)", source.name,
                            age)
            self._was_stale[source.name] = stale
        chosen = self._choose()
        if chosen is not self.active:
            self.apply(chosen)
        self.rov.stale = self.active is not None and self.active.stale(now)
        if points:
            self.emit(points)

    async def run(self) -> None:
        tasks = [asyncio.ensure_future(source.run()) for source in self.sources]
        try:
            while True:
                await asyncio.sleep(CHECK_EVERY_S)
                for task in tasks:
                    if task.done() and not task.cancelled() and task.exception():
                        raise task.exception()  # type: ignore[misc]
                self._check_stale()
                points = self.rov.check_own(self.state.own)  # ROA expiries come closer
                if points:
                    self.emit(points)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def close(self) -> None:
        if self.state.rov is self.rov:
            self.state.rov = None

    def points(self) -> list[Point]:
        """`bgp_rpki`: one point per source."""
        now = self.clock()
        points = []
        for source in self.sources:
            index = source.index
            fields: dict[str, FieldValue] = {
                "vrps": len(index) if index is not None else 0,
                "vrps_v4": len(index.v4) if index is not None else 0,
                "vrps_v6": len(index.v6) if index is not None else 0,
                "serial": source.serial if source.serial is not None else 0,
                "age_s": round(now - source.updated_s, 1) if source.updated_s else -1.0,
                "stale": source.stale(now),
                "connected": source.connected,
                "in_force": source is self.active,
            }
            points.append(Point("bgp_rpki", {"source": source.name}, fields))
        return points

    def status(self) -> dict[str, Any]:
        return {
            "sources": [dict(s.status(), in_force=s is self.active) for s in self.sources],
            **self.rov.status(),
        }
