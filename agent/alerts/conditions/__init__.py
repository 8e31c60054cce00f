"""The built-in conditions (agent/alerts/schema.py lists them with their keys).

Each condition names the measurements it reads, judges each point of them, and tells the
engine whether its alert (one per label set) is active. Windows are judged on the points'
own timestamps; the life cycle (`for`, firing, resolved) on the engine's clock.
Levels that can hover use a lower level to resolve than to fire (hysteresis).

This package holds one module per concern (links, billing, bgp, rislive, quality,
agent_self), the shared base in base.py; CLASSES here is the one list of them.
"""

from __future__ import annotations

from typing import Any

from agent.alerts.conditions.agent_self import CollectorOverrun, OutputLagging, PointsDropped
from agent.alerts.conditions.base import Condition
from agent.alerts.conditions.bgp import (
    BgpFlapping,
    BgpSessionDown,
    ExabgpDown,
    MoreSpecific,
    OriginMismatch,
    OwnPrefixMissing,
    PrefixesCollapsed,
    RpkiOwnInvalid,
    UnexpectedPath,
)
from agent.alerts.conditions.billing import Commit, CommitProjected
from agent.alerts.conditions.links import RoutingFailed, UplinkDown, Utilization
from agent.alerts.conditions.quality import CarrierLoss, LatencyShift, QualityBad
from agent.alerts.conditions.rislive import (
    RisFeedSilent,
    RisHijack,
    RisUnexpectedUpstream,
    RisVisibilityLost,
)
from agent.alerts.engine import AlertEngine
from agent.alerts.schema import CONDITIONS

CLASSES: dict[str, type[Condition]] = {
    cls.name: cls for cls in (
        UplinkDown, RoutingFailed, Utilization, Commit, CommitProjected, BgpSessionDown,
        BgpFlapping, PrefixesCollapsed, ExabgpDown, OwnPrefixMissing, OriginMismatch,
        RpkiOwnInvalid, MoreSpecific, UnexpectedPath, QualityBad, CarrierLoss, LatencyShift,
        OutputLagging, PointsDropped, CollectorOverrun,
        RisHijack, RisVisibilityLost, RisUnexpectedUpstream, RisFeedSilent,
    )
}
assert set(CLASSES) == set(CONDITIONS), "every condition in the schema has a class"


def build_conditions(engine: AlertEngine, config: Any) -> list[Condition]:
    return [CLASSES[rule.name](engine, config) for rule in config.alerts.rules if rule.enabled]
