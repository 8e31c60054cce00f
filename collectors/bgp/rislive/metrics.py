"""The `bgp_visibility` and `bgp_feed` measurements (view.py and client.py).

Its events are `bgp_event` kinds `ris_*`, declared with that measurement
(collectors/bgp/metrics.py).
"""

from __future__ import annotations

from agent.schema import Field, Measurement, Section, Tag, register

BGP_VISIBILITY = Measurement(
    "bgp_visibility", "one per prefix and via every `bgp.ris_live.interval` (default "
    "`bgp.interval`, then `agent.interval`), stamped with the interval tick",
    tags=(
        Tag("prefix", "our prefix (one of `bgp.announce`), or a watched one (`bgp.watch`)"),
        Tag("via", "`any`; for our prefixes also each carrier's name (one per `[[carriers]]` "
            "with `[carriers.bgp]`) and `other`"),
    ),
    fields=(
        Field("peers", int, "`via = \"any\"`: vantage points whose current route for the "
              "prefix itself has origin `bgp.local_as` (for a watched prefix: any origin). "
              "`via = CARRIER`: of those, the ones whose AS path has the carrier's `peer_as` "
              "just before our AS (our prepends skipped). `via = \"other\"`: of those, the "
              "ones whose AS before ours is none of our carriers' (an unexpected upstream or "
              "a leak; an AS_SET there counts here). A vantage point inside our own AS (path "
              "of our AS alone) counts in `any` only. Two carriers with the same `peer_as` "
              "both count it", "vantage points"),
        Field("lost", bool, "`any` and carriers: the count fell below `drop_fraction` of its "
              "usual level and has not come back (see `ris_visibility_lost`); absent on "
              "`other`"),
        Field("usual_peers", int, "`any` and carriers: the usual level: the highest count of "
              "the last `baseline` (while `lost`: the level it fell from); 0 until judged. "
              "Absent on `other`", "vantage points"),
        Field("peers_foreign_origin", int, "`via = \"any\"` of our prefixes only: vantage "
              "points holding the prefix itself with another origin AS than "
              "`bgp.local_as`, or a more-specific of it (not itself in `announce`/`watch`) "
              "with another origin; each vantage point once", "vantage points"),
        Field("peers_more_specific", int, "`via = \"any\"` of our prefixes only: vantage "
              "points holding a more-specific of the prefix (not itself in "
              "`announce`/`watch`), whatever its origin", "vantage points"),
    ),
)

BGP_FEED = Measurement(
    "bgp_feed", "the feed's own health, with the `bgp_visibility` points",
    tags=(Tag("feed", "the feed", values=(("ris_live", "RIPE RIS Live"),)),),
    fields=(
        Field("connected", bool, "the websocket is up and our subscriptions are sent"),
        Field("silent", bool, "no message at all (not even a `pong`) for `silence_timeout`; "
              "false again at the next message"),
        Field("warmed_up", bool, "`warmup` has passed since the first connection: "
              "visibility can be judged lost"),
        Field("messages", int, "every frame received since start (cumulative; `pong`s and "
              "acknowledgements too)", "messages", "counter"),
        Field("messages_per_min", float, "frames received in the last 60 s", "messages/min"),
        Field("last_message_age_s", float, "since the last frame; absent before the first",
              "s"),
        Field("bad_messages", int, "frames not in RIS Live's documented format (cumulative; "
              "nothing of them is applied)", "messages", "counter"),
        Field("ris_errors", int, "`ris_error` messages from RIS Live (cumulative; the text is "
              "in the log and in `status`)", "messages", "counter"),
        Field("reconnects", int, "connections made after the first (cumulative)",
              "connections", "counter"),
        Field("vantage_points", int, "distinct vantage points holding any route for our or "
              "watched prefixes or their more-specifics", "vantage points"),
    ),
)

SECTION = register(Section(
    "bgp_visibility, bgp_feed (collectors/bgp/rislive)", 70, (BGP_VISIBILITY, BGP_FEED),
    intro=("Source: RIPE RIS Live (`[bgp.ris_live]`): the BGP updates that RIS's route "
           "collectors receive from their peers (the *vantage points*: networks all over "
           "the world), for our prefixes (`bgp.announce`), the watched ones (`bgp.watch`) "
           "and their more-specifics. The agent keeps, per vantage point, the route it "
           "announced last for each of these prefixes. How it works, warm-up and limits: "
           "`collectors/bgp/README.md` (\"RIS Live\"). Its events are the `ris_*` kinds of "
           "`bgp_event` (above).")))
