"""Links: uplink counters and state, link events, routing checks, 95th-percentile billing
(see README.md in this directory)."""

from collectors.links import metrics  # noqa: F401  (declares link, link_event, billing)
