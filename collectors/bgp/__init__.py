"""`bgp`: sessions with each carrier, what they send, our prefixes, watched destinations.

Two collectors share one in-memory BgpState (both run on the agent's loop, so no locks):
- `bgp` (streaming): supervises ExaBGP and applies its API stream as it arrives; emits
  `bgp_event` the moment something happens (session up/down, origin mismatch,
  more-specific, own prefix missing, path change).
- `bgp_session` (polled, `blocking = False`: it only reads memory): `bgp_session` per
  carrier and `bgp_prefix` per announced prefix and carrier every `bgp.interval`
  (default `agent.interval`).
- `bgp_rpki` (streaming, only with `[bgp.rpki]`): RPKI sources (RTR caches, VRP file or
  URL) and route origin validation of every route and of our prefixes (collectors/bgp/rpki);
  adds `rpki_*` fields to `bgp_session`, `rpki` to `bgp_prefix`, and `bgp_rpki` points.
With `[bgp.ris_live]` also `ris_live` and `bgp_visibility` (collectors/bgp/rislive), which
run even without sessions of our own.
Control commands: `bgp.lookup` {"address": A} or {"addresses": [...]}, `bgp.withdraw` and
`bgp.announce` {"carrier": C, "prefix": P}. Status sections: `bgp`, `rpki`. See README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from agent.collector import Built, CollectorContext, PolledCollector, StreamingCollector
from agent.config import Config
from agent.points import Point
from collectors.bgp import metrics  # noqa: F401  (declares bgp_session, bgp_event, bgp_prefix)
from collectors.bgp.config import BgpConfig, RpkiConfig
from collectors.bgp.rpki import RpkiManager
from collectors.bgp.state import BgpState
from collectors.bgp.supervisor import Supervisor


def _interval_s(config: Config) -> float:
    bgp: BgpConfig | None = config.bgp
    if bgp is not None and bgp.interval_s is not None:
        return bgp.interval_s
    return config.agent.interval_s


class BgpStreamCollector(StreamingCollector):
    name = "bgp"

    def __init__(self, ctx: CollectorContext, state: BgpState) -> None:
        super().__init__(ctx)
        self.state = state
        # emit through the current ctx: a reload hands the collector a new one
        self.supervisor = Supervisor(ctx.config, state, lambda points: self.ctx.emit(points),
                                     ctx.data_dir)

    async def run(self) -> None:
        await self.supervisor.run()

    async def reconfigure(self, new: Config) -> bool:
        """SIGHUP without flapping every session: the state takes the new carriers and
        prefixes, ExaBGP re-reads its config. A new executable, AS or router id needs a
        restart (False)."""
        old = self.ctx.config.bgp
        if new.bgp is None or old is None or not any(c.bgp for c in new.carriers):
            return False
        if (new.bgp.exabgp, new.bgp.local_as, new.bgp.router_id) != (
                old.exabgp, old.local_as, old.router_id):
            return False
        if (new.bgp.ris_live is None) != (old.ris_live is None):
            return False  # [bgp.ris_live] added or removed: the group is rebuilt
        points = self.state.reconfigure(new)
        self.supervisor.reload(new)
        if points:
            self.ctx.emit(points)
        return True

    def close(self) -> None:
        self.supervisor.kill_now()


class BgpSessionCollector(PolledCollector):
    name = "bgp_session"
    blocking = False

    def __init__(self, ctx: CollectorContext, state: BgpState,
                 rpki: RpkiCollector | None = None) -> None:
        super().__init__(ctx)
        self.state = state
        self.rpki = rpki

    @property
    def interval_s(self) -> float:
        return _interval_s(self.ctx.config)

    def collect(self) -> list[Point]:
        points = self.state.session_points() + self.state.prefix_points()
        if self.rpki is not None and self.rpki.manager is not None:
            points += self.rpki.manager.points()
        return points

    async def reconfigure(self, new: Config) -> bool:
        """Kept across a reload unless its interval changes (the scheduler fixed it)."""
        return _interval_s(new) == self.interval_s


# ---------------------------------------------------------------- RPKI ([bgp.rpki])


def _rpki_config(config: Config) -> RpkiConfig | None:
    return config.bgp.rpki if config.bgp is not None else None


class RpkiCollector(StreamingCollector):
    """Runs the RPKI manager (collectors/bgp/rpki) while `[bgp.rpki]` is set; a reload
    with another `[bgp.rpki]` replaces the manager (sources, index) without touching
    ExaBGP or the sessions."""

    name = "bgp_rpki"

    def __init__(self, ctx: CollectorContext, state: BgpState) -> None:
        super().__init__(ctx)
        self.state = state
        self.manager: RpkiManager | None = None
        self._changed = asyncio.Event()

    async def run(self) -> None:
        while True:
            self._changed.clear()
            config = _rpki_config(self.ctx.config)
            task = None
            if config is not None:
                self.manager = RpkiManager(config, self.state,
                                           lambda points: self.ctx.emit(points))
                task = asyncio.ensure_future(self.manager.run())
            changed = asyncio.ensure_future(self._changed.wait())
            try:
                waiting = {changed} | ({task} if task is not None else set())
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if task is not None and task.done():
                    task.result()  # raises what stopped it: the scheduler restarts us
            finally:
                changed.cancel()
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                if self.manager is not None:
                    self.manager.close()
                    self.manager = None

    async def reconfigure(self, new: Config) -> bool:
        if _rpki_config(new) != _rpki_config(self.ctx.config):
            self._changed.set()  # read once the core has set ctx.config to the new one
        return True

    def status(self) -> dict[str, Any]:
        if self.manager is None:
            return {"configured": False}
        return self.manager.status()


class BgpControl:
    """Control-socket handlers (run on the loop, like the collectors)."""

    def __init__(self, state: BgpState, stream: BgpStreamCollector) -> None:
        self.state = state
        self.stream = stream

    def lookup(self, args: dict[str, Any]) -> Any:
        if "addresses" in args:
            addresses = args["addresses"]
            if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
                raise ValueError("addresses: expected a list of strings")
            return {address: self.state.lookup(address) for address in addresses}
        address = args.get("address")
        if not isinstance(address, str):
            raise ValueError("address: expected an IP address string")
        return self.state.lookup(address)

    def _command(self, action: str, args: dict[str, Any]) -> Any:
        carrier, prefix = args.get("carrier"), args.get("prefix")
        if not isinstance(carrier, str) or not isinstance(prefix, str):
            raise ValueError("expected {\"carrier\": NAME, \"prefix\": PREFIX}")
        command, points = self.state.command_for(action, carrier, prefix)
        if points:
            self.stream.ctx.emit(points)
        try:
            self.stream.supervisor.send_command(command)
        except RuntimeError:
            self.state.pending.pop()
            return {"sent": False, "command": command,
                    "note": "ExaBGP not running; applied at its next start"}
        return {"sent": True, "command": command}

    def withdraw(self, args: dict[str, Any]) -> Any:
        return self._command("withdraw", args)

    def announce(self, args: dict[str, Any]) -> Any:
        return self._command("announce", args)

    def status(self) -> dict[str, Any]:
        return {"exabgp": self.stream.supervisor.status(), **self.state.status()}


def create(ctx: CollectorContext) -> Built:
    config = ctx.config
    if config.bgp is None:
        return Built()
    if not any(c.bgp for c in config.carriers):
        return _ris_live(ctx)  # RIS Live works without sessions of our own
    state = BgpState(config)
    stream = BgpStreamCollector(ctx, state)
    control = BgpControl(state, stream)
    rpki = RpkiCollector(ctx, state)  # idles without [bgp.rpki]; a reload may add it
    ris_live = _ris_live(ctx)
    return Built(
        [rpki, stream, BgpSessionCollector(ctx, state, rpki), *ris_live.collectors],
        controls={"bgp.lookup": control.lookup, "bgp.withdraw": control.withdraw,
                  "bgp.announce": control.announce},
        status={"bgp": control.status, "rpki": rpki.status, **ris_live.status},
    )


# ---- [bgp.ris_live]: RIPE RIS Live vantage points (collectors/bgp/rislive)

def _ris_live(ctx: CollectorContext) -> Built:
    from collectors.bgp import rislive

    return rislive.create(ctx)
