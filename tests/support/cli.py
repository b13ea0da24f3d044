"""Running the console script the way users do."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def cli_command() -> list[str]:
    """The installed console script next to this interpreter, else `python -m exporter`."""
    script = Path(sys.executable).parent / "session-pool-exporter"
    return [str(script)] if script.exists() else [sys.executable, "-m", "exporter"]


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any SESSION_POOL_EXPORTER_* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_POOL_EXPORTER_")}
    env.update(extra or {})
    return env


def run_cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion and capture its output."""
    return subprocess.run(
        [*cli_command(), *args], env=clean_env(env), capture_output=True, text=True, timeout=timeout, check=False
    )
