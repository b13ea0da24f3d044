"""The manual as a site (strict MkDocs build), its generated reference pages, and the README as its front door."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from markdown.extensions.toc import slugify

from tests.support.docs import ROOT, all_blocks, documents
from tests.support.scripts import load_script

README_MAX_LINES = 300
_LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    """The anchors of a Markdown page's headings, as the site's table of contents makes them."""
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    return {slugify(m[1].strip().replace("`", ""), "-") for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


@pytest.mark.integration
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """`mkdocs build --strict`: every page in the navigation, every internal link and anchor resolves."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "reference" / "metrics" / "index.html").exists()


def test_the_reference_pages_are_generated_from_the_code() -> None:
    """docs/reference/*.md are what `python scripts/reference` writes from the code now."""
    pages = load_script("scripts/reference/pages.py", "reference_pages")
    assert pages.stale_pages() == [], "run: python scripts/reference"


def test_the_readme_is_a_front_door() -> None:
    """At most ~300 lines; its first two blocks are the two commands (the demo, the tests)."""
    readme = ROOT / "README.md"
    assert len(readme.read_text(encoding="utf-8").splitlines()) <= README_MAX_LINES
    first, second = [b for b in all_blocks() if b.path == readme][:2]
    assert first.run == "demo-start" and "session-pool-exporter demo" in first.code
    assert second.code == "bash .ci/run\n"


def test_links_of_the_readme_resolve() -> None:
    """The README links to files that exist and to headings that exist (the site's build checks docs/)."""
    problems = []
    readme = ROOT / "README.md"
    for match in _LINK.finditer(readme.read_text(encoding="utf-8")):
        target = match["target"]
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        file = (readme.parent / path) if path else readme
        if not file.exists():
            problems.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            problems.append(f"{target}: no heading with that anchor")
    assert not problems, problems


def test_every_page_is_in_the_site() -> None:
    """Each Markdown page of docs/ is part of the navigation (a page nobody can reach is not documentation)."""
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    missing = [
        str(p.relative_to(ROOT / "docs")) for p in documents()[1:] if str(p.relative_to(ROOT / "docs")) not in config
    ]
    assert not missing, missing
