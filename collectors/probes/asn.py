"""Origin AS of a traceroute hop from the agent's own BGP tables (`bgp.lookup`).

Inside the daemon the BGP collector's handler is called directly; from the CLI the running
daemon is asked over its control socket. Without either there is no annotation at all
(the AS fields are omitted), which is different from "this hop has no route" (None).
`bgp.lookup` answers `{CARRIER: {"prefix": ..., "origin_as": ..., "as_path": [...]}}`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collectors.probes.traceroute import AsLookup


class AsLookupUnavailable(Exception):
    """No BGP tables to ask (daemon not running, BGP not enabled): annotate nothing."""


def origin_from_result(result: Any, carrier: str) -> int | None:
    """The carrier's own origin AS for the address, else any carrier's, else None."""
    if not isinstance(result, dict):
        return None
    entries = [result.get(carrier)] + [v for k, v in sorted(result.items()) if k != carrier]
    for entry in entries:
        if isinstance(entry, dict):
            origin = entry.get("origin_as")
            if isinstance(origin, int) and not isinstance(origin, bool):
                return origin
    return None


def handler_lookup(handler: Callable[[dict[str, Any]], Any], carrier: str) -> AsLookup:
    """Lookup through the in-process `bgp.lookup` handler (daemon)."""

    async def lookup(address: str) -> int | None:
        try:
            answer = handler({"address": address})
            if inspect.isawaitable(answer):
                answer = await answer
        except Exception as exc:
            raise AsLookupUnavailable(str(exc)) from None
        return origin_from_result(answer, carrier)

    return lookup


def control_socket_lookup(socket_path: Path, carrier: str, timeout_s: float = 2.0) -> AsLookup:
    """Lookup through the running daemon's control socket (CLI)."""
    from agent.control import ControlError, call

    async def lookup(address: str) -> int | None:
        try:
            answer = await asyncio.to_thread(
                call, socket_path, "bgp.lookup", {"address": address}, timeout_s
            )
        except ControlError as exc:
            raise AsLookupUnavailable(str(exc)) from None
        return origin_from_result(answer, carrier)

    return lookup
