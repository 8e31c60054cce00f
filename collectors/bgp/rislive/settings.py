"""What the view needs of the config: our AS, our and watched prefixes, the carriers'
peer ASes and the `[bgp.ris_live]` thresholds."""

from __future__ import annotations

from dataclasses import dataclass

from agent.config import Config
from collectors.bgp.prefixes import Prefix


@dataclass(frozen=True)
class ViewSettings:
    local_as: int
    own: tuple[Prefix, ...]
    watch: tuple[Prefix, ...] = ()
    carriers: tuple[tuple[str, int], ...] = ()  # (name, peer_as)
    hijack_min_peers: int = 3
    drop_fraction: float = 0.5
    min_usual_peers: int = 3
    baseline_s: float = 3600.0

    @classmethod
    def from_config(cls, config: Config) -> ViewSettings:
        if config.bgp is None or config.bgp.ris_live is None:
            raise ValueError("no [bgp.ris_live] table")
        ris = config.bgp.ris_live
        own = tuple(dict.fromkeys(Prefix.parse(str(p)) for p in config.bgp.announce))
        own_texts = {p.text for p in own}
        watch = tuple(dict.fromkeys(Prefix.parse(str(p)) for p in config.bgp.watch
                                    if str(p) not in own_texts))
        return cls(
            local_as=config.bgp.local_as, own=own, watch=watch,
            carriers=tuple((c.name, c.bgp.peer_as) for c in config.carriers if c.bgp),
            hijack_min_peers=ris.hijack_min_peers, drop_fraction=ris.drop_fraction,
            min_usual_peers=ris.min_usual_peers, baseline_s=ris.baseline_s,
        )

    def subscriptions(self) -> list[str]:
        """The prefixes to subscribe to (each with its more-specifics)."""
        return [p.text for p in (*self.own, *self.watch)]

