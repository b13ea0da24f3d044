"""Whether the statistics use the indexes: the server's explain of the very pipeline a refresh runs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import takewhile
from typing import Any

from pymongo.errors import OperationFailure

from exporter.core import MongoSessions
from exporter.core.errors import NAMESPACE_NOT_FOUND
from exporter.doctor.findings import Finding, error, ok, warn

# What each part of the statistics pipeline answers, by the key its rows carry.
PURPOSE = {
    "held": "the held sessions' counts per state",
    "inactive": "the inactive count",
    "deactivated": "the deactivated count",
    "sums": "the sums of count_use and count_success",
    "total": "the total",
    "oldest": "the oldest active last_use",
}
# One pass over every document is what the sums cost: by design, not a missing index.
_SCANS_BY_DESIGN = {"sums"}
_INDEX_STAGES = {"IXSCAN", "COUNT_SCAN", "DISTINCT_SCAN", "IDHACK", "EOF"}


@dataclass(frozen=True)
class Branch:
    """One part of the pipeline as the server plans it: stages (outermost first), index, and what it read."""

    name: str
    stages: tuple[str, ...]
    index: str | None = None
    multikey: bool = False
    keys: int | None = None
    docs: int | None = None

    @property
    def collscan(self) -> bool:
        """Whether the server reads the whole collection for this part."""
        return "COLLSCAN" in self.stages

    @property
    def plan(self) -> str:
        """`IXSCAN active_1_next_use_1` or `COLLSCAN`, innermost stage first."""
        chain = ">".join(reversed(self.stages))
        return f"{chain} {self.index}" if self.index else chain


def _planner(node: Any) -> Mapping[str, Any] | None:
    """The first explain section holding a `queryPlanner` (top level, or a `$cursor` stage's)."""
    stack = [node]
    while stack:
        item = stack.pop(0)
        if isinstance(item, Mapping):
            if "queryPlanner" in item:
                return item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _nodes(plan: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    node: Any = plan.get("queryPlan", plan)
    while isinstance(node, Mapping):
        yield node
        node = node.get("inputStage") or (node.get("inputStages") or [None])[0]


def branch(name: str, explain: Any) -> Branch:
    """A part of the pipeline from its explain output (queryPlanner or executionStats verbosity)."""
    section = _planner(explain)
    if section is None:
        # $collStats reads the collection's metadata: no plan, no scan.
        return Branch(name, ("$collStats",) if "$collStats" in str(explain) else ("UNKNOWN",))
    nodes = list(_nodes(section["queryPlanner"].get("winningPlan") or {}))
    indexed = next((n for n in nodes if "indexName" in n), None)
    stats = section.get("executionStats")
    return Branch(
        name,
        tuple(str(n.get("stage", "?")) for n in nodes),
        index=str(indexed["indexName"]) if indexed else None,
        multikey=bool(indexed and indexed.get("isMultiKey")),
        keys=int(stats["totalKeysExamined"]) if stats else None,
        docs=int(stats["totalDocsExamined"]) if stats else None,
    )


def _union_name(stage: Mapping[str, Any]) -> str:
    """The row key a `$unionWith` stage of the statistics pipeline produces."""
    for inner in stage["$unionWith"]["pipeline"]:
        for op in ("$set", "$project"):
            key = inner.get(op, {}).get("k")
            if isinstance(key, str):
                return key
    return "?"


def union_branches(pipeline: Sequence[Mapping[str, Any]], explain: Mapping[str, Any]) -> list[Branch]:
    """Every `$unionWith` part of the pipeline, paired in order with its explain."""
    names = [_union_name(stage) for stage in pipeline if "$unionWith" in stage]
    explained = [stage["$unionWith"] for stage in explain.get("stages", ()) if "$unionWith" in stage]
    return [branch(name, part.get("pipeline")) for name, part in zip(names, explained, strict=False)]


async def explain_statistics(sessions: MongoSessions) -> list[Branch]:
    """Explain a refresh's pipeline: the held part with executionStats (cheap: index keys), the rest planned only."""
    now = await sessions.server_time("explain")
    coll = sessions.collection

    async def explain(pipeline: list[dict[str, Any]], verbosity: str) -> Any:
        command = {"aggregate": coll.name, "pipeline": pipeline, "cursor": {}}
        return await coll.database.command("explain", command, verbosity=verbosity)

    # What the daemon runs every interval: the counts without the sums, the total from the metadata
    # ($collStats needs the collection to exist; the daemon counts instead until it does).
    pipeline = sessions.statistics_pipeline(now, total="metadata")
    held = list(takewhile(lambda stage: "$unionWith" not in stage, pipeline))
    async with sessions.guard("explain"):
        executed = await explain(held, "executionStats")
        try:
            planned = await explain(pipeline, "queryPlanner")
        except OperationFailure as exc:
            if exc.code != NAMESPACE_NOT_FOUND:
                raise
            pipeline = sessions.statistics_pipeline(now, total="count")
            planned = await explain(pipeline, "queryPlanner")
    return [branch("held", executed), *union_branches(pipeline, planned)]


def _listed(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def plan_findings(branches: Sequence[Branch], *, index_coming: bool) -> list[Finding]:
    """Index-only held counts (0 documents read) or not; any part but the sums scanning the collection.

    `index_coming`: a needed index is missing and the daemon will build it (a scan is then temporary).
    """
    out: list[Finding] = []
    scans = [b for b in branches if b.collscan and b.name not in _SCANS_BY_DESIGN]
    if scans:
        parts = [
            PURPOSE.get(b.name, b.name) + (f" ({b.docs:,} documents read)" if b.docs is not None else "") for b in scans
        ]
        text = f"the server scans the whole collection (COLLSCAN) for {_listed(parts)}"
        fix = "let the daemon build the missing indexes (see indexes)" if index_coming else "see indexes"
        out.append(warn("plans", text, fix) if index_coming else error("plans", text, fix))
    for part in branches:
        if part.name == "held" and part.docs and not part.collscan:
            cause = (
                f"{part.index} is multikey (a document holds an array in one of its fields), so it cannot cover them"
                if part.multikey
                else "the plan fetches documents"
            )
            out.append(
                warn(
                    "plans",
                    f"{PURPOSE['held']}: the server reads {part.docs:,} documents ({part.plan}), "
                    f"not index keys alone: {cause}",
                    "find and fix the documents with arrays (see documents), then rebuild the index "
                    "(drop it; the daemon recreates it): a multikey index stays multikey"
                    if part.multikey
                    else "see indexes",
                )
            )
    if out:
        return out
    held = next((b for b in branches if b.name == "held"), None)
    parts = []
    if held is not None:
        parts.append(
            f"held counts index-only ({held.keys or 0:,} index keys, 0 documents read: {held.plan})"
            if held.keys is not None
            else f"held counts {held.plan}"
        )
    parts += [f"{PURPOSE.get(b.name, b.name)}: {b.plan}" for b in branches if b.name != "held"]
    return [ok("plans", "; ".join(parts) + " (the sums read every document, every sums_interval: see sums)")]
