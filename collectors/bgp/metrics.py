"""The `bgp_session`, `bgp_event` and `bgp_prefix` measurements.

Producers: collectors/bgp/state.py (sessions, prefixes and the session/prefix events);
`bgp_event` is also written by rpki/ (the `rpki_*` kinds) and rislive/ (the `ris_*` kinds,
with the fields `peers` and `via`). The event kinds are defined here, once: the producers
import their `EVENT_*` names from here, and `EVENT_KINDS` is what the Grafana generator
offers and what the schema check accepts.
"""

from __future__ import annotations

from agent.schema import Field, Measurement, Section, Tag, fields, register

EVENT_SESSION_UP = "session_up"
EVENT_SESSION_DOWN = "session_down"
EVENT_OWN_MISSING = "own_prefix_missing"
EVENT_ORIGIN_MISMATCH = "origin_mismatch"
EVENT_MORE_SPECIFIC = "more_specific"
EVENT_PATH_CHANGE = "path_change"
EVENT_RIS_HIJACK = "ris_hijack"
EVENT_RIS_HIJACK_END = "ris_hijack_end"
EVENT_RIS_UPSTREAM = "ris_unexpected_upstream"
EVENT_RIS_UPSTREAM_END = "ris_unexpected_upstream_end"
EVENT_RIS_LOST = "ris_visibility_lost"
EVENT_RIS_RESTORED = "ris_visibility_restored"
EVENT_RIS_FEED_SILENT = "ris_feed_silent"
EVENT_RIS_FEED_RESTORED = "ris_feed_restored"
EVENT_RPKI_OWN_INVALID = "rpki_own_invalid"
EVENT_RPKI_OWN_NOT_FOUND = "rpki_own_not_found"
EVENT_RPKI_OWN_VALID = "rpki_own_valid"
EVENT_RPKI_ROA_EXPIRING = "rpki_roa_expiring"
EVENT_RPKI_STALE = "rpki_stale"

SESSION_KINDS = (
    (EVENT_ORIGIN_MISMATCH, "one of our prefixes appears in a carrier's table with an origin AS "
     "other than `bgp.local_as` (on each new origin)"),
    (EVENT_MORE_SPECIFIC, "a more-specific of one of our prefixes appears in a carrier's table, "
     "whoever originates it (on appearance and on a new origin)"),
    (EVENT_OWN_MISSING, "a carrier session is up but one of `bgp.announce` is not being "
     "sent to it: another address family than the session's (no next hop to announce it "
     "with), withdrawn by the operator (`bgp.withdraw`), or refused by ExaBGP. At session up "
     "and the moment it happens"),
    (EVENT_PATH_CHANGE, "the best route (longest match) of a `bgp.watch` destination in a "
     "carrier's table changes prefix or AS path, appears, or disappears"),
    (EVENT_SESSION_DOWN, "an established session is lost (peer notification, hold timer, TCP "
     "closed, ExaBGP stopped); all of its routes are dropped"),
    (EVENT_SESSION_UP, "the session with the carrier is established"),
)

RPKI_KINDS = (
    (EVENT_RPKI_OWN_INVALID, "one of our prefixes, originated by `bgp.local_as`, would be "
     "RPKI-invalid against the VRPs in force (covered by VRPs of other ASes, AS0, or a "
     "maxLength shorter than our prefix): networks that validate drop it. `detail` lists "
     "the covering VRPs. At the first VRP set and on each change to invalid"),
    (EVENT_RPKI_OWN_NOT_FOUND, "one of our prefixes is covered by no VRP (no ROA: no protection "
     "against hijacks). At the first VRP set and on each change to not found"),
    (EVENT_RPKI_ROA_EXPIRING, "the ROA that makes one of our prefixes valid expires within 24 h "
     "(only where the source gives expiries: rpki-client's JSON `expires`); once per ROA "
     "and expiry"),
    (EVENT_RPKI_STALE, "a VRP source's data has not been refreshed in time: an RTR cache past "
     "the Expire Interval of its last End of Data, a file or URL whose data (its `metadata` "
     "generation time, else when it was read) is older than `bgp.rpki.stale_after`. "
     "`detail` names the source. The stale set stays in use (flagged in `bgp_rpki.stale`) "
     "until a fresh source has data"),
    (EVENT_RPKI_OWN_VALID, "one of our prefixes is valid again after having been invalid or not "
     "found"),
)

RIS_KINDS = (
    (EVENT_RIS_HIJACK, "RIS Live: our prefix with another origin AS, or a more-specific of our "
     "prefix (any origin, not itself in `announce`/`watch`), held by at least "
     "`hijack_min_peers` vantage points: one event per seen prefix and origin (`prefix` is "
     "the one seen, `origin_as` its origin). Judged at once, also during warm-up"),
    (EVENT_RIS_HIJACK_END, "RIS Live: fewer than `hijack_min_peers` vantage points hold it now"),
    (EVENT_RIS_UPSTREAM, "RIS Live: at least `hijack_min_peers` vantage points reach "
     "our prefix through an AS (just before ours) that is none of our carriers' `peer_as`; "
     "one event per upstream AS (in `detail`)"),
    (EVENT_RIS_UPSTREAM_END, "RIS Live: fewer than `hijack_min_peers` do now"),
    (EVENT_RIS_LOST, "RIS Live: the count of a prefix through a carrier (tag "
     "`carrier`, `via`), or from anywhere (`via = \"any\"`), fell below `drop_fraction` of "
     "its usual level (which was at least `min_usual_peers`): that carrier stopped "
     "propagating us, or the prefix is gone. Judged each interval, only while the feed is "
     "connected, not silent and past `warmup`"),
    (EVENT_RIS_RESTORED, "RIS Live: that count is back at `drop_fraction` of the "
     "level it fell from"),
    (EVENT_RIS_FEED_SILENT, "RIS Live: no message for `silence_timeout`, connected or not (the "
     "connection is then made again)"),
    (EVENT_RIS_FEED_RESTORED, "RIS Live: messages again after `ris_feed_silent`"),
)

EVENT_KINDS: tuple[str, ...] = tuple(k for k, _ in SESSION_KINDS + RPKI_KINDS + RIS_KINDS)

_CARRIER = Tag("carrier", "carrier name")
_PEER_AS = Tag("peer_as", "the carrier's AS number")

BGP_SESSION = Measurement(
    "bgp_session", "one per carrier with `[carriers.bgp]`, every `bgp.interval` (default "
    "`agent.interval`), stamped with the interval tick",
    tags=(_CARRIER, Tag("peer", "the carrier's BGP address"), _PEER_AS),
    fields=(
        Field("state", str, "`up` (established), `connected` (TCP up, not established), "
              "`down` (last attempt failed or the session dropped), `idle` (nothing heard "
              "yet), `exabgp_down` (ExaBGP not running: being restarted)"),
        Field("up", bool, "the session is established"),
        Field("uptime_s", float, "since the session came up; 0 when not up", "s"),
        Field("flaps", int, "established sessions that went down (cumulative; failed "
              "connection attempts do not count)", "count", "counter"),
        *fields(("prefixes_v4", "prefixes_v6"), int, "routes held from this carrier now (0 "
                "while down: ExaBGP sends no withdraws, the agent drops them)", "prefixes"),
        Field("updates", int, "announced prefixes received (cumulative; each NLRI once per "
              "UPDATE, an IPv6 prefix under a global and a link-local next hop once)",
              "prefixes", "counter"),
        Field("withdrawals", int, "withdrawn prefixes received (cumulative)", "prefixes",
              "counter"),
        *fields(("converge_v4_s", "converge_v6_s"), float, "from session up to that "
                "family's End-of-RIB; present once it arrived in the current session", "s"),
        *fields(("rpki_valid", "rpki_invalid", "rpki_not_found"), int,
                "with `[bgp.rpki]`, once a VRP set is in force: routes held from this "
                "carrier now (IPv4 and IPv6 together) by their RFC 6811 origin validation "
                "state against the VRPs in force. `valid`: a VRP covering the prefix has its "
                "origin AS and a maxLength ≥ its length; `invalid`: covered by VRPs, none "
                "matching (an AS0 VRP matches nothing; a path ending in an AS_SET has no "
                "origin and matches nothing); `not_found`: no VRP covers it. Kept current as "
                "routes come and go, and re-validated (those a changed VRP can cover) when "
                "the VRP set changes. Absent without `[bgp.rpki]` or before the first VRP "
                "set", "routes"),
        *fields(("rpki_valid_v4", "rpki_invalid_v4", "rpki_not_found_v4", "rpki_valid_v6",
                 "rpki_invalid_v6", "rpki_not_found_v6"), int,
                "the same as `rpki_valid`/`rpki_invalid`/`rpki_not_found`, per address "
                "family", "routes"),
    ),
)

BGP_EVENT = Measurement(
    "bgp_event", "written the moment the agent sees it, stamped with that moment",
    description=(
        "The `rpki_*` kinds have no `carrier` tag: they concern the VRP source or our own "
        "announcement, which every carrier's customers validate alike. Of the RIS Live "
        "kinds, only a carrier's `ris_visibility_lost` / `ris_visibility_restored` carry "
        "`carrier`; they carry `peers` and `via` besides `prefix`, `as_path` (a sample "
        "path), `origin_as` and `detail`."),
    tags=(
        Tag("carrier", "carrier name, for the session kinds and a carrier's "
            "`ris_visibility_*`", optional=True),
        Tag("kind", "what happened", values=SESSION_KINDS + RPKI_KINDS + RIS_KINDS,
            values_heading=("kind", "when")),
    ),
    fields=(
        Field("prefix", str, "the prefix concerned (our prefix, the more-specific, the "
              "watched destination); \"\" for session events"),
        Field("as_path", str, "AS path of the route concerned, e.g. `4134 3356 64600` (an "
              "AS_SET as `{1,2}`); \"\" when none"),
        Field("origin_as", int, "origin AS of that route (0 when none, or when the path ends "
              "in an AS_SET)", "ASN"),
        Field("detail", str, "the why: down reason from ExaBGP (notification, hold timer, "
              "\"ExaBGP exited with code -9\"), `more-specific of our 198.51.100.0/24 "
              "originated by AS65002`, `203.0.0.0/16 [4134 174] -> 203.0.113.0/24 [4134 3356 "
              "64496]`"),
        Field("peers", int, "RIS Live kinds: how many vantage points show it now",
              "vantage points"),
        Field("via", str, "RIS Live kinds: for `ris_visibility_*` `any` or the carrier's "
              "name; \"\" for the other kinds"),
    ),
)

BGP_PREFIX = Measurement(
    "bgp_prefix", "one per prefix of `bgp.announce` and carrier, every `bgp.interval`",
    description=(
        "How that carrier's table shows our prefix (with a session established to all "
        "carriers, a carrier normally shows it only when it reaches it through another "
        "carrier, e.g. after we stopped announcing it there)."),
    tags=(_CARRIER, Tag("prefix", "one of `bgp.announce`")),
    fields=(
        Field("visible", bool, "the exact prefix is in the routes this carrier sends us"),
        Field("announced", bool, "the session is up and we announce the prefix to this "
              "carrier"),
        Field("origin_as", int, "origin AS as seen there (0 when not visible)", "ASN"),
        Field("as_path", str, "AS path as seen there (\"\" when not visible)"),
        Field("as_path_len", int, "path length (an AS_SET counts one)", "ASes"),
        Field("next_hop", str, "next hop as seen there"),
        Field("rpki", str, "with `[bgp.rpki]`: RFC 6811 state of our announcement of the "
              "prefix (origin `bgp.local_as`) against the VRPs in force: `valid`, `invalid` "
              "or `not_found`; the same for every carrier. Absent before the first VRP set"),
        Field("rpki_expires", int, "the latest expiry of the VRPs that make it valid, where "
              "the source gives expiries (rpki-client's JSON `expires`; RTR does not carry "
              "them); absent otherwise", "Unix s"),
    ),
)

SECTION = register(Section(
    "bgp_session, bgp_event, bgp_prefix (collectors/bgp)", 50, (BGP_SESSION, BGP_EVENT, BGP_PREFIX),
    intro=("Source: ExaBGP's API stream (ExaBGP 5.0 or 4.2, run and supervised by the "
           "agent). See `collectors/bgp/README.md` for the options and how it works.")))
