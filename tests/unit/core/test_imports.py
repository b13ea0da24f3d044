"""Handlers pay only for the core: importing it loads pymongo and the standard library, nothing of the daemon."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import sysconfig
import tomllib
from importlib.metadata import packages_distributions, requires
from pathlib import Path

from packaging.requirements import Requirement

from tests.support.paths import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
# What the daemon runs on; none of it may be loaded by a handler's import (named for a clear failure).
DAEMON_MODULES = {"prometheus_client", "starlette", "uvicorn", "apscheduler", "pydantic", "yaml", "structlog", "anyio"}


def _distributions(requirement: str) -> set[str]:
    """A distribution and those it requires unconditionally (no extra, marker true here), normalised names."""
    name = Requirement(requirement).name.lower()
    found = {name}
    for item in requires(name) or []:
        needed = Requirement(item)
        if needed.marker is None or needed.marker.evaluate({"extra": ""}):
            found |= _distributions(item)
    return found


def _in_stdlib(file: str) -> bool:
    """True for a file of the standard library (a venv's platstdlib holds its site-packages: not that)."""
    path = Path(file)
    return path.is_relative_to(sysconfig.get_path("stdlib")) and not {"site-packages", "dist-packages"} & set(
        path.parts
    )


def _loaded_by(statement: str) -> dict[str, str]:
    """Module -> file (empty: built in) of what a fresh interpreter loads for `statement`, beyond its start-up."""
    code = (
        "import json, sys; before = set(sys.modules)\n"
        f"{statement}\n"
        "new = set(sys.modules) - before\n"
        "print(json.dumps({m: getattr(sys.modules[m], '__file__', None) or '' for m in new}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded: dict[str, str] = json.loads(proc.stdout)
    return loaded


def test_importing_the_core_loads_nothing_of_the_daemon() -> None:
    """`from exporter import MongoSessions` (and exporter.core) load only the core, pymongo and what pymongo needs."""
    loaded = _loaded_by("import exporter.core\nfrom exporter import MongoSessions")
    assert "exporter.core.client" in loaded, loaded  # the import really happened
    ours = sorted(m for m in loaded if m.startswith("exporter.") and not m.startswith("exporter.core"))
    assert set(ours) <= {"exporter._version"}, ours
    assert not DAEMON_MODULES & {m.partition(".")[0] for m in loaded}
    allowed = set().union(*(_distributions(r) for r in PYPROJECT["project"]["dependencies"]))
    owners = packages_distributions()
    stdlib = tuple(sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib"))
    third_party = {m.partition(".")[0] for m, file in loaded.items() if file and not file.startswith(stdlib)} - {
        "exporter"
    }
    foreign = {
        top: owners.get(top, ["?"]) for top in third_party if not {d.lower() for d in owners.get(top, ["?"])} & allowed
    }
    assert foreign == {}, f"loaded beyond {sorted(allowed)}: {foreign}"


def _core_imports() -> set[str]:
    """Top-level modules named by an import statement in exporter/core (and exporter/__init__.py)."""
    names: set[str] = set()
    for path in [*(ROOT / "exporter" / "core").rglob("*.py"), ROOT / "exporter" / "__init__.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.partition(".")[0])
    return names - set(sys.stdlib_module_names) - {"__future__", "exporter"}


def test_the_base_dependencies_are_what_the_core_imports() -> None:
    """[project.dependencies] names exactly the distributions the core imports; the daemon's sit in the extra."""
    owners = packages_distributions()
    imported = {owners[module][0].lower() for module in _core_imports()}
    base = {Requirement(r).name.lower() for r in PYPROJECT["project"]["dependencies"]}
    assert imported == base, f"the core imports {sorted(imported)}, [project.dependencies] is {sorted(base)}"
    daemon = {Requirement(r).name.lower() for r in PYPROJECT["project"]["optional-dependencies"]["daemon"]}
    assert not daemon & base
