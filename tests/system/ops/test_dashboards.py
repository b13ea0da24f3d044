"""Grafana dashboards: committed JSON matches the generator, is import-ready, and its PromQL parses."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.support.paths import ROOT
from tests.support.tools import require_binary

DASHBOARD_DIR = ROOT / "dashboards"
EXPECTED_UIDS = {
    "session-pool-overview.json": "session-pool-overview",
    "session-pool-exporter-health.json": "session-pool-exporter-health",
}
CONTRACT_METRICS = {
    "session_pool_sessions",
    "session_pool_active_sessions",
    "session_pool_uses",
    "session_pool_successes",
    "session_pool_next_unlock_timestamp_seconds",
    "session_pool_oldest_active_last_use_timestamp_seconds",
    "session_pool_min_active_sessions",
    "session_pool_refresh_interval_seconds",
    "session_pool_up",
    "session_pool_last_success_timestamp_seconds",
    "session_pool_refresh_duration_seconds",
    "session_pool_refreshes_total",
    "session_pool_refresh_failures_total",
    "session_pool_admin_actions_total",
    "session_pool_admin_action_failures_total",
    "session_pool_build_info",
    "session_pool_lease_overruns_total",
    "session_pool_mongodb_member_clock_offset_seconds",
}


def load_generator() -> ModuleType:
    """Import dashboards/generate.py (not a package) by path."""
    spec = importlib.util.spec_from_file_location("dashboards_generate", DASHBOARD_DIR / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = load_generator()


def committed(name: str) -> dict[str, Any]:
    """A committed dashboard, parsed."""
    data: dict[str, Any] = json.loads((DASHBOARD_DIR / name).read_text(encoding="utf-8"))
    return data


def promtool() -> str:
    """Path of promtool (Debian's prometheus package)."""
    return require_binary("promtool", "Debian package prometheus")


def test_the_dashboards_are_the_ones_generated() -> None:
    """Exactly the generator's dashboards are committed (nothing missing, nothing extra)."""
    assert set(GENERATOR.DASHBOARDS) == set(EXPECTED_UIDS)
    assert {p.name for p in DASHBOARD_DIR.glob("*.json")} == set(EXPECTED_UIDS)


@pytest.mark.parametrize("name", sorted(EXPECTED_UIDS))
def test_committed_json_is_up_to_date(name: str) -> None:
    """Regenerating gives byte-identical JSON; otherwise run `python dashboards/generate.py`."""
    wanted = GENERATOR.text(GENERATOR.DASHBOARDS[name]())
    assert (DASHBOARD_DIR / name).read_text(encoding="utf-8") == wanted, (
        f"{name} is out of date: run .venv/bin/python dashboards/generate.py"
    )


@pytest.mark.integration
def test_generator_check_mode() -> None:
    """`generate.py --check` agrees that the committed files are current."""
    assert GENERATOR.main(["--check"]) == 0


@pytest.mark.parametrize("name", sorted(EXPECTED_UIDS))
def test_import_ready(name: str) -> None:
    """Stable uid, a DS_PROMETHEUS input and variable, a pool variable, datasource on every query."""
    board = committed(name)
    assert board["uid"] == EXPECTED_UIDS[name]
    assert board["title"]
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    assert board["__inputs"][0]["pluginId"] == "prometheus"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    pool = variables["pool"]
    assert pool["type"] == "query" and pool["multi"] and pool["includeAll"] and pool["allValue"] == ".*"
    assert pool["datasource"]["uid"] == "${DS_PROMETHEUS}"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
            assert target["expr"].strip()
        pos = panel["gridPos"]
        assert 0 <= pos["x"] < 24 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0


def test_required_panels() -> None:
    """The overview and health dashboards show what the on-call people need."""
    overview = {p["title"] for p in committed("session-pool-overview.json")["panels"]}
    assert {
        "Active sessions",
        "Sessions by state",
        "Active ratio",
        "Usage and success rates",
        "Success ratio",
        "Time to next unlock",
    } <= overview
    stacked = next(p for p in committed("session-pool-overview.json")["panels"] if p["title"] == "Sessions by state")
    assert stacked["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"
    health = {p["title"] for p in committed("session-pool-exporter-health.json")["panels"]}
    assert {
        "Scrape up",
        "Refresh up",
        "Age of last success",
        "Refresh duration",
        "Refresh failures",
        "Admin actions",
    } <= health


def all_expressions() -> list[tuple[str, str]]:
    """(dashboard/panel/ref, expr) for every query and query variable of every dashboard."""
    found = []
    for name in sorted(EXPECTED_UIDS):
        for where, expr in GENERATOR.expressions(committed(name)):
            found.append((f"{name}: {where}", expr))
    return found


def check_as_rules(expressions: list[str], directory: Path) -> subprocess.CompletedProcess[str]:
    """Run `promtool check rules` on a recording-rule file made of the expressions (parses PromQL)."""
    rules = [{"record": f"dashboard:expression_{i}:check", "expr": expr} for i, expr in enumerate(expressions)]
    path = directory / "dashboard-expressions.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-expressions", "rules": rules}]}))
    return subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False)


@pytest.mark.integration
def test_every_expression_parses(tmp_path: Path) -> None:
    """promtool parses every dashboard expression (template variables substituted first)."""
    expressions = [GENERATOR.substitute(expr) for _, expr in all_expressions()]
    assert len(expressions) >= 20
    result = check_as_rules(expressions, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
def test_the_parse_check_catches_bad_promql(tmp_path: Path) -> None:
    """The same check rejects a broken expression, so a pass above means something."""
    result = check_as_rules(['sum by (pool (session_pool_up{pool=~".*"})'], tmp_path)
    assert result.returncode != 0


def test_substitution_leaves_no_template_variable() -> None:
    """After substitution no `$` is left for Prometheus to choke on."""
    for where, expr in all_expressions():
        assert "$" not in GENERATOR.substitute(expr), where


def test_metrics_exist() -> None:
    """Every metric a dashboard reads is in the exporter's contract or is one of our recording rules."""
    recorded: set[str] = set()
    for path in (ROOT / "alerts").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            recorded.update(rule["record"] for rule in group["rules"] if "record" in rule)
    standard = {"up", "process_resident_memory_bytes", "process_cpu_seconds_total"}
    for where, expr in all_expressions():
        for name in re.findall(r"\b([a-z_:][a-z0-9_:]*)\s*\{", expr):
            assert name in CONTRACT_METRICS | recorded | standard, f"{where}: unknown metric {name}"
        for name in re.findall(r"(?<![:\w])(session_pool_[a-z0-9_]+)\b", expr):
            assert name in CONTRACT_METRICS, f"{where}: {name} is not in the metrics contract"
