"""An agent config with the RIS Live test carriers and our prefixes (tests/rislive/replay.py)."""

from __future__ import annotations

from typing import Any

from agent.config import Config, parse_config
from tests.rislive.replay import CARRIERS, LOCAL_AS, OWN4, OWN6


def make_config(announce: list[str] | None = None, watch: list[str] | None = None,
                **ris: Any) -> Config:
    carriers = [{"name": name, "interface": name, "bgp": {
        "peer": f"100.64.{i}.1", "peer_as": asn, "local_address": f"100.64.{i}.2"}}
        for i, (name, asn) in enumerate(CARRIERS.items(), start=1)]
    return parse_config({"carriers": carriers, "bgp": {
        "local_as": LOCAL_AS, "router_id": "100.64.1.2",
        "announce": announce if announce is not None else [OWN4, OWN6],
        "watch": watch or [], "ris_live": ris}})
