"""RIPE RIS Live: our prefixes as the world's vantage points see them, per carrier.

Optional (`[bgp.ris_live]`). Two collectors in the `bgp` group:
- `ris_live` (streaming): the websocket client (client.py) feeding the view (view.py);
  emits hijack / unexpected-upstream / feed events the moment they are seen;
- `bgp_visibility` (polled, `blocking = False`: it only reads memory): `bgp_visibility`
  per prefix and via, `bgp_feed`, and the lost/restored judgement, every
  `bgp.ris_live.interval` (default `bgp.interval`, then `agent.interval`).
Status section: `ris_live`. See collectors/bgp/README.md ("RIS Live").
"""

from __future__ import annotations

from typing import Any

from agent.collector import Built, CollectorContext, PolledCollector, StreamingCollector
from agent.config import Config
from agent.points import Point
from collectors.bgp.config import BgpConfig
from collectors.bgp.rislive import metrics  # noqa: F401  (declares bgp_visibility, bgp_feed)
from collectors.bgp.rislive.client import RisLiveClient
from collectors.bgp.rislive.settings import ViewSettings
from collectors.bgp.rislive.view import RisView


def interval_s(config: Config) -> float:
    bgp: BgpConfig | None = config.bgp
    if bgp is not None and bgp.ris_live is not None and bgp.ris_live.interval_s is not None:
        return bgp.ris_live.interval_s
    if bgp is not None and bgp.interval_s is not None:
        return bgp.interval_s
    return config.agent.interval_s


def _has_sessions(config: Config) -> bool:
    return any(c.bgp for c in config.carriers)


class RisLive:
    """What the two collectors share: the view and the client."""

    def __init__(self, ctx: CollectorContext) -> None:
        config = ctx.config
        assert config.bgp is not None and config.bgp.ris_live is not None
        self.view = RisView(ViewSettings.from_config(config))
        self.emitter: Any = None
        self.client = RisLiveClient(config.bgp.ris_live, self.view, self._emit)

    def _emit(self, points: Any) -> None:
        points = list(points)
        if points and self.emitter is not None:
            self.emitter.ctx.emit(points)

    def status(self) -> dict[str, Any]:
        return {"feed": self.client.status(), **self.view.status()}

    def reconfigure(self, new: Config) -> bool:
        if new.bgp is None or new.bgp.ris_live is None:
            return False
        settings = ViewSettings.from_config(new)
        resubscribe = settings.subscriptions() != self.view.settings.subscriptions()
        self.view.reconfigure(settings)
        self.client.reconfigure(new.bgp.ris_live, resubscribe)
        return True


class RisLiveStreamCollector(StreamingCollector):
    name = "ris_live"

    def __init__(self, ctx: CollectorContext, shared: RisLive) -> None:
        super().__init__(ctx)
        self.shared = shared
        shared.emitter = self  # emit through the current ctx: a reload hands a new one

    async def run(self) -> None:
        await self.shared.client.run()

    async def reconfigure(self, new: Config) -> bool:
        """Kept across a reload while [bgp.ris_live] stays (a new URL or prefix list
        reconnects); removing it, or adding or removing every BGP session (which changes
        the group), restarts the group."""
        if _has_sessions(new) != _has_sessions(self.ctx.config):
            return False
        return self.shared.reconfigure(new)


class RisVisibilityCollector(PolledCollector):
    name = "bgp_visibility"
    blocking = False

    def __init__(self, ctx: CollectorContext, shared: RisLive) -> None:
        super().__init__(ctx)
        self.shared = shared

    @property
    def interval_s(self) -> float:
        return interval_s(self.ctx.config)

    def collect(self) -> list[Point]:
        client = self.shared.client
        now = client.clock()
        points = client.check_silence(now)
        points.extend(self.shared.view.evaluate(now, client.judging(now)))
        points.append(client.feed_point(now))
        return points

    async def reconfigure(self, new: Config) -> bool:
        if new.bgp is None or new.bgp.ris_live is None:
            return False
        return interval_s(new) == self.interval_s


def create(ctx: CollectorContext) -> Built:
    """The RIS Live collectors, or none without [bgp.ris_live]."""
    config = ctx.config
    if config.bgp is None or config.bgp.ris_live is None:
        return Built()
    shared = RisLive(ctx)
    return Built([RisLiveStreamCollector(ctx, shared), RisVisibilityCollector(ctx, shared)],
                 status={"ris_live": shared.status})

