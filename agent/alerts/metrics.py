"""The `alert` measurement: state changes of the alert engine's alerts (engine.py)."""

from __future__ import annotations

from agent.schema import Field, Measurement, Section, Tag, register

_OTHER_LABELS = ("carrier", "interface", "peer", "prefix", "target", "method", "family",
                 "output", "collector")

ALERT = Measurement(
    "alert", "one point per state change of an alert",
    description=(
        "Written by the alert engine ([configuration.md](configuration.md#alerts)) when an "
        "alert starts firing and when it resolves (pending alerts are not written). "
        "Timestamp: the moment of the change. Grafana shows them as annotations; the alert "
        "outputs deliver them. Besides the tags below, the point carries the alert's other "
        "labels (" + ", ".join(f"`{n}`" for n in _OTHER_LABELS) + ", where they apply)."),
    tags=(
        Tag("alertname", "e.g. `UplinkDown`, `BgpSessionDown`, `CarrierLossHigh` (the "
            "table in configuration.md)"),
        Tag("severity", "`warning`, `critical`"),
        Tag("state", "the change", values=(("firing", "it started firing"),
                                           ("resolved", "it resolved"))),
        *(Tag(name, "the alert's label, where it applies (e.g. `carrier` and `interface` "
              "on `UplinkDown`, `output` on `OutputLagging`)", optional=True)
          for name in _OTHER_LABELS),
    ),
    fields=(
        Field("firing", bool, "true when it started firing, false when it resolved"),
        Field("summary", str, "one line with the values that made it fire, e.g. `uplink eth1 "
              "of telecom is down: carrier lost`"),
        Field("description", str, "what it means for traffic"),
        Field("fingerprint", str, "Alertmanager's fingerprint of the labels (16 hex digits): "
              "the same alert across its points"),
        Field("starts_at_ns", int, "when the condition became true (Alertmanager's "
              "`startsAt`)", "ns"),
        Field("ends_at_ns", int, "when it resolved; 0 while firing", "ns"),
        Field("value", float, "the value judged, where there is one (utilization fraction, "
              "loss difference in points, RTT shift in ms, lag in s, count)"),
    ),
    open_tags=True,
)

SECTION = register(Section("alert (core)", 20, (ALERT,)))
