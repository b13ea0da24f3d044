"""The manual's examples: every fenced block of README.md and docs/, and what it needs to run.

A block is run according to its language, its title and the HTML comment on the line before it
(invisible on GitHub and on the site):

- ```` ```sh ```` runs as written with bash (`set -euo pipefail`), from the repository's root;
  `<!-- run: demo -->`: in the environment the demo prints ("paste this in another terminal"),
  the blocks of one page in one shell, in order; `<!-- run: background until=URL -->`: its last
  command is started, must serve URL, then ends with exit code 0 on SIGTERM;
  `<!-- run: demo-start -->`: the README's install-and-demo command itself.
- ```` ```yaml title="config.yaml" ```` goes through `check-config`; `title="prometheus.yml"`
  through `promtool check config`; `title="alertmanager.yml"` through `amtool check-config`;
  `title="values.yaml"` is rendered with the Helm chart.
- ```` ```python ```` runs as a script against a real mongod (`MONGODB_URI`).
- ```` ```json ```` must parse; ```` ```text ```` and ```` ```diff ```` are not examples.
- `<!-- not run: REASON, see tests/PATH.py::test_name -->`: run elsewhere; the named test must exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*)$")
_ANNOTATION = re.compile(r"^\s*<!--\s*(?P<kind>run|not run)\s*:\s*(?P<value>.*?)\s*-->\s*$")
_TITLE = re.compile(r"""title=(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<bare>\S+))""")
_TEST_REF = re.compile(r"(?P<file>tests/[\w/.-]+\.py)::(?P<name>\w+)")

SHELL = {"sh", "bash"}
NOT_EXAMPLES = {"text", "diff"}
YAML_TITLES = {"config.yaml", "prometheus.yml", "alertmanager.yml", "values.yaml"}


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language and title, its code, and how it is run."""

    path: Path
    line: int
    lang: str
    title: str | None
    code: str
    run: str | None = None
    not_run: str | None = None

    @property
    def where(self) -> str:
        """`docs/page.md:12`, for test ids and failure messages."""
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def context(self) -> str:
        """How the block runs: plain, demo, demo-start, background, a YAML kind, python, json, none, elsewhere."""
        if self.not_run is not None:
            return "elsewhere"
        if self.lang in SHELL:
            return (self.run or "plain").split()[0]
        if self.lang == "yaml":
            return self.title or "untitled yaml"
        if self.lang in ("python", "json"):
            return self.lang
        if self.lang in NOT_EXAMPLES:
            return "none"
        return f"unknown language {self.lang!r}"

    def option(self, name: str) -> str | None:
        """A `name=value` option of the run annotation (`until=URL`)."""
        for part in (self.run or "").split()[1:]:
            key, _, value = part.partition("=")
            if key == name:
                return value
        return None

    def test_reference(self) -> tuple[Path, str] | None:
        """The test a `not run` annotation names (file, function), or None."""
        match = _TEST_REF.search(self.not_run or "")
        return (ROOT / match["file"], match["name"]) if match else None


def documents() -> list[Path]:
    """README.md and every page of the manual."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with the annotation on the line before it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, info = match["indent"], match["fence"], match["info"].strip()
        lang = info.split()[0].lower() if info else ""
        title_match = _TITLE.search(info)
        title = next((g for g in title_match.groups() if g is not None), None) if title_match else None
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not re.match(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", lines[j]):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        previous = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        note = _ANNOTATION.match(previous)
        found.append(
            Block(
                path=path,
                line=i + 1,
                lang=lang,
                title=title,
                code="\n".join(body) + "\n",
                run=note["value"] if note and note["kind"] == "run" else None,
                not_run=note["value"] if note and note["kind"] == "not run" else None,
            )
        )
        i = j + 1
    return found


def all_blocks() -> list[Block]:
    """Every block of README.md and docs/."""
    return [block for path in documents() for block in blocks(path)]


def page_script(page_blocks: list[Block]) -> str:
    """One bash script running a page's blocks in order, each announced (the failure names its block)."""
    parts = ["set -euo pipefail"]
    for block in page_blocks:
        parts.append(f"echo '::block {block.where}' >&2")
        parts.append(block.code)
    return "\n".join(parts) + "\n"


def last_block_started(stderr: str) -> str:
    """The block a failing page script was running (from its announcements)."""
    marks = re.findall(r"^::block (\S+)$", stderr, re.M)
    return marks[-1] if marks else "?"
