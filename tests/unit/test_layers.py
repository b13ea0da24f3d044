"""The module map in CONTRIBUTING is the truth: every module is on it, imports point one way, no cycle."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from tests.support.paths import ROOT

PACKAGE = ROOT / "exporter"
MAX_LINES = 500


def _map_rows() -> list[tuple[str, list[str]]]:
    """(layer, module paths) for each row of CONTRIBUTING's "Map of the modules" table."""
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    section = text.split("## Map of the modules", 1)[1].split("\n## ", 1)[0]
    rows: list[tuple[str, list[str]]] = []
    layer = ""
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 3 or cells[0] == "layer" or cells[1].startswith("---"):
            continue
        layer = cells[0] or layer
        paths: list[str] = []
        base = ""
        for name in re.findall(r"`([^`]+)`", cells[1]):
            if "/" in name:
                base = name if name.endswith("/") else name.rsplit("/", 1)[0] + "/"
                paths.append(name)
            else:
                paths.append(base + name)
        rows.append((layer, paths))
    return rows


def _layers() -> dict[Path, int]:
    """Each module file's rank: the position of its layer in the map (0 = core)."""
    order: list[str] = []
    ranks: dict[Path, int] = {}
    for layer, paths in _map_rows():
        if layer not in order:
            order.append(layer)
        for path in paths:
            target = ROOT / path
            files = sorted(target.rglob("*.py")) if path.endswith("/") else [target]
            for file in files:
                ranks[file] = order.index(layer)
    return ranks


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _is_subpackage_init(path: Path) -> bool:
    return path.name == "__init__.py" and path.parent != PACKAGE


def _resolve(name: str) -> Path | None:
    """The file an absolute `exporter...` module name stands for."""
    parts = name.split(".")
    if parts[0] != "exporter":
        return None
    base = ROOT.joinpath(*parts)
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _imports(path: Path) -> set[Path]:
    """Every exporter module the file imports, at the top or inside a function."""
    found: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from exporter.x import y` names module exporter.x.y when y is a module.
            names = [
                f"{node.module}.{a.name}" if _resolve(f"{node.module}.{a.name}") else node.module for a in node.names
            ]
        for name in names:
            target = _resolve(name)
            if target is not None and target != path:
                found.add(target)
    return found


def _rank(path: Path, ranks: dict[Path, int]) -> int:
    if _is_subpackage_init(path):
        # A package's face re-exports its modules: it sits at the highest layer among them.
        return max(ranks[p] for p in path.parent.rglob("*.py") if p in ranks)
    return ranks[path]


def test_every_module_is_on_the_map() -> None:
    ranks = _layers()
    missing = [str(p.relative_to(ROOT)) for p in _modules() if p not in ranks and not _is_subpackage_init(p)]
    assert not missing, f"modules missing from CONTRIBUTING's map: {missing}"
    gone = [str(p.relative_to(ROOT)) for p in ranks if not p.is_file()]
    assert not gone, f"CONTRIBUTING's map names modules that do not exist: {gone}"


def test_imports_point_from_the_upper_layers_to_the_lower() -> None:
    ranks = _layers()
    wrong = [
        f"{m.relative_to(ROOT)} imports {t.relative_to(ROOT)}"
        for m in _modules()
        for t in sorted(_imports(m))
        if _rank(t, ranks) > _rank(m, ranks)
    ]
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_import_cycle() -> None:
    # A package's face re-exports its own modules: those edges are how packages work, not a cycle.
    graph = {
        m: {t for t in _imports(m) if not (m.name == "__init__.py" and t.is_relative_to(m.parent))} for m in _modules()
    }
    state: dict[Path, str] = {}
    cycles: list[str] = []

    def visit(node: Path, stack: list[Path]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycle = [*stack[stack.index(target) :], target]
                cycles.append(" -> ".join(str(p.relative_to(ROOT)) for p in cycle))
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_core_imports_only_the_driver_and_the_standard_library() -> None:
    allowed = {"exporter", "pymongo", "bson"} | set(sys.stdlib_module_names)
    outside = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((PACKAGE / "core").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        for name in (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom) and node.level == 0
            else []
        )
        if name.split(".")[0] not in allowed
    }
    assert not outside, f"the core imports beyond the driver: {sorted(outside)}"


def test_each_module_opens_with_a_one_line_docstring_in_plain_words() -> None:
    found = []
    for path in _modules():
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        name = str(path.relative_to(ROOT))
        if not doc:
            found.append(f"{name}: no docstring")
        elif not doc.splitlines()[0].strip().endswith((".", ")", ":")):
            found.append(f"{name}: the first line is not a sentence")
        elif re.search(r"\bthe seed\b|\bseed's\b", doc, re.IGNORECASE):
            found.append(f"{name}: say 'the original mongo_client library', not 'the seed'")
    assert not found, found


def test_no_module_is_past_the_size_that_means_two_jobs() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in _modules()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_map_parser_reads_rows_sharing_a_layer_and_a_directory() -> None:
    rows = {paths[0]: layer for layer, paths in _map_rows()}
    assert rows["exporter/core/errors.py"] == "core"
    flat = [p for _, paths in _map_rows() for p in paths]
    assert "exporter/admin/endpoints.py" in flat
