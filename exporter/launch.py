"""The console script: the command line when the daemon's dependencies are installed, else what to install."""

from __future__ import annotations

import platform
import sys
from collections.abc import Sequence

from exporter._version import __version__

EXIT_NO_DAEMON = 2
INSTALL_DAEMON = f"pip install 'session-pool-exporter[daemon]=={__version__}'"


def main(argv: Sequence[str] | None = None) -> int:
    """Run `exporter.cli`; on a host with only the client core, answer --version and say what the rest needs."""
    try:
        from exporter.cli import main as cli_main
    except ModuleNotFoundError as error:
        missing = error.name or "?"
        if missing.partition(".")[0] == "exporter":
            raise
        args = list(sys.argv[1:] if argv is None else argv)
        if args == ["--version"]:
            print(f"session-pool-exporter {__version__} (python {platform.python_version()}; client core only)")
            return 0
        print(
            f"session-pool-exporter: the daemon's dependencies are not installed (no module {missing!r}); "
            f"this host has the client core only. For the daemon: {INSTALL_DAEMON}",
            file=sys.stderr,
        )
        return EXIT_NO_DAEMON
    return cli_main(argv)
