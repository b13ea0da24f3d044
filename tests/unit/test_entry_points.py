"""Every way to start something from the command line answers --help, and `python -m exporter.mongod` works."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pymongo import MongoClient

from tests.support.cli import clean_env, cli_command
from tests.support.paths import ROOT

SUBCOMMANDS = ("run", "check-config", "doctor", "demo")


def entry_points() -> list[list[str]]:
    """Each module entry point in the repository: packages with __main__.py, modules and scripts with a main guard."""
    found: list[list[str]] = []
    for top in ("exporter", "bench", "scripts"):
        for path in sorted((ROOT / top).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            relative = path.relative_to(ROOT)
            if path.name == "__main__.py":
                found.append([sys.executable, "-m", ".".join(relative.parent.parts)])
            elif '__name__ == "__main__"' in text:
                if top == "scripts":
                    found.append([sys.executable, str(relative)])
                else:
                    found.append([sys.executable, "-m", ".".join(relative.with_suffix("").parts)])
    return found


def test_the_entry_points_are_found() -> None:
    """The discovery sees the ones we know of, so a new one cannot hide from the --help test."""
    commands = [" ".join(c[1:]) for c in entry_points()]
    for expected in ("-m exporter", "-m exporter.mongod", "-m bench", "scripts/sync_chart.py"):
        assert expected in commands, commands


@pytest.mark.parametrize("command", entry_points(), ids=lambda c: " ".join(c[1:]))
def test_every_entry_point_answers_help(command: list[str]) -> None:
    """`--help` prints a usage line and a description, exits 0, and starts nothing."""
    result = subprocess.run(
        [*command, "--help"], cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: "), result.stdout
    assert len(result.stdout.splitlines()) > 3, result.stdout


@pytest.mark.parametrize("subcommand", SUBCOMMANDS)
def test_every_subcommand_answers_help(subcommand: str) -> None:
    """Each subcommand of the console script has its own help."""
    result = subprocess.run(
        [*cli_command(), subcommand, "--help"], env=clean_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: session-pool-exporter {subcommand}"), result.stdout


@pytest.mark.integration
def test_python_m_exporter_mongod_runs_a_throwaway_server() -> None:
    """It prints a URI that answers; SIGTERM removes the server and its data directory."""
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter.mongod", "--standalone"], stdout=subprocess.PIPE, text=True, env=clean_env()
    )
    try:
        assert process.stdout is not None
        uri = process.stdout.readline().strip()
        assert re.fullmatch(r"mongodb://127\.0\.0\.1:\d+/\?directConnection=true", uri), uri
        client: MongoClient[dict[str, object]] = MongoClient(uri, serverSelectionTimeoutMS=5000)
        try:
            hello = client.admin.command("hello")
            assert "setName" not in hello
            pid = client.admin.command("serverStatus")["pid"]
            dbpath = client.admin.command("getCmdLineOpts")["parsed"]["storage"]["dbPath"]
        finally:
            client.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not Path(dbpath).exists()
    assert not Path(f"/proc/{pid}").exists()
