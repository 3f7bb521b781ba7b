"""Measure: probes that put timestamped traffic on the emulated network and report what it experienced."""
