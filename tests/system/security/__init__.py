"""Attacks and mistakes against the live daemon: leaks, starvation, audit integrity, odd data, bad requests."""
