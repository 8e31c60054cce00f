"""What one probe round gave: the raw outcomes (`RoundResult`, from any prober) and the
same with its statistics and where it went (`ProbeResult`, from the engine).

Records only, no I/O: every prober returns a RoundResult, so the engine, the collector and
the CLI never depend on one prober's module to read another's result."""

from __future__ import annotations

from dataclasses import dataclass

from collectors.probes.stats import RttStats


@dataclass
class RoundResult:
    """Outcomes of the probes that left (ms, or None: lost), in send order, and what was
    seen but not counted. `send_errors` counts probes the agent itself could not send:
    they are not in `rtts_ms`, so they never show as network loss."""

    rtts_ms: list[float | None]
    late: int = 0
    duplicates: int = 0
    send_errors: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One round of one (target, carrier, method), `method` as configured (the tag)."""

    target: str
    carrier: str
    method: str
    address: str | None
    round: RoundResult
    stats: RttStats
