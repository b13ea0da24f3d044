"""`session-pool-exporter doctor` as operators run it, and its report read back as (pool, check, verdict)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from tests.support.cli import run_cli

Row = tuple[str | None, str, str]
_LINE = re.compile(r"^  (ok|warn|error)\s+(\S+)\s+(.*)$")
_POOL = re.compile(r"^pool (\S+) \(")


def doctor(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `doctor --config FILE [args]` to completion."""
    return run_cli("doctor", "--config", str(config), *args, env=env, timeout=180)


def text_rows(stdout: str) -> list[Row]:
    """Every finding line of the human report: its section's pool (None: server), check and verdict."""
    rows: list[Row] = []
    pool: str | None = None
    for line in stdout.splitlines():
        if line == "server":
            pool = None
        elif match := _POOL.match(line):
            pool = match.group(1)
        elif match := _LINE.match(line):
            rows.append((pool, match.group(2), match.group(1)))
    return rows


def json_checks(stdout: str) -> tuple[str, list[dict[str, Any]]]:
    """The verdict and checks of a `--json` report."""
    data = json.loads(stdout)
    assert set(data) == {"verdict", "checks"}, data
    checks: list[dict[str, Any]] = data["checks"]
    assert all(set(c) == {"pool", "check", "verdict", "found", "fix"} for c in checks), checks
    return str(data["verdict"]), checks


def lines(stdout: str, pool: str | None, check: str) -> list[str]:
    """The finding lines of one check of one pool (pool None: the server section)."""
    out, current = [], None
    for line in stdout.splitlines():
        if line == "server":
            current = None
        elif match := _POOL.match(line):
            current = match.group(1)
        elif (match := _LINE.match(line)) and current == pool and match.group(2) == check:
            out.append(line)
    return out
