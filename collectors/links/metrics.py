"""The `link`, `link_event` and `billing` measurements.

Producers: `link` and `link_event` collectors/links/collector.py (`link_event` also from the
carrier poll, carrier.py, and the routing checks, routing.py, through it); `billing`
billing.py.
"""

# ruff: noqa: RUF001  (en dashes and the multiplication sign, as the doc shows them)
from __future__ import annotations

from agent.schema import Field, Measurement, Section, Tag, fields, register

_INTERFACE = Tag("interface", "kernel interface name (any byte Linux allows; escaped per "
                 "output)")

LINK = Measurement(
    "link", "every selected interface, each `[links].interval` (default `agent.interval`)",
    description=(
        "Interfaces: all, filtered by `[links] include`/`exclude` globs (default all but "
        "`lo`); carrier uplinks (`[[carriers]] interface`) always."),
    tags=(
        _INTERFACE,
        Tag("carrier", "carrier name, only on a carrier's uplink", optional=True),
    ),
    fields=(
        *fields(("rx_bytes", "tx_bytes"), int,
                "cumulative bytes (64-bit kernel counters, RTM_GETSTATS)", "bytes", "counter"),
        *fields(("rx_packets", "tx_packets"), int, "cumulative packets", "packets",
                "counter"),
        *fields(("rx_errors", "tx_errors"), int, "cumulative errors", "packets", "counter"),
        *fields(("rx_dropped", "tx_dropped"), int, "cumulative drops", "packets", "counter"),
        *fields(("rx_bps", "tx_bps"), float,
                "since the previous sample, over the real elapsed time (monotonic clock). "
                "Absent on the first sample of an interface and after a counter reset "
                "(re-created interface: new ifindex; cleared counter): never a spike or a "
                "negative rate. 32/64-bit wraps are counted through.", "bits/s"),
        *fields(("rx_util", "tx_util"), float,
                "fraction (0.0–1.0, may exceed 1 briefly) of `committed_mbps` for uplinks, "
                "else of the link speed; absent when neither is known or the rate is absent",
                "fraction"),
        Field("oper_up", bool, "admin up, carrier on, and not dormant/testing/notpresent"),
        Field("carrier_up", bool, "the kernel's carrier (IFLA_CARRIER)"),
        Field("speed_mbps", int,
              "link speed (ethtool, what `/sys/class/net/X/speed` shows); absent when the "
              "driver reports none (ifb, tun, link down)", "Mbit/s"),
        Field("mtu", int, "the interface's MTU", "bytes"),
        Field("route_ok", bool,
              "uplinks of carriers with `table`: the table holds a default route"),
        Field("gateway_ok", bool,
              "the default route's gateway has a usable neighbour entry on the uplink "
              "(REACHABLE/STALE/DELAY/PROBE/PERMANENT/NOARP; missing or INCOMPLETE is "
              "resolved once and re-read within 1 s; FAILED/INCOMPLETE/none is false). True "
              "for an on-link default route without gateway. Absent when there is no route "
              "to take a gateway from."),
        Field("egress_ok", bool,
              "carriers with `source`: a route lookup from `source` to 192.0.2.1 (through "
              "the policy rules) leaves through the uplink"),
        Field("route6_ok", bool,
              "route_ok for IPv6, for carriers with `source6` (and an IPv4 `source`): `::/0` "
              "in `table`"),
        Field("gateway6_ok", bool,
              "gateway_ok for IPv6, for carriers with `source6` (and an IPv4 `source`): the "
              "IPv6 gateway's neighbour entry (neighbour discovery)"),
        Field("egress6_ok", bool,
              "egress_ok for IPv6, for carriers with `source6` (and an IPv4 `source`): a "
              "lookup from `source6` to 100::1"),
    ),
    notes=(
        "The routing checks are on carrier uplinks only, and only those the carrier's "
        "config allows (`table` for route_ok, `source` for egress_ok, `source6` for the IPv6 "
        "ones). Right after an uplink comes up, gateway6_ok can be false for the ~1–2 s of "
        "IPv6 duplicate address detection (the kernel sends no neighbour solicitation from "
        "a tentative link-local address)."),
)

LINK_EVENT = Measurement(
    "link_event", "at once (streaming), carrier uplinks",
    tags=(
        _INTERFACE,
        Tag("carrier", "carrier name"),
        Tag("state", "what changed", values=(
            ("up", "the uplink came up"),
            ("down", "the uplink went down"),
            ("deleted", "the uplink was deleted"),
            ("routing_ok", "the routing checks' overall verdict changed to ok"),
            ("routing_failed", "the routing checks' overall verdict changed to failed"),
        )),
    ),
    fields=(
        Field("up", bool, "true for `up` and `routing_ok`"),
        Field("detail", str,
              "`admin down`, `carrier lost`, `oper dormant`, `interface deleted`, `up`; for "
              "routing: `ok` or the failed checks, e.g. `no default route in table 101; "
              "traffic from 100.64.2.2 leaves via telecom`, `no IPv6 default route in table "
              "101`, `gateway 100.64.3.1 neighbour FAILED`"),
    ),
    notes=(
        "Written when the state changes (not at start). Timestamp: the moment the change "
        "was seen. Measured: `ip link set X down` → point emitted in 2–5 ms (admin) and "
        "≤ 100 ms (carrier loss on the far side, seen by a 100 ms carrier poll because the "
        "kernel's own carrier notifications can lag up to 1 s). Deleting a link emits "
        "`down` then `deleted`."),
)

BILLING = Measurement(
    "billing", "per carrier, each `[billing].interval` (default 5m)",
    tags=(Tag("carrier", "carrier name"), Tag("interface", "its uplink")),
    fields=(
        Field("p95_bps", float,
              "95th percentile of this billing month's (calendar month, UTC) 5-minute "
              "average rates, each sample max(rx, tx) (`[billing] rate = \"max\"`, or "
              "`rx`/`tx`); sort, discard the top 5 % (n·5//100 samples), the highest "
              "remaining. Absent with no samples yet.", "bits/s"),
        Field("committed_bps", float, "`committed_mbps` × 10⁶ (absent without it)", "bits/s"),
        Field("p95_util", float, "p95_bps / committed_bps (absent without either)",
              "fraction"),
        Field("samples", int, "5-minute samples so far this month (8,640 in a 30-day month)",
              "samples"),
    ),
    notes=(
        "Samples persist in `<data_dir>/billing/<carrier>/<YYYY-MM>.samples` (append + "
        "fsync); a restart loses nothing (the first sample after it averages over the gap, "
        "up to one hour)."),
)

SECTION = register(Section(
    "link, link_event, billing (collectors/links)", 40, (LINK, LINK_EVENT, BILLING),
    intro="Details and options: `collectors/links/README.md`."))
