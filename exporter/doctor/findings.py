"""Findings of the doctor: a verdict, what was found and what to do, one per line; the report and its exit code."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from exporter.exits import EXIT_ERRORS, EXIT_OK, EXIT_WARNINGS

SERVER = "server"


class Verdict(StrEnum):
    """How a check came out; the report's verdict is its worst finding's."""

    OK = "ok"
    WARN = "warn"
    ERROR = "error"


_RANK = {Verdict.OK: 0, Verdict.WARN: 1, Verdict.ERROR: 2}


@dataclass(frozen=True)
class Finding:
    """One line of the report: which check, its verdict, what was found and what to do (None: nothing)."""

    check: str
    verdict: Verdict
    found: str
    fix: str | None = None
    pool: str | None = None

    def for_pool(self, pool: str) -> Finding:
        """The same finding, about `pool`."""
        return Finding(self.check, self.verdict, self.found, self.fix, pool)

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of one check."""
        return {
            "pool": self.pool,
            "check": self.check,
            "verdict": str(self.verdict),
            "found": self.found,
            "fix": self.fix,
        }


def ok(check: str, found: str) -> Finding:
    """A check that passed."""
    return Finding(check, Verdict.OK, found)


def warn(check: str, found: str, fix: str | None) -> Finding:
    """Something works, but worse than it should, or will break under conditions named in `found`."""
    return Finding(check, Verdict.WARN, found, fix)


def error(check: str, found: str, fix: str | None) -> Finding:
    """Something the daemon relies on is broken."""
    return Finding(check, Verdict.ERROR, found, fix)


@dataclass
class Report:
    """Every finding, the server's first, then each pool's in the configuration's order."""

    pools: Mapping[str, str]
    findings: list[Finding] = field(default_factory=list)

    def add(self, findings: Iterable[Finding], pool: str | None = None) -> None:
        """Record findings (about `pool`, or the server when None)."""
        self.findings.extend(f.for_pool(pool) if pool is not None else f for f in findings)

    @property
    def verdict(self) -> Verdict:
        """The worst verdict found (ok for an empty report)."""
        return max((f.verdict for f in self.findings), key=_RANK.__getitem__, default=Verdict.OK)

    def exit_code(self) -> int:
        """0 all ok, 1 warnings only, 4 errors."""
        return {Verdict.OK: EXIT_OK, Verdict.WARN: EXIT_WARNINGS, Verdict.ERROR: EXIT_ERRORS}[self.verdict]

    def counts(self) -> dict[Verdict, int]:
        """Findings per verdict."""
        return {v: sum(f.verdict is v for f in self.findings) for v in Verdict}

    def to_json(self) -> str:
        """`{"verdict": ..., "checks": [{"pool", "check", "verdict", "found", "fix"}]}`; pool null for the server."""
        return json.dumps({"verdict": str(self.verdict), "checks": [f.as_dict() for f in self.findings]}, indent=2)

    def to_text(self) -> str:
        """Lines grouped by section (the server, then each pool), and a summary line."""
        width = max((len(f.check) for f in self.findings), default=0)
        lines: list[str] = []
        sections: list[tuple[str | None, str]] = [(None, SERVER)]
        sections += [(name, f"pool {name} ({where})") for name, where in self.pools.items()]
        for pool, title in sections:
            mine = [f for f in self.findings if f.pool == pool]
            if not mine:
                continue
            if lines:
                lines.append("")
            lines.append(title)
            for f in mine:
                fix = f" → {f.fix}" if f.fix else ""
                lines.append(f"  {f.verdict:<5}  {f.check:<{width}}  {f.found}{fix}")
        counts = self.counts()
        summary = ", ".join(f"{counts[v]} {name}" for v, name in _PLURALS if counts[v] or v is Verdict.OK)
        lines.append("")
        lines.append(f"doctor: {self.verdict} ({summary}); exit {self.exit_code()}")
        return "\n".join(lines)


_PLURALS = ((Verdict.ERROR, "error(s)"), (Verdict.WARN, "warning(s)"), (Verdict.OK, "ok"))
