"""Helpers shared by the test suites (and the benches): one definition of each."""
