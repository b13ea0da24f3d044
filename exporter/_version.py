"""The version of session-pool-exporter: the one place it is written (pyproject and the chart read it)."""

__version__ = "0.2.0"
