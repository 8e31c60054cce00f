"""Probes: access quality through each carrier (probe, traceroute, quality measurements)."""
