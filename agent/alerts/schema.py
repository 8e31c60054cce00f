"""The built-in alert conditions: names, defaults and the range of every tunable key.

Light on purpose (no imports from the engine): agent/config/alerts.py makes `[alerts]` from
it, docs/configuration.md documents the same table. A key's kind is one of `pct` (a
number in [lo, hi]), `number`, `int`, `duration` (a string such as `5m`) or `choice`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Param:
    default: Any
    kind: str  # pct | number | int | duration | choice
    lo: float = 0.0
    hi: float = 0.0
    choices: tuple[str, ...] = ()
    doc: str = ""


@dataclass(frozen=True)
class ConditionSpec:
    alertnames: tuple[str, ...]
    severity: str  # the default; utilization has both
    for_s: float
    doc: str
    params: dict[str, Param] = field(default_factory=dict)


def _d(default: str, lo: float, hi: float, doc: str) -> Param:
    return Param(default, "duration", lo, hi, doc=doc)


CONDITIONS: dict[str, ConditionSpec] = {
    "uplink_down": ConditionSpec(
        ("UplinkDown",), "critical", 0.0,
        "a carrier uplink is down (link_event down/deleted, or `link` oper_up false); "
        "resolved when it is up"),
    "routing_failed": ConditionSpec(
        ("RoutingCheckFailed",), "critical", 0.0,
        "a routing check of an uplink failed (link_event routing_failed, or a false "
        "route/gateway/egress *_ok field); resolved when all pass"),
    "utilization": ConditionSpec(
        ("UplinkUtilization",), "warning", 300.0,
        "rx or tx of an uplink above a share of committed_mbps (else link speed)",
        {
            "warning_pct": Param(80.0, "pct", 1, 1000, doc="warning level, % of commit"),
            "critical_pct": Param(95.0, "pct", 1, 1000, doc="critical level, % of commit"),
            "hysteresis_pct": Param(5.0, "pct", 0, 50,
                                    doc="resolved only below level minus this"),
        }),
    "commit": ConditionSpec(
        ("CommitExceeded",), "critical", 0.0,
        "this month's 95th percentile (billing p95_bps) above the commit",
        {"hysteresis_pct": Param(2.0, "pct", 0, 50,
                                 doc="resolved only below commit minus this %")}),
    "commit_projected": ConditionSpec(
        ("CommitProjected",), "warning", 0.0,
        "the month's p95 ends above the commit if the rest of the month looks like the "
        "last `window` (from the billing samples under data_dir/billing)",
        {
            "window": _d("7d", 3600, 31 * 86400, "history the projection repeats"),
            "hysteresis_pct": Param(2.0, "pct", 0, 50,
                                    doc="resolved only below commit minus this %"),
        }),
    "bgp_session_down": ConditionSpec(
        ("BgpSessionDown",), "critical", 30.0,
        "a carrier's BGP session not established (bgp_session state other than up; "
        "exabgp_down is left to exabgp_down)"),
    "bgp_flapping": ConditionSpec(
        ("BgpSessionFlapping",), "warning", 0.0,
        "`flaps` established sessions lost within `window` (bgp_session flaps)",
        {
            "flaps": Param(3, "int", 1, 10000, doc="flaps within the window"),
            "window": _d("10m", 10, 86400, "the window"),
        }),
    "bgp_prefixes_collapsed": ConditionSpec(
        ("BgpPrefixesCollapsed",), "critical", 0.0,
        "a carrier's v4 or v6 prefix count fell by more than drop_pct within window while "
        "the session stayed up; resolved when it is back above that level",
        {
            "drop_pct": Param(50.0, "pct", 1, 100, doc="fall, % of the window's highest"),
            "window": _d("1m", 1, 3600, "the window"),
            "min_prefixes": Param(100, "int", 1, 10_000_000,
                                  doc="tables smaller than this are not judged"),
        }),
    "exabgp_down": ConditionSpec(
        ("ExabgpNotRunning",), "critical", 30.0,
        "ExaBGP is not running (bgp_session state exabgp_down)"),
    "own_prefix_missing": ConditionSpec(
        ("OwnPrefixNotAnnounced",), "warning", 30.0,
        "a session is up but one of bgp.announce is not announced to it "
        "(bgp_prefix announced false, bgp_event own_prefix_missing)"),
    "origin_mismatch": ConditionSpec(
        ("OwnPrefixOriginMismatch",), "critical", 0.0,
        "our prefix seen from a carrier with another origin AS (bgp_event origin_mismatch, "
        "bgp_prefix origin_as); resolved when the carrier shows our origin or none"),
    "rpki_own_invalid": ConditionSpec(
        ("OwnPrefixRpkiInvalid",), "critical", 0.0,
        "with [bgp.rpki]: our prefix, originated by bgp.local_as, is RPKI-invalid against "
        "the VRPs (bgp_event rpki_own_invalid, bgp_prefix rpki); resolved when it is valid "
        "or not found"),
    "more_specific": ConditionSpec(
        ("OwnPrefixMoreSpecific",), "critical", 0.0,
        "a more-specific of our prefix in a carrier's table (bgp_event more_specific); "
        "resolved when the carrier's table no longer holds it (bgp.lookup), or after "
        "resolve_after without the BGP collector",
        {"resolve_after": _d("1h", 60, 7 * 86400,
                             "without a table to check: resolved this long after the event")}),
    "unexpected_path": ConditionSpec(
        ("UnexpectedAsPath",), "warning", 0.0,
        "our or a watched prefix reached through a carrier with an AS path that does not "
        "start with the carrier's peer_as (bgp_prefix, bgp_event path_change)"),
    # ---- RIS Live ([bgp.ris_live], collectors/bgp/rislive)
    "ris_hijack": ConditionSpec(
        ("OwnPrefixHijackSeenFromOutside",), "critical", 0.0,
        "our prefix with another origin, or a more-specific of it, seen by at least "
        "bgp.ris_live.hijack_min_peers RIS Live vantage points (bgp_event ris_hijack); "
        "resolved at ris_hijack_end or when bgp_visibility shows no foreign origin and no "
        "more-specific"),
    "ris_visibility_lost": ConditionSpec(
        ("VisibilityLostViaCarrier",), "critical", 0.0,
        "RIS Live vantage points reaching our prefix through a carrier (or at all) fell "
        "below bgp.ris_live.drop_fraction of the usual level (bgp_event "
        "ris_visibility_lost); resolved at ris_visibility_restored or bgp_visibility lost "
        "false"),
    "ris_unexpected_upstream": ConditionSpec(
        ("UnexpectedUpstreamSeenFromOutside",), "warning", 0.0,
        "RIS Live vantage points reach our prefix through an AS that is none of our "
        "carriers (bgp_event ris_unexpected_upstream); resolved when every such upstream "
        "ended"),
    "ris_feed_silent": ConditionSpec(
        ("RisLiveFeedSilent",), "warning", 0.0,
        "no message from RIS Live for bgp.ris_live.silence_timeout (bgp_event "
        "ris_feed_silent, bgp_feed silent); resolved when messages flow again"),
    "quality_bad": ConditionSpec(
        ("AccessQualityBad",), "warning", 0.0,
        "quality status of a carrier and target at or worse than `status` for `rounds` "
        "rounds in a row; resolved after clear_rounds better rounds",
        {
            "rounds": Param(3, "int", 1, 10000, doc="bad rounds in a row"),
            "clear_rounds": Param(2, "int", 1, 10000, doc="good rounds in a row to resolve"),
            "status": Param("degraded", "choice", choices=("degraded", "down"),
                            doc="the status that counts as bad (down counts as degraded)"),
        }),
    "carrier_loss": ConditionSpec(
        ("CarrierLossHigh",), "warning", 0.0,
        "a carrier's mean probe loss to a target over `window` exceeds the best other "
        "carrier's by diff_pp percentage points",
        {
            "diff_pp": Param(10.0, "pct", 0.1, 100, doc="percentage points worse"),
            "hysteresis_pp": Param(5.0, "pct", 0, 100,
                                   doc="resolved only below diff_pp minus this"),
            "window": _d("5m", 10, 86400, "the window"),
        }),
    "latency_shift": ConditionSpec(
        ("LatencyShift",), "warning", 0.0,
        "median RTT (probe rtt_median_ms) of the last `recent` above the median of the "
        "`baseline` before it by more than max(min_ms, pct %)",
        {
            "recent": _d("3m", 10, 86400, "the recent window"),
            "baseline": _d("27m", 10, 7 * 86400, "the window before it"),
            "min_ms": Param(5.0, "number", 0, 100000, doc="smallest shift that counts, ms"),
            "pct": Param(20.0, "pct", 0, 10000, doc="shift that counts, % of the baseline"),
            "min_samples": Param(3, "int", 1, 100000,
                                 doc="rounds each window needs before it is judged"),
        }),
    "output_lagging": ConditionSpec(
        ("OutputLagging",), "warning", 0.0,
        "an output's oldest undelivered point is older than `lag` (spool cursor)",
        {"lag": _d("5m", 1, 7 * 86400, "age of the oldest undelivered point")}),
    "points_dropped": ConditionSpec(
        ("PointsDropped",), "warning", 0.0,
        "points were lost (agent points_dropped grew) within `window`",
        {"window": _d("10m", 10, 86400, "resolved after this long without a drop")}),
    "collector_overrun": ConditionSpec(
        ("CollectorOverrun",), "warning", 0.0,
        "a collector overran its interval (ticks skipped) within `window`",
        {"window": _d("10m", 10, 86400, "resolved after this long without an overrun")}),
}

SEVERITIES = ("info", "warning", "critical")
