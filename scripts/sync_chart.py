"""Copy alerts/*.yml, dashboards/*.json and the version into the Helm chart, or check they match."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART_FILES = Path("helm/session-pool-exporter/files")
CHART_YAML = Path("helm/session-pool-exporter/Chart.yaml")
VERSION_FILE = Path("exporter/_version.py")
_CHART_VERSIONS = re.compile(r'^(?P<key>version|appVersion): *"?(?P<value>[^"\n]*)"?$', re.MULTILINE)


def version(root: Path) -> str:
    """The project's version, read from its one source (exporter/_version.py) without importing it."""
    match = re.search(r'^__version__ = "([^"]+)"$', (root / VERSION_FILE).read_text(encoding="utf-8"), re.MULTILINE)
    if match is None:
        raise SystemExit(f"{VERSION_FILE}: no __version__ line")
    return match.group(1)


def chart_with_version(text: str, wanted: str) -> str:
    """Chart.yaml with both its chart version and appVersion set to the project's version."""
    return _CHART_VERSIONS.sub(
        lambda m: f"{m['key']}: " + (f'"{wanted}"' if m["key"] == "appVersion" else wanted), text
    )


def is_rule_file(path: Path) -> bool:
    """Tell a Prometheus rule file (top-level `groups:`) from, e.g., a promtool test file."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return isinstance(doc, dict) and "groups" in doc


def sources(root: Path) -> dict[Path, Path]:
    """Map each chart copy (relative to root) to the source file it must equal."""
    wanted: dict[Path, Path] = {}
    for path in sorted((root / "alerts").glob("*.yml")):
        if is_rule_file(path):
            wanted[CHART_FILES / "alerts" / path.name] = path
    for path in sorted((root / "dashboards").glob("*.json")):
        wanted[CHART_FILES / "dashboards" / path.name] = path
    return wanted


def copies(root: Path) -> set[Path]:
    """The chart copies that exist now, relative to root."""
    found: set[Path] = set()
    for sub, pattern in (("alerts", "*.yml"), ("dashboards", "*.json")):
        found.update(p.relative_to(root) for p in (root / CHART_FILES / sub).glob(pattern))
    return found


def drift(root: Path = ROOT) -> list[str]:
    """Describe every difference between the sources and the chart copies (empty: in sync)."""
    wanted = sources(root)
    problems = [f"{copy}: no source file any more" for copy in sorted(copies(root) - set(wanted))]
    chart = (root / CHART_YAML).read_text(encoding="utf-8")
    if chart_with_version(chart, version(root)) != chart:
        problems.append(f"{CHART_YAML}: version/appVersion differ from {VERSION_FILE} ({version(root)})")
    for copy, source in wanted.items():
        target = root / copy
        if not target.exists():
            problems.append(f"{copy}: missing copy of {source.relative_to(root)}")
        elif target.read_bytes() != source.read_bytes():
            problems.append(f"{copy}: differs from {source.relative_to(root)}")
    return problems


def sync(root: Path = ROOT) -> list[str]:
    """Make the chart copies equal to the sources; return what was changed."""
    wanted = sources(root)
    changed: list[str] = []
    for stale in sorted(copies(root) - set(wanted)):
        (root / stale).unlink()
        changed.append(f"removed {stale}")
    chart = (root / CHART_YAML).read_text(encoding="utf-8")
    updated = chart_with_version(chart, version(root))
    if updated != chart:
        (root / CHART_YAML).write_text(updated, encoding="utf-8")
        changed.append(f"wrote {CHART_YAML} version {version(root)}")
    for copy, source in wanted.items():
        target = root / copy
        data = source.read_bytes()
        if not target.exists() or target.read_bytes() != data:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            changed.append(f"wrote {copy}")
    return changed


def main(argv: list[str] | None = None) -> int:
    """Sync the chart's copies, or with --check report drift and exit 1 if there is any."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report drift; exit 1 if any")
    args = parser.parse_args(argv)
    if args.check:
        problems = drift()
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run: python scripts/sync_chart.py", file=sys.stderr)
        return 1 if problems else 0
    for line in sync():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
