"""The container image built once per test session (podman, the shared build script), and podman to use it."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.tools import missing_tool

ROOT = Path(__file__).resolve().parent.parent.parent


def build_script() -> Path:
    """The shared build-image.sh: $SPE_BUILD_IMAGE, else ../shared/tools beside the checkout, else /work/shared."""
    candidates = [Path(os.environ["SPE_BUILD_IMAGE"])] if os.environ.get("SPE_BUILD_IMAGE") else []
    candidates += [ROOT.parent / "shared" / "tools" / "build-image.sh", Path("/work/shared/tools/build-image.sh")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    missing_tool("build-image.sh (the shared podman build script; set SPE_BUILD_IMAGE to its path)")


@dataclass(frozen=True)
class Podman:
    """The podman CLI with the settings build-image.sh wrote (vfs storage, runc, host network)."""

    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `podman ARGS`; with `check`, a non-zero exit fails the test with podman's output."""
        proc = subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, check=False, timeout=timeout
        )
        if check and proc.returncode != 0:
            pytest.fail(f"podman {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc


@dataclass(frozen=True)
class Image:
    """The image built from this checkout: its tag and the podman to run it with."""

    tag: str
    podman: Podman


def built_image(work: Path) -> Iterator[Image]:
    """Build the Dockerfile under a tag of our own; remove that tag (and so the image) afterwards."""
    if os.geteuid() != 0:
        missing_tool("root (build-image.sh runs rootful podman)")
    script = build_script()
    tag = f"localhost/session-pool-exporter-test:{uuid.uuid4().hex[:12]}"
    # No intermediate images: the build leaves nothing behind but the tag removed below (and the
    # stand-in base image build-image.sh caches for every build).
    env = {**os.environ, "WORK": str(work), "BUILDAH_LAYERS": "false"}
    proc = subprocess.run(
        ["bash", str(script), str(ROOT), tag], env=env, capture_output=True, text=True, check=False, timeout=840
    )
    podman = Podman({**os.environ, "CONTAINERS_CONF": str(work / "containers.conf"), "STORAGE_DRIVER": "vfs"})
    try:
        assert proc.returncode == 0, f"build-image.sh failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        yield Image(tag, podman)
    finally:
        if shutil.which("podman"):
            podman("rmi", "--ignore", tag, check=False)
