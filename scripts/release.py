"""Make every artifact of a release (wheel, sdist, chart, image archive, SBOM, notes, SHA256SUMS) from a clean checkout.

Run it as `scripts/release OUTDIR` (docs/releasing.md says what it makes and how to publish each artifact).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from sync_chart import CHART_YAML, VERSION_FILE, drift, version

ROOT = Path(__file__).resolve().parent.parent
NAME = "session-pool-exporter"
CHART = Path("helm") / NAME
EXIT_REFUSED = 2
EXIT_FAILED = 1
# The interpreter of the venv the Dockerfile builds; the SBOM lists what it can import.
IMAGE_PYTHON = "/opt/venv/bin/python"
# Where the SBOM generator's own packages are mounted (read-only) inside the image: they are
# imported by the process that runs the generator, never by the interpreter being listed.
TOOL_MOUNT = "/opt/sbom-tool"
# The tools the release runs in this interpreter: module -> package of the `release` dependency group.
TOOLS = {"build": "build", "twine": "twine", "cyclonedx_py": "cyclonedx-bom", "helm_python": "helm-python-sdk"}
_HEADING = re.compile(r"^## \[(?P<name>[^\]]+)\](?: - (?P<rest>.*))?$")


class Failed(Exception):
    """A step of the release failed; the message says which and why."""


@dataclass(frozen=True)
class Section:
    """The CHANGELOG section of a released version: its date and its text (without the heading)."""

    day: date
    text: str


def changelog_section(text: str, wanted: str) -> Section | str:
    """The section `## [wanted] - YYYY-MM-DD` of a Keep-a-Changelog file, or the problem with it."""
    lines = text.splitlines()
    headings = [(i, m) for i, line in enumerate(lines) if (m := _HEADING.match(line))]
    for position, (start, match) in enumerate(headings):
        if match["name"] == "Unreleased" and (match["rest"] or "").strip() == wanted:
            return (
                f"CHANGELOG.md: {wanted} is still '## [Unreleased] - {wanted}'; to release it, rename that heading "
                f"to '## [{wanted}] - YYYY-MM-DD' (the release day) and commit"
            )
        if match["name"] != wanted:
            continue
        try:
            day = date.fromisoformat((match["rest"] or "").strip())
        except ValueError:
            return f"CHANGELOG.md line {start + 1}: '{lines[start]}' has no date; write '## [{wanted}] - YYYY-MM-DD'"
        end = headings[position + 1][0] if position + 1 < len(headings) else len(lines)
        body = "\n".join(lines[start + 1 : end]).strip()
        if not body:
            return f"CHANGELOG.md line {start + 1}: the section of {wanted} is empty"
        return Section(day, body)
    return f"CHANGELOG.md has no section for {wanted} (a heading '## [{wanted}] - YYYY-MM-DD')"


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`git -C root ARGS`, captured."""
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False, timeout=60)


def tree_problems(root: Path) -> list[str]:
    """Why the checkout is not a clean git tree (empty: it is)."""
    status = _git(root, "status", "--porcelain=v1", "--untracked-files=all")
    if status.returncode != 0:
        return [f"{root} is not a git checkout ({status.stderr.strip()})"]
    changed = [line[3:] for line in status.stdout.splitlines() if line.strip()]
    if not changed:
        return []
    shown = ", ".join(changed[:10]) + (f" and {len(changed) - 10} more" if len(changed) > 10 else "")
    return [f"the tree is not clean: {len(changed)} changed or untracked file(s): {shown} (commit or stash them)"]


def refusals(root: Path, out: Path, wanted: str, image: str | None) -> list[str]:
    """Every reason not to start, each naming the problem and its fix."""
    problems = tree_problems(root)
    changelog = root / "CHANGELOG.md"
    if not changelog.is_file():
        problems.append(f"{changelog} is missing")
    elif isinstance(found := changelog_section(changelog.read_text(encoding="utf-8"), wanted), str):
        problems.append(found)
    problems += [f"{problem} (run: python scripts/sync_chart.py)" for problem in drift(root)]
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        problems.append(f"{out} exists and is not an empty folder (give a new one: nothing stale gets checksummed)")
    missing = [package for module, package in TOOLS.items() if importlib.util.find_spec(module) is None]
    if missing:
        problems.append(
            f"{sys.executable} lacks {', '.join(missing)}: install the dev lock file "
            "(pip install --require-hashes -r requirements/dev.txt)"
        )
    if shutil.which("podman") is None:
        problems.append("podman is not on PATH (it builds, describes and saves the image)")
    elif image is not None:
        known = subprocess.run(["podman", "image", "exists", image], capture_output=True, check=False, timeout=60)
        if known.returncode != 0:
            problems.append(
                f"--image {image!r}: podman's storage has no such image "
                "(with this environment's CONTAINERS_CONF and STORAGE_DRIVER)"
            )
    return problems


@contextmanager
def _step(what: str) -> Iterator[None]:
    """Say what the release does now, then how long it took."""
    print(f"release: {what} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    yield
    print(f"release: {what}: {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)


def _run(what: str, command: Sequence[str], env: Mapping[str, str], timeout: float) -> str:
    """Run one step's command; its stdout, or Failed with the step's name and the command's output."""
    proc = subprocess.run(list(command), env=dict(env), capture_output=True, text=True, check=False, timeout=timeout)
    if proc.returncode != 0:
        output = proc.stdout[-3000:] + proc.stderr[-3000:]
        raise Failed(f"{what}: `{' '.join(command)}` exited {proc.returncode}\n{output}")
    return proc.stdout


def python_dists(root: Path, out: Path, env: Mapping[str, str], wanted: str) -> list[Path]:
    """The sdist, then the wheel built from it (python -m build), checked with `twine check --strict`."""
    build = [sys.executable, "-m", "build", "--outdir", str(out), str(root)]
    _run("wheel and sdist (python -m build)", build, env, 900)
    stem = NAME.replace("-", "_") + f"-{wanted}"
    dists = [out / f"{stem}.tar.gz", out / f"{stem}-py3-none-any.whl"]
    made = sorted(p.name for p in out.iterdir())
    if made != sorted(p.name for p in dists):
        raise Failed(f"python -m build made {made}, expected {[p.name for p in dists]}")
    check = [sys.executable, "-m", "twine", "check", "--strict", *map(str, dists)]
    _run("metadata check (twine check --strict)", check, env, 300)
    return dists


def chart(root: Path, out: Path, wanted: str) -> list[Path]:
    """`helm package` of the chart, linted as packaged, and the chart repository's index.yaml (Helm's own SDK)."""
    import helm_python as helm

    package = Path(helm.package(str(root / CHART), destination=str(out)))
    if package.name != f"{NAME}-{wanted}.tgz":
        raise Failed(f"helm package made {package.name}, expected {NAME}-{wanted}.tgz ({CHART_YAML})")
    report = helm.lint(str(package), strict=True)
    serious = [m for m in report["messages"] if m["severity"] >= 2] + [{"error": e} for e in report["errors"]]
    if serious:
        raise Failed(f"helm lint --strict {package.name}: {serious}")
    helm.repo_index_generate(str(out))
    return [package, out / "index.yaml"]


def _build_script(root: Path) -> Path | None:
    """The shared podman build script of these machines: $SPE_BUILD_IMAGE, else ../shared/tools beside the checkout."""
    env = os.environ.get("SPE_BUILD_IMAGE")
    if env:
        return Path(env)
    beside = root.parent / "shared" / "tools" / "build-image.sh"
    return beside if beside.is_file() else None


def build_image(root: Path, tag: str, work: Path, env: dict[str, str]) -> dict[str, str]:
    """Build the Dockerfile under `tag`; the environment podman needs afterwards to use it."""
    # No intermediate images: the build leaves the tagged image alone in podman's storage.
    env = {**env, "BUILDAH_LAYERS": "false"}
    script = _build_script(root)
    if script is None:
        # Docker format keeps HEALTHCHECK (OCI drops it).
        _run(f"image {tag} (podman build)", ["podman", "build", "--format", "docker", "-t", tag, str(root)], env, 1800)
        return env
    _run(f"image {tag} ({script})", ["bash", str(script), str(root), tag], {**env, "WORK": str(work)}, 1800)
    return {**env, "CONTAINERS_CONF": str(work / "containers.conf"), "STORAGE_DRIVER": "vfs"}


def sbom(tag: str, target: Path, env: Mapping[str, str], wanted: str, epoch: str) -> Path:
    """CycloneDX JSON of the image's Python environment: cyclonedx-py run by the image's own interpreter.

    The generator is not installed in the image: its packages (this interpreter's site-packages) are
    mounted read-only and put on the path of the process that runs it; the environment it lists is
    IMAGE_PYTHON's own sys.path, asked in a separate interpreter, so only what the image ships appears.
    """
    spec = importlib.util.find_spec("cyclonedx_py")
    if spec is None or spec.origin is None:
        raise Failed("cyclonedx-py is not importable")
    site = Path(spec.origin).resolve().parent.parent
    launcher = (
        "import runpy, sys; sys.path.insert(0, sys.argv[1]); sys.argv = ['cyclonedx-py', *sys.argv[2:]]; "
        "runpy.run_module('cyclonedx_py', run_name='__main__', alter_sys=True)"
    )
    generator = ["environment", "--output-reproducible", "--spec-version", "1.6", "--output-format", "JSON"]
    document = _run(
        "SBOM of the image's Python environment (cyclonedx-py environment, inside the image)",
        ["podman", "run", "--rm", "--network", "none", "--read-only", "--no-healthcheck",
         "--volume", f"{site}:{TOOL_MOUNT}:ro", "--env", f"SOURCE_DATE_EPOCH={epoch}", "--entrypoint", "python",
         tag, "-c", launcher, TOOL_MOUNT, *generator, IMAGE_PYTHON],
        env, 300,
    )  # fmt: skip
    components = json.loads(document).get("components", [])
    shipped = {c.get("name"): c.get("version") for c in components}
    if shipped.get(NAME) != wanted:
        raise Failed(f"image {tag} holds {NAME} {shipped.get(NAME)}, not {wanted}: build it from this checkout")
    target.write_text(document, encoding="utf-8")
    return target


def save_image(tag: str, target: Path, env: Mapping[str, str]) -> Path:
    """`podman save --format docker-archive`, gzipped on the way (OCI format would drop the HEALTHCHECK)."""
    with (
        tempfile.TemporaryFile() as errors,
        subprocess.Popen(
            ["podman", "save", "--quiet", "--format", "docker-archive", tag],
            env=dict(env), stdout=subprocess.PIPE, stderr=errors,
        ) as proc,
    ):  # fmt: skip
        assert proc.stdout is not None
        # gzip's own default level: 9 takes four times as long for 1 % less.
        with (
            target.open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as packed,
        ):
            shutil.copyfileobj(proc.stdout, packed, 1 << 20)
        proc.wait(timeout=300)
        errors.seek(0)
        message = errors.read().decode(errors="replace")
    if proc.returncode != 0:
        target.unlink(missing_ok=True)
        raise Failed(f"podman save {tag} exited {proc.returncode}: {message}")
    return target


def notes(target: Path, wanted: str, section: Section, commit: str) -> Path:
    """RELEASE-NOTES.md: the CHANGELOG section of the version, titled, with the commit it was made from."""
    body = f"# {NAME} {wanted} ({section.day.isoformat()})\n\n{section.text}\n\nMade from commit {commit}.\n"
    target.write_text(body, encoding="utf-8")
    return target


def checksums(out: Path) -> Path:
    """SHA256SUMS over every file of the release, in `sha256sum -c` format."""
    target = out / "SHA256SUMS"
    lines = []
    for path in sorted(p for p in out.iterdir() if p.is_file() and p != target):
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
        lines.append(f"{digest.hexdigest()}  {path.name}\n")
    target.write_text("".join(lines), encoding="utf-8")
    return target


def release(root: Path, out: Path, image: str | None) -> list[Path]:
    """Every artifact, in OUTDIR; the image is built here unless `image` names one built from this checkout."""
    wanted = version(root)
    section = changelog_section((root / "CHANGELOG.md").read_text(encoding="utf-8"), wanted)
    assert isinstance(section, Section), section
    commit = _git(root, "rev-parse", "HEAD").stdout.strip()
    epoch = _git(root, "log", "-1", "--format=%ct").stdout.strip()
    env = {**os.environ, "SOURCE_DATE_EPOCH": epoch}
    out.mkdir(parents=True, exist_ok=True)
    with _step("wheel and sdist (python -m build, twine check --strict)"):
        made = python_dists(root, out, env, wanted)
    with _step("chart (helm package, helm lint --strict, helm repo index)"):
        made += chart(root, out, wanted)
    with tempfile.TemporaryDirectory(prefix="spe-release-") as work:
        tag = image
        if tag is None:
            tag = f"localhost/{NAME}:{wanted}"
            with _step(f"image {tag} from the Dockerfile"):
                env = build_image(root, tag, Path(work), env)
        with _step(f"SBOM of {tag}'s Python environment (cyclonedx-py environment, run inside the image)"):
            made.append(sbom(tag, out / f"{NAME}-{wanted}.image.cdx.json", env, wanted, epoch))
        with _step(f"image archive (podman save --format docker-archive {tag} | gzip)"):
            made.append(save_image(tag, out / f"{NAME}-{wanted}.image.tar.gz", env))
    made.append(notes(out / "RELEASE-NOTES.md", wanted, section, commit))
    made.append(checksums(out))
    return made


def _size(path: Path) -> str:
    """A file's size for people: bytes under 1 KiB, else KiB or MiB with one decimal."""
    size = path.stat().st_size
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 1024 / 1024:.1f} MiB"


def main(argv: Sequence[str] | None = None) -> int:
    """Refuse with every reason, or make the release and list its files with their sizes."""
    parser = argparse.ArgumentParser(
        prog="scripts/release",
        description=__doc__,
        epilog=f"Refuses (exit {EXIT_REFUSED}) when the tree is not clean, CHANGELOG.md has no dated section for "
        f"the version in {VERSION_FILE}, the chart is out of sync, or OUTDIR is not empty; exit {EXIT_FAILED} "
        "when a step fails. Nothing is uploaded: docs/releasing.md shows how to publish.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("outdir", metavar="OUTDIR", type=Path, help="new or empty folder for the artifacts")
    parser.add_argument(
        "--image",
        metavar="TAG",
        help="an image already built from this checkout (podman's storage, e.g. the one CI's tests built) "
        "instead of building one; podman runs with this process's environment (CONTAINERS_CONF...)",
    )
    args: Any = parser.parse_args(argv)
    out = Path(args.outdir).resolve()
    wanted = version(ROOT)
    problems = refusals(ROOT, out, wanted, args.image)
    if problems:
        print(f"release {wanted} refused:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_REFUSED
    try:
        made = release(ROOT, out, args.image)
    except (Failed, subprocess.TimeoutExpired) as error:
        print(f"release {wanted} failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{NAME} {wanted} in {out}:")
    for path in made:
        print(f"  {path.name}  {_size(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
