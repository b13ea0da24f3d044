"""The command line's exit codes, in one place for every command (run, check-config, doctor, demo)."""

from __future__ import annotations

# Errors of `doctor` are 4, not 3: `run` exits 3 when a listen address is taken, and a script
# wrapping both should not confuse them.
EXIT_OK = 0
EXIT_WARNINGS = 1
EXIT_CONFIG = 2
EXIT_LISTEN = 3
EXIT_ERRORS = 4
