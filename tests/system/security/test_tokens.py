"""Weak admin tokens are refused; token files others can read are reported."""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.support.cli import run_cli
from tests.support.daemon import write_config

BASE = {"mongodb": {"uri": "mongodb://127.0.0.1:1/"}, "pools": [{"name": "p", "database": "d", "collection": "c"}]}


def test_short_tokens_are_refused_everywhere(tmp_path: Path) -> None:
    """A 1-character token (inline, in a file, or from the environment) fails check-config with its location
    and the command that makes a good one."""
    short_file = tmp_path / "short"
    short_file.write_text("x\n")
    short_file.chmod(0o600)
    tokens = [{"name": "a", "token": "x"}, {"name": "b", "token_file": str(short_file)}]
    path = write_config(tmp_path, {**BASE, "admin": {"tokens": tokens}})
    result = run_cli("check-config", "--config", str(path), env={"SESSION_POOL_EXPORTER_ADMIN_TOKEN": "tiny"})
    assert result.returncode == 2
    command = "e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
    lines = result.stderr.splitlines()
    in_file = rf"{re.escape(str(path))}:\d+:\d+"
    for origin, expected in (
        (in_file, f"admin.tokens[0]: the token is 1 characters long; use at least 24, {command}"),
        (in_file, f"admin.tokens[1]: the token is 1 characters long; use at least 24, {command}"),
        ("env SESSION_POOL_EXPORTER_ADMIN_TOKEN", f"admin.tokens[2]: the token is 4 characters long; use at least 24, "
         f"{command}"),
    ):  # fmt: skip
        assert any(re.fullmatch(rf"  {origin}: {re.escape(expected)}", line) for line in lines), (expected, lines)
    assert "tiny" not in result.stderr


def test_readable_token_files_are_reported(tmp_path: Path) -> None:
    """A token file its group or everyone can read passes, with a warning naming the file and the fix."""
    shared = tmp_path / "shared-token"
    shared.write_text("a-token-of-enough-characters-0123\n")
    shared.chmod(0o644)
    private = tmp_path / "private-token"
    private.write_text("another-token-of-enough-chars-4567\n")
    private.chmod(0o600)
    tokens = [{"name": "a", "token_file": str(shared)}, {"name": "b", "token_file": str(private)}]
    path = write_config(tmp_path, {**BASE, "admin": {"tokens": tokens}})
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert f"warning: admin.tokens[0].token_file: {shared} can be read by others (mode 644); chmod 600 it" in (
        result.stderr
    )
    assert "admin.tokens[1]" not in result.stderr
    assert "a-token-of-enough-characters" not in result.stdout + result.stderr


def test_secret_mounts_read_through_the_group_pass_quietly(tmp_path: Path) -> None:
    """A file someone else owns, readable only through one of our groups (a Kubernetes secret with fsGroup),
    is not reported; the same mode on a file we own is."""
    mounted = tmp_path / "mounted-token"
    mounted.write_text("a-token-of-enough-characters-0123\n")
    mounted.chmod(0o440)
    os.chown(mounted, 65534, os.getegid())
    owned = tmp_path / "owned-token"
    owned.write_text("another-token-of-enough-chars-4567\n")
    owned.chmod(0o440)
    tokens = [{"name": "a", "token_file": str(mounted)}, {"name": "b", "token_file": str(owned)}]
    path = write_config(tmp_path, {**BASE, "admin": {"tokens": tokens}})
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "admin.tokens[0]" not in result.stderr
    assert f"warning: admin.tokens[1].token_file: {owned} can be read by its group (mode 440)" in result.stderr
