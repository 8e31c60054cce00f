"""Probes: access quality through each carrier (probe, traceroute, quality measurements)."""

from collectors.probes import metrics  # noqa: F401  (declares probe, traceroute, quality)
