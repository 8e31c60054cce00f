"""The `bgp_rpki` measurement: one point per VRP source (collectors/bgp/rpki/__init__.py).

Its events are `bgp_event` kinds `rpki_*`, declared with that measurement
(collectors/bgp/metrics.py).
"""

from __future__ import annotations

from agent.schema import Field, Measurement, Section, Tag, fields, register

BGP_RPKI = Measurement(
    "bgp_rpki", "one per configured VRP source of `[bgp.rpki]`, with `bgp_session`",
    tags=(Tag("source", "`rtr://HOST:PORT`, the VRP file's path, or the URL"),),
    fields=(
        Field("vrps", int, "VRPs the source holds now (a prefix with two ASes counts two)",
              "VRPs"),
        *fields(("vrps_v4", "vrps_v6"), int, "the same per address family", "VRPs"),
        Field("serial", int, "RTR: the cache's serial; file/URL: how many good versions were "
              "read"),
        Field("age_s", float, "since the data was last brought up to date (End of Data, a "
              "file read, a URL fetch or a 304); -1 before the first", "s"),
        Field("stale", bool, "see `rpki_stale` (a `bgp_event` kind); true too before the "
              "source had data"),
        Field("connected", bool, "RTR: a session with the cache is open; file: it can be "
              "read; URL: the last fetch worked"),
        Field("in_force", bool, "this source's set is the one routes are validated against "
              "(the first source in `[bgp.rpki]` order with fresh data, else the first with "
              "any data)"),
    ),
)

SECTION = register(Section("bgp_rpki (collectors/bgp/rpki)", 60, (BGP_RPKI,),
                  intro="Route origin validation (`[bgp.rpki]`): the state of each VRP "
                  "source. Validation results are on `bgp_session` and `bgp_prefix`."))
