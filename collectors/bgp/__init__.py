"""`bgp`: sessions with each carrier, what they send, our prefixes, watched destinations.

Two collectors share one in-memory BgpState (both run on the agent's loop, so no locks):
- `bgp` (streaming): supervises ExaBGP and applies its API stream as it arrives; emits
  `bgp_event` the moment something happens (session up/down, origin mismatch,
  more-specific, own prefix missing, path change).
- `bgp_session` (polled, `blocking = False`: it only reads memory): `bgp_session` per
  carrier and `bgp_prefix` per announced prefix and carrier every `bgp.interval`
  (default `agent.interval`).
With `[bgp.ris_live]` also `ris_live` and `bgp_visibility` (collectors/bgp/rislive), which
run even without sessions of our own.
Control commands: `bgp.lookup` {"address": A} or {"addresses": [...]}, `bgp.withdraw` and
`bgp.announce` {"carrier": C, "prefix": P}. Status section: `bgp`. See README.md here.
"""

from __future__ import annotations

from typing import Any

from agent.collector import Collector, CollectorContext, PolledCollector, StreamingCollector
from agent.config import Config
from agent.points import Point
from collectors.bgp.state import BgpState
from collectors.bgp.supervisor import Supervisor


def _interval_s(config: Config) -> float:
    if config.bgp is not None and config.bgp.interval_s is not None:
        return config.bgp.interval_s
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

    def __init__(self, ctx: CollectorContext, state: BgpState) -> None:
        super().__init__(ctx)
        self.state = state

    @property
    def interval_s(self) -> float:
        return _interval_s(self.ctx.config)

    def collect(self) -> list[Point]:
        return self.state.session_points() + self.state.prefix_points()

    async def reconfigure(self, new: Config) -> bool:
        """Kept across a reload unless its interval changes (the scheduler fixed it)."""
        return _interval_s(new) == self.interval_s


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


def create(ctx: CollectorContext) -> list[Collector]:
    config = ctx.config
    if config.bgp is None:
        return []
    if not any(c.bgp for c in config.carriers):
        return _ris_live(ctx)  # RIS Live works without sessions of our own
    state = BgpState(config)
    stream = BgpStreamCollector(ctx, state)
    control = BgpControl(state, stream)
    ctx.register_control("bgp.lookup", control.lookup)
    ctx.register_control("bgp.withdraw", control.withdraw)
    ctx.register_control("bgp.announce", control.announce)
    ctx.register_status("bgp", control.status)
    return [stream, BgpSessionCollector(ctx, state), *_ris_live(ctx)]


# ---- [bgp.ris_live]: RIPE RIS Live vantage points (collectors/bgp/rislive)

def _ris_live(ctx: CollectorContext) -> list[Collector]:
    from collectors.bgp import rislive

    return rislive.create(ctx)
