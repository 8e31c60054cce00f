"""The `probe`, `traceroute` and `quality` measurements (collector.py, quality.py)."""

from __future__ import annotations

from agent.schema import Field, Measurement, Section, Tag, register

_CARRIER = Tag("carrier", "carrier name (`[[carriers]].name`, or `default`)")
_TARGET = Tag("target", "the entry's `target` as configured (address or host name)")

PROBE = Measurement(
    "probe", "one point per (carrier, target, method) and round",
    tags=(_CARRIER, _TARGET,
          Tag("method", "the method as configured: `icmp`, `tcp:PORT`, `dns[:QNAME]`, "
              "`http[:PATH]`")),
    fields=(
        Field("sent", int, "probes that left the agent in the round (`count` less "
              "`send_errors`)", "probes"),
        Field("received", int, "valid replies within the timeout (late and duplicate replies "
              "never count)", "probes"),
        Field("loss_pct", float, "`100 * (sent - received) / sent`; left out when nothing was "
              "sent", "%"),
        Field("send_errors", int, "probes the agent itself could not send (no socket, no "
              "source address for the family, name not resolved, send failed): not in "
              "`sent`, never counted as loss", "probes"),
        Field("rtt_min_ms", float, "smallest RTT", "ms"),
        Field("rtt_max_ms", float, "largest RTT", "ms"),
        Field("rtt_avg_ms", float, "mean RTT", "ms"),
        Field("rtt_median_ms", float, "median RTT", "ms"),
        Field("rtt_p95_ms", float, "95th percentile, linear interpolation between ranks "
              "(numpy's default)", "ms"),
        Field("jitter_ms", float, "mean absolute difference of consecutive RTTs (RFC 3550 "
              "style; lost probes skipped)", "ms"),
        Field("stddev_ms", float, "sample standard deviation of the RTTs (n - 1)", "ms"),
    ),
    notes=(
        "RTT per method: `icmp` echo request to reply, from the kernel's stamp of the "
        "request leaving (SO_TIMESTAMPING) to its receive timestamp of the reply "
        "(SO_TIMESTAMPNS); `tcp:PORT` the kernel's RTT sample of the handshake (SYN to "
        "SYN-ACK, `tcpi_rtt` from TCP_INFO), or the whole connect time when a SYN had to be "
        "retransmitted; `dns[:QNAME]` UDP query (type A, default QNAME `example.com`) to a "
        "valid answer, both times the kernel's (the query's send stamp, the answer's "
        "receive timestamp); `http[:PATH]` time to first byte: the handshake (as for `tcp`) "
        "plus `GET PATH` sent to the first response byte received (the kernel's send stamp "
        "of the request, the arrival of the segment with the first byte as a raw socket "
        "saw it, or without CAP_NET_RAW the TCP socket's receive timestamp, which can be "
        "that of a later segment or the FIN when the agent reads late), so the agent's own "
        "delay between the two does not count; any status line counts.\n\n"
        "A failure (timeout, refused, unreachable, wrong or malformed DNS answer, no HTTP "
        "status line) is a lost probe. The timeout runs from the moment the probe left and "
        "is judged by the kernel's timestamps: an answer that arrived in time counts even "
        "when the agent was busy and read it late. RTT fields are left out when nothing "
        "came back; `jitter_ms` and `stddev_ms` need two replies. A carrier none of whose "
        "probes left gets no `quality` point for that round (it was not measured)."),
)

TRACEROUTE = Measurement(
    "traceroute", "one point per (carrier, target) and traceroute interval",
    description=("For entries with `traceroute = true`, at `[traceroute].interval` with "
                 "`[traceroute]` `method` (icmp or udp), `max_hops`, `timeout` (per hop)."),
    tags=(_CARRIER, _TARGET),
    fields=(
        Field("hops", int, "hop count: TTL at which the target answered, else the last TTL "
              "that answered (0: none)", "hops"),
        Field("reached", bool, "the target itself answered (echo reply / port unreachable)"),
        Field("path", str, "hop addresses in TTL order, space-separated, `*` for a silent "
              "hop"),
        Field("as_path", str, "origin AS of each hop from the agent's BGP tables "
              "(`bgp.lookup`), space-separated, consecutive repeats collapsed, hops without a "
              "route skipped. Only written when the BGP collector runs; absent otherwise"),
    ),
)

QUALITY = Measurement(
    "quality", "one point per (carrier, target) and round",
    description=("Judged on the entry's `icmp` results when it has that method, else on its "
                 "first method, with the `[quality]` thresholds."),
    tags=(_CARRIER, _TARGET),
    fields=(
        Field("status", str, "`down`: no reply or `loss_pct >= loss_down_pct`; `degraded`: "
              "`loss_pct >= loss_degraded_pct`, or `rtt_median_ms > rtt_degraded_ms`, or "
              "`jitter_ms > jitter_degraded_ms`; else `ok`"),
        Field("score", float, "0-100, higher is better: 100 minus 25 x (`loss_pct / "
              "loss_degraded_pct` + `rtt_median_ms / rtt_degraded_ms` + `jitter_ms / "
              "jitter_degraded_ms`), clamped; 0 when `down`"),
        Field("best", bool, "true for the one carrier with the highest score for this target "
              "(not `down`; ties: lower median RTT, then name); no carrier is best when all "
              "are down"),
    ),
    notes=("A change of a carrier's `status` or of the best carrier for a target is logged "
           "once (WARNING when a status worsens, INFO otherwise)."),
)

SECTION = register(Section(
    "probe, traceroute, quality (collectors/probes)", 80, (PROBE, TRACEROUTE, QUALITY),
    intro=(
        "Written by the `probes` collector for every `[[probes]]` entry, through each of "
        "the entry's carriers (`carriers = [\"*\"]`: all; no carriers configured: one "
        "carrier named `default`, the default route). Rounds start on aligned ticks of the "
        "entry's `interval`; `probe` and `quality` points carry that tick as their "
        "timestamp, `traceroute` points the tick of `[traceroute].interval`. The `count` "
        "probes of a round are spread over half the interval (at most 1 s apart). Details "
        "and options: `collectors/probes/README.md`.")))
