"""`session-pool-exporter doctor`: checks, read-only, everything the daemon relies on, one finding per line."""

from exporter.doctor.findings import Finding, Report, Verdict
from exporter.doctor.run import examine, run_doctor
from exporter.exits import EXIT_ERRORS, EXIT_OK, EXIT_WARNINGS

__all__ = ["EXIT_ERRORS", "EXIT_OK", "EXIT_WARNINGS", "Finding", "Report", "Verdict", "examine", "run_doctor"]
