"""Reliability and security suite: faults, load and hostile input against real components."""
