"""The `agent` and `agent_output` measurements: the core's own health.

Written by the `agent` collector (collectors/agent_self.py) from the core's counters.
"""

from __future__ import annotations

from agent.schema import Field, Measurement, Section, Tag, register

AGENT = Measurement(
    "agent", "every `agent.interval`",
    tags=(),
    fields=(
        Field("cpu_percent", float, "the agent process's CPU since the previous collection",
              "% of one core"),
        Field("rss_bytes", int, "resident memory of the agent process", "bytes"),
        Field("children_cpu_percent", float,
              "its child processes (ExaBGP and the BGP bridge) since the previous "
              "collection; 0 without BGP", "% of one core"),
        Field("children_rss_bytes", int, "resident memory of its child processes", "bytes"),
        Field("total_cpu_percent", float,
              "`cpu_percent + children_cpu_percent`: the agent's whole CPU cost to the host",
              "% of one core"),
        Field("total_rss_bytes", int, "`rss_bytes + children_rss_bytes`", "bytes"),
        Field("queue_points", int, "emitted, not yet in the spool", "points"),
        Field("spool_bytes", int, "size of the spool's segments on disk", "bytes"),
        Field("points_written", int,
              "delivered to outputs since start, summed over outputs", "points", "counter"),
        Field("points_dropped", int,
              "lost since start: spool full (oldest undelivered segments removed), queue "
              "overflow, points with no field a server can carry", "points", "counter"),
        Field("write_errors", int,
              "batches a server rejected as malformed since start (kept in "
              "`data_dir/rejected/`)", "batches", "counter"),
    ),
)

AGENT_OUTPUT = Measurement(
    "agent_output", "one per output, with the `agent` point",
    tags=(Tag("output", "the output: `influxdb`, `influxdb_v1`, `alertmanager`, `webhook`"),),
    fields=(
        Field("points_written", int, "delivered by this output since start", "points",
              "counter"),
        Field("write_errors", int, "rejected batches of this output since start", "batches",
              "counter"),
        Field("retries", int,
              "failed attempts that will be retried (server down, 5xx, 429, 401/403)",
              "attempts", "counter"),
        Field("lag_points", int, "in the spool, not yet delivered by this output", "points"),
    ),
)

SECTION = register(Section("agent (core)", 10, (AGENT, AGENT_OUTPUT),
                  intro="Written by the `agent` collector (collectors/agent_self.py)."))
