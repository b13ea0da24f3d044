"""Binaries the tests need: found on PATH, in the venv or in /usr/bin, else a clear failure or skip."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import NoReturn

import pytest


def missing_tool(what: str) -> NoReturn:
    """A tool .ci/run installs is missing: a failure under CI=true, a skip on a developer machine."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is missing, but CI=true and .ci/run installs it")
    pytest.skip(f"{what} is missing")


def require_binary(name: str, package: str) -> str:
    """Path of a binary from PATH, the venv or /usr/bin; `missing_tool` when there is none."""
    for candidate in (shutil.which(name), Path(sys.executable).parent / name, Path("/usr/bin") / name):
        if candidate and os.access(candidate, os.X_OK) and Path(candidate).is_file():
            return str(candidate)
    missing_tool(f"{name} ({package})")
