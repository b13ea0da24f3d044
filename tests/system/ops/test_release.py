"""scripts/release in a fresh clone: every artifact made and checked, the wheel installed outside the tree; refusals."""

from __future__ import annotations

import gzip
import hashlib
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from packaging.markers import Marker

from exporter import __version__
from tests.support.image import Image
from tests.support.paths import ROOT
from tests.support.tools import missing_tool, require_binary

# The release test builds the image when tests/system/ops/test_image.py has not (session fixture `image`).
pytestmark = [pytest.mark.timeout(900)]


NAME = "session-pool-exporter"
WHEEL = f"session_pool_exporter-{__version__}-py3-none-any.whl"
SDIST = f"session_pool_exporter-{__version__}.tar.gz"
ARTIFACTS = {
    WHEEL,
    SDIST,
    f"{NAME}-{__version__}.tgz",
    "index.yaml",
    f"{NAME}-{__version__}.image.tar.gz",
    f"{NAME}-{__version__}.image.cdx.json",
    "RELEASE-NOTES.md",
    "SHA256SUMS",
}
GIT_ID = ["-c", "user.name=Release Test", "-c", "user.email=release-test@example.invalid"]
_HEADING = re.compile(r"^## \[[^\]]+\].*$", re.MULTILINE)


def _script() -> ModuleType:
    """scripts/release.py as a module (its pure functions; it imports sync_chart from its own folder)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        spec = importlib.util.spec_from_file_location("release_script", ROOT / "scripts" / "release.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look themselves up there
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return module


release_script = _script()


# ---- the CHANGELOG section (pure) --------------------------------------------------------------

CHANGELOG = """# Changelog

## [Unreleased] - 0.4.0

### Added
- the next thing

## [0.3.0] - 2027-01-15

### Added
- a feature of 0.3.0

### Fixed
- a fix of 0.3.0

## [0.2.0] - 2026-12-01

### Added
- a feature of 0.2.0
"""


def test_the_section_of_a_released_version_is_cut_at_the_next_heading() -> None:
    """0.3.0's section: its date and both its subsections, nothing of 0.2.0 or of what is unreleased."""
    section = release_script.changelog_section(CHANGELOG, "0.3.0")
    assert section.day == date(2027, 1, 15)
    assert section.text == "### Added\n- a feature of 0.3.0\n\n### Fixed\n- a fix of 0.3.0"
    assert release_script.changelog_section(CHANGELOG, "0.2.0").text == "### Added\n- a feature of 0.2.0"


@pytest.mark.parametrize(
    ("text", "wanted", "says"),
    [
        (CHANGELOG, "0.4.0", "0.4.0 is still '## [Unreleased] - 0.4.0'; to release it, rename"),
        (CHANGELOG, "0.5.0", "has no section for 0.5.0"),
        ("## [0.5.0]\n\n- x\n", "0.5.0", "line 1: '## [0.5.0]' has no date"),
        ("## [0.5.0] - someday\n\n- x\n", "0.5.0", "has no date; write '## [0.5.0] - YYYY-MM-DD'"),
        ("## [0.5.0] - 2027-02-01\n\n## [0.4.0] - 2027-01-01\n- y\n", "0.5.0", "the section of 0.5.0 is empty"),
    ],
    ids=["unreleased", "missing", "no-date", "bad-date", "empty"],
)
def test_a_version_without_a_dated_section_is_named_as_the_problem(text: str, wanted: str, says: str) -> None:
    """Each way a section can be missing gets its own message, with the fix."""
    problem = release_script.changelog_section(text, wanted)
    assert isinstance(problem, str)
    assert says in problem, problem


def test_the_current_version_has_its_changelog_section() -> None:
    """exporter/_version.py's version is in CHANGELOG.md: `[Unreleased] - V` until released, `[V] - date` after."""
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = _HEADING.findall(text)
    ours = [h for h in headings if h == f"## [Unreleased] - {__version__}" or h.startswith(f"## [{__version__}] - ")]
    assert len(ours) == 1, f"CHANGELOG.md needs one section for {__version__}, has {ours} (headings: {headings})"
    assert headings[0] == ours[0] or headings[0] == "## [Unreleased]", "the current version's section comes first"


# ---- a checkout as a release manager has it --------------------------------------------------


def _git(checkout: Path, *args: str) -> str:
    """`git ARGS` in the checkout; its output (a failure fails the test)."""
    proc = subprocess.run(["git", *GIT_ID, *args], cwd=checkout, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def fresh_clone(target: Path) -> Path:
    """`git clone` of this repository, plus the work not committed yet (one commit): what CI would have."""
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True, timeout=120)
    diff = subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=ROOT, capture_output=True, check=True, timeout=60)
    if diff.stdout:
        subprocess.run(["git", "apply", "--index"], cwd=target, input=diff.stdout, check=True, timeout=60)
    for name in _git(ROOT, "ls-files", "--others", "--exclude-standard", "-z").split("\0"):
        if name:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    _git(target, "add", "--all")
    _git(target, "commit", "--quiet", "--allow-empty", "--message", "Work in progress of the tested tree")
    return target


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A fresh clone with this tree's uncommitted work committed (in CI: the commit under test)."""
    return fresh_clone(tmp_path / "checkout")


def _changelog_heading(checkout: Path, heading: str) -> None:
    """Give the current version's CHANGELOG section this heading, and commit it."""
    path = checkout / "CHANGELOG.md"
    text = path.read_text(encoding="utf-8")
    ours = re.compile(rf"^## \[(Unreleased\] - {re.escape(__version__)}|{re.escape(__version__)}\] - .*)$", re.M)
    assert ours.search(text), f"no section for {__version__} to rename"
    path.write_text(ours.sub(heading, text, count=1), encoding="utf-8")
    _git(checkout, "commit", "--quiet", "--all", "--allow-empty", "--message", f"CHANGELOG: {heading}")


def _cut(checkout: Path) -> str:
    """The release manager's commit: the version's section dated today. Returns the date."""
    today = datetime.now(UTC).date().isoformat()
    _changelog_heading(checkout, f"## [{__version__}] - {today}")
    return today


def _release(
    checkout: Path, out: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`scripts/release OUT ARGS` in the checkout, run by this interpreter (it has the release tools)."""
    return subprocess.run(
        [str(checkout / "scripts" / "release"), str(out), *args],
        cwd=checkout, env={**(env or os.environ), "PYTHON": sys.executable},
        capture_output=True, text=True, timeout=840, check=False,
    )  # fmt: skip


# ---- refusals (no image needed: they come before any build) ----------------------------------


@pytest.mark.integration
def test_an_unreleased_section_is_refused(clone: Path, tmp_path: Path) -> None:
    """Between releases the version's changes sit under `[Unreleased] - V`: no release of V from that."""
    _changelog_heading(clone, f"## [Unreleased] - {__version__}")
    result = _release(clone, tmp_path / "out")
    assert result.returncode == 2, result.stderr
    assert f"release {__version__} refused:" in result.stderr
    assert f"{__version__} is still '## [Unreleased] - {__version__}'" in result.stderr
    assert "not clean" not in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.integration
def test_a_version_without_a_section_is_refused(clone: Path, tmp_path: Path) -> None:
    """A version bumped without its CHANGELOG section: refused, the message names the version."""
    _changelog_heading(clone, "## [Unreleased]")
    result = _release(clone, tmp_path / "out")
    assert result.returncode == 2, result.stderr
    assert f"CHANGELOG.md has no section for {__version__}" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.integration
def test_a_dirty_tree_a_used_outdir_and_an_unknown_image_are_refused_together(clone: Path, tmp_path: Path) -> None:
    """A changed file, an untracked file, a non-empty OUTDIR, an unknown --image: every problem listed, nothing made."""
    require_binary("podman", "Debian package podman")
    _cut(clone)
    (clone / "exporter" / "_version.py").write_text(f'__version__ = "{__version__}"\n# edited\n', encoding="utf-8")
    (clone / "exporter" / "stray.py").write_text("x = 1\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.whl").write_bytes(b"stale")
    result = _release(clone, out, "--image", "localhost/session-pool-exporter-no-such-image:0")
    assert result.returncode == 2, result.stderr
    assert "the tree is not clean: 2 changed or untracked file(s): " in result.stderr
    assert "exporter/_version.py" in result.stderr and "exporter/stray.py" in result.stderr
    assert f"{out} exists and is not an empty folder" in result.stderr
    assert "--image 'localhost/session-pool-exporter-no-such-image:0': podman's storage has no such" in result.stderr
    assert "CHANGELOG" not in result.stderr, "the changelog was cut"
    assert sorted(p.name for p in out.iterdir()) == ["old.whl"]


# ---- the release itself ----------------------------------------------------------------------


def _runtime_pins() -> dict[str, str]:
    """requirements/runtime.txt: name -> version of every pin whose marker holds on this platform."""
    pins: dict[str, str] = {}
    text = (ROOT / "requirements" / "runtime.txt").read_text(encoding="utf-8")
    for name, pinned, marker in re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ \\;]+)(?: ; ([^\\]+))?", text, re.M):
        if not marker or Marker(marker.strip()).evaluate():
            pins[_normal(name)] = pinned
    return pins


def _normal(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _venv_run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A command of the fresh virtualenv (bin/ARGS[0]), run outside the source tree with no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def released(image: Image, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """`scripts/release OUT --image TAG` in a fresh clone with the CHANGELOG cut: (checkout, OUT, release day)."""
    base = tmp_path_factory.mktemp("release")
    checkout = fresh_clone(base / "checkout")
    day = _cut(checkout)
    out = base / "out"
    result = _release(checkout, out, "--image", image.tag, env=image.podman.env)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    for name in ARTIFACTS:
        assert f"  {name}  " in result.stdout, result.stdout
    return checkout, out, day


@pytest.mark.slow
def test_the_release_has_every_artifact_and_its_checksums_verify(released: tuple[Path, Path, str]) -> None:
    """Exactly the artifacts; `sha256sum -c SHA256SUMS` passes for each; the checkout is still clean."""
    checkout, out, _ = released
    assert {p.name for p in out.iterdir()} == ARTIFACTS
    listed = (out / "SHA256SUMS").read_text(encoding="utf-8").splitlines()
    assert sorted(line.split("  ", 1)[1] for line in listed) == sorted(ARTIFACTS - {"SHA256SUMS"})
    sha256sum = require_binary("sha256sum", "Debian package coreutils")
    check = subprocess.run([sha256sum, "-c", "SHA256SUMS"], cwd=out, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    assert sorted(check.stdout.splitlines()) == sorted(f"{name}: OK" for name in ARTIFACTS - {"SHA256SUMS"})
    assert _git(checkout, "status", "--porcelain", "--untracked-files=all") == "", "the release dirtied the tree"


@pytest.mark.slow
def test_the_wheel_and_sdist_hold_every_file_of_the_package(released: tuple[Path, Path, str]) -> None:
    """Every tracked file under exporter/ (code, console files, py.typed) is in both; the sdist has no tests."""
    checkout, out, _ = released
    tracked = set(_git(checkout, "ls-files", "exporter").split())
    with zipfile.ZipFile(out / WHEEL) as wheel:
        names = set(wheel.namelist())
    assert tracked <= names, sorted(tracked - names)
    assert f"session_pool_exporter-{__version__}.dist-info/entry_points.txt" in names
    with tarfile.open(out / SDIST) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    assert tracked <= members, sorted(tracked - members)
    assert {"pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md"} <= members
    assert not [m for m in members if m.startswith("tests/")]


@pytest.mark.slow
def test_the_wheel_installs_outside_the_tree_core_first_then_the_daemon(
    released: tuple[Path, Path, str], tmp_path: Path
) -> None:
    """A fresh venv: the bare wheel is the client core only; `[daemon]` adds the command's dependencies."""
    _, out, _ = released
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    wheel = str(out / WHEEL)
    installed = _venv_run(venv, "pip", "install", "--quiet", "--disable-pip-version-check", wheel, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    probe = (
        "import json, sys, exporter; from exporter import MongoSessions; "
        "print(json.dumps([exporter.__file__, MongoSessions.__name__, sorted(sys.modules)]))"
    )
    imported = _venv_run(venv, "python", "-c", probe, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    where, name, modules = json.loads(imported.stdout)
    assert Path(where).is_relative_to(venv) and name == "MongoSessions"
    assert not {"prometheus_client", "starlette", "uvicorn", "apscheduler", "pydantic"} & set(modules)
    core_only = _venv_run(venv, NAME, "--version", cwd=tmp_path)
    assert core_only.returncode == 0, core_only.stderr
    assert core_only.stdout.startswith(f"{NAME} {__version__} (") and "client core only" in core_only.stdout
    refused = _venv_run(venv, NAME, "run", cwd=tmp_path)
    assert refused.returncode == 2
    assert f"pip install '{NAME}[daemon]=={__version__}'" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    daemon = _venv_run(
        venv, "pip", "install", "--quiet", "--disable-pip-version-check", f"{wheel}[daemon]", cwd=tmp_path
    )
    assert daemon.returncode == 0, daemon.stderr
    version = _venv_run(venv, NAME, "--version", cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert re.fullmatch(rf"{NAME} {re.escape(__version__)} \(python [0-9.]+, pymongo [0-9.]+\)\n", version.stdout)
    config = _venv_run(
        venv, NAME, "check-config", "--mongo-uri", "mongodb://127.0.0.1:27017", "--database", "d", "--collection", "c",
        cwd=tmp_path,
    )  # fmt: skip
    assert config.returncode == 0, config.stderr
    assert config.stdout.startswith("config ok: "), config.stdout
    assert _venv_run(venv, "pip", "check", cwd=tmp_path).returncode == 0


@pytest.mark.slow
def test_the_packaged_chart_lints_and_its_index_points_at_it(released: tuple[Path, Path, str]) -> None:
    """`helm lint --strict` of the .tgz (Helm's SDK) finds nothing above info; index.yaml has its digest."""
    try:
        helm = importlib.import_module("helm_python")
    except ImportError:
        missing_tool("Python module helm_python (PyPI helm-python-sdk)")
    _, out, _ = released
    package = out / f"{NAME}-{__version__}.tgz"
    report = helm.lint(str(package), strict=True)
    assert report["total_charts_linted"] == 1
    assert [m for m in report["messages"] if m["severity"] >= 2] == [] and report["errors"] == []
    index = yaml.safe_load((out / "index.yaml").read_text(encoding="utf-8"))
    (entry,) = index["entries"][NAME]
    assert (entry["version"], entry["appVersion"]) == (__version__, __version__)
    assert entry["urls"] == [package.name]
    assert entry["digest"] == hashlib.sha256(package.read_bytes()).hexdigest()


def _archive_member(archive: Path, name: str) -> Any:
    """A JSON member of the gzipped docker-archive."""
    with gzip.open(archive) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            if member.name == name:
                extracted = tar.extractfile(member)
                assert extracted is not None
                return json.loads(extracted.read())
    pytest.fail(f"{archive.name} has no {name}")


@pytest.mark.slow
def test_the_image_archive_is_the_built_image_with_its_healthcheck(
    released: tuple[Path, Path, str], image: Image
) -> None:
    """The archive's manifest names the image podman built (same config digest) and its HEALTHCHECK survived."""
    _, out, _ = released
    archive = out / f"{NAME}-{__version__}.image.tar.gz"
    (manifest,) = _archive_member(archive, "manifest.json")
    built = image.podman("image", "inspect", "--format", "{{.Id}}", image.tag).stdout.strip()
    assert manifest["Config"] == f"{built}.json"
    assert manifest["RepoTags"] == [image.tag]
    config = _archive_member(archive, manifest["Config"])
    assert config["config"]["Healthcheck"]["Test"][0] == "CMD"
    assert config["config"]["User"] == "10001:10001"


@pytest.mark.slow
def test_the_sbom_lists_what_the_image_ships(released: tuple[Path, Path, str]) -> None:
    """CycloneDX 1.6 JSON: every runtime pin at its version and the project itself; the generator is not in it."""
    _, out, _ = released
    bom = json.loads((out / f"{NAME}-{__version__}.image.cdx.json").read_text(encoding="utf-8"))
    assert (bom["bomFormat"], bom["specVersion"]) == ("CycloneDX", "1.6")
    components = {_normal(c["name"]): c["version"] for c in bom["components"]}
    pins = _runtime_pins()
    assert {name: components.get(name) for name in pins} == pins
    assert components[NAME] == __version__
    assert not {"cyclonedx-bom", "cyclonedx-python-lib", "build", "twine", "pytest"} & set(components)
    purls = [c["purl"] for c in bom["components"] if _normal(c["name"]) == "pymongo"]
    assert purls == [f"pkg:pypi/pymongo@{pins['pymongo']}"]


@pytest.mark.slow
def test_the_release_notes_are_the_changelog_section(released: tuple[Path, Path, str]) -> None:
    """Titled with the version and day, the section's own lines, no other section, the commit named."""
    checkout, out, day = released
    notes = (out / "RELEASE-NOTES.md").read_text(encoding="utf-8")
    assert notes.startswith(f"# {NAME} {__version__} ({day})\n")
    changelog = (checkout / "CHANGELOG.md").read_text(encoding="utf-8")
    start = changelog.index(f"## [{__version__}] - {day}")
    following = changelog[start:].splitlines()[1:]
    first_entry = next(line for line in following if line.startswith("- "))
    assert first_entry in notes
    assert not _HEADING.search(notes), "another section leaked into the notes"
    assert notes.rstrip().endswith(f"Made from commit {_git(checkout, 'rev-parse', 'HEAD').strip()}.")
