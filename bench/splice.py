"""Carry sections of one bench run into docs/benchmarks.md, leaving the sections other runs wrote as they are.

`python -m bench --only manypools --out /tmp/run.md` writes a whole document of which only some sections
were measured; `python -m bench.splice /tmp/run.md docs/benchmarks.md` replaces those sections (and their
rows of the goals table) in the page, each section led by the date and command of the run it comes from.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

_SKIP = {"Machine", "Goals", "Data", "Not run"}


def sections(text: str) -> dict[str, str]:
    """`## ` sections of a document by title, each with its body (up to the next `## `)."""
    found: dict[str, str] = {}
    for part in re.split(r"(?m)^(?=## )", text):
        if part.startswith("## "):
            title = part.splitlines()[0][3:].strip()
            found[title] = part
    return found


def _run_line(text: str) -> str:
    date = re.search(r"(?m)^- Date: (.+?);", text)
    command = re.search(r"(?m)^- Reproduce: `(.+?)`", text)
    load = re.search(r"(?m)^\| load average \(1/5/15 min\) at the start \| (.+?) \|", text)
    parts = [f"From the run of {date.group(1) if date else 'an unknown date'}"]
    if command:
        parts.append(f"`{command.group(1)}`")
    if load:
        parts.append(f"load average at its start {load.group(1)}")
    return "*" + ", ".join(parts) + ".*\n\n"


def _goal_rows(text: str) -> list[str]:
    goals = sections(text).get("Goals", "")
    return [line for line in goals.splitlines() if line.startswith("| ") and not line.startswith(("| goal", "| ---"))]


def splice(run: str, page: str, titles: list[str], goals: str | None) -> str:
    """The page with the run's `titles` sections (and, if `goals` is a regex, its matching goal rows) carried in."""
    measured = sections(run)
    out = page
    present = sections(page)
    for title in titles:
        if title not in measured:
            raise SystemExit(f"the run has no section {title!r}")
        body = measured[title]
        head, _, rest = body.partition("\n")
        new = f"{head}\n\n{_run_line(run)}{rest.lstrip(chr(10))}"
        if title in present:
            out = out.replace(present[title], new if new.endswith("\n\n") else new + "\n")
        else:
            out = out.rstrip("\n") + "\n\n" + new
    if goals:
        pattern = re.compile(goals)
        old = [row for row in _goal_rows(page) if pattern.search(row)]
        new_rows = [row for row in _goal_rows(run) if pattern.search(row)]
        if old:
            first = out.index(old[0])
            for row in old:
                out = out.replace(row + "\n", "", 1)
            out = out[:first] + "".join(row + "\n" for row in new_rows) + out[first:]
        else:
            table = sections(out)["Goals"].rstrip("\n")
            out = out.replace(table, table + "\n" + "\n".join(new_rows), 1)
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line: RUN PAGE [--section TITLE ...] [--goals REGEX]."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the document a `python -m bench --only ...` run wrote")
    parser.add_argument("page", type=Path, help="the page to update (docs/benchmarks.md)")
    parser.add_argument("--section", action="append", default=[], help="a `## ` title to carry (repeatable)")
    parser.add_argument("--goals", default=None, help="a regex: goal rows matching it are replaced by the run's")
    args = parser.parse_args(argv)
    run = args.run.read_text(encoding="utf-8")
    titles = args.section or [t for t in sections(run) if t not in _SKIP]
    args.page.write_text(splice(run, args.page.read_text(encoding="utf-8"), titles, args.goals), encoding="utf-8")


if __name__ == "__main__":
    main()
