"""Prometheus rules: promtool checks and unit tests, labels, annotations and runbook anchors."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.paths import ROOT
from tests.support.tools import require_binary

RULE_FILES = sorted((ROOT / "alerts").glob("*.yml"))
TEST_FILES = sorted((ROOT / "tests" / "system" / "ops" / "rules").glob("*.test.yml"))
RUNBOOKS = ROOT / "docs" / "runbooks.md"
REQUIRED_ANNOTATIONS = ("summary", "description", "runbook_url")
SEVERITIES = {"critical", "warning", "info"}


def promtool() -> str:
    """Path of promtool (Debian's prometheus package)."""
    return require_binary("promtool", "Debian package prometheus")


def alerting_rules() -> list[dict[str, Any]]:
    """Every alerting rule of every rule file."""
    rules: list[dict[str, Any]] = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(rule for rule in group["rules"] if "alert" in rule)
    return rules


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    slug = heading.strip().lower()
    slug = re.sub(r"[^\w\- ]", "", slug)
    return slug.replace(" ", "-")


def runbook_anchors() -> set[str]:
    """Anchors of every heading in docs/runbooks.md."""
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", RUNBOOKS.read_text(), flags=re.MULTILINE)
    return {github_anchor(h) for h in headings}


def test_rule_files_exist() -> None:
    """The rule files and their unit tests are where the Helm chart copies them from."""
    assert RULE_FILES, "no alerts/*.yml"
    assert TEST_FILES, "no tests/system/ops/rules/*.test.yml"


@pytest.mark.integration
@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(path: Path) -> None:
    """`promtool check rules` accepts every rule file (syntax, PromQL, templates)."""
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.integration
@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests(path: Path) -> None:
    """`promtool test rules` passes every unit test file."""
    result = subprocess.run(
        [promtool(), "test", "rules", str(path)], capture_output=True, text=True, check=False, cwd=path.parent
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_names_unique() -> None:
    """No two alerting rules share a name (the runbook anchor is derived from it)."""
    names = [rule["alert"] for rule in alerting_rules()]
    assert len(names) == len(set(names)), names


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda r: r["alert"])
def test_alert_labels_and_annotations(rule: dict[str, Any]) -> None:
    """Every alert has a severity and summary, description and runbook_url annotations."""
    assert rule.get("labels", {}).get("severity") in SEVERITIES, rule["alert"]
    annotations = rule.get("annotations", {})
    for key in REQUIRED_ANNOTATIONS:
        assert str(annotations.get(key, "")).strip(), f"{rule['alert']} has no {key}"


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda r: r["alert"])
def test_runbook_url_anchor_exists(rule: dict[str, Any]) -> None:
    """Every runbook_url points at docs/runbooks.md#<anchor> and that section exists."""
    url = rule["annotations"]["runbook_url"]
    path, _, anchor = url.partition("#")
    assert path.endswith("docs/runbooks.md"), url
    assert anchor == github_anchor(rule["alert"]), f"{rule['alert']}: anchor should be its own section"
    assert anchor in runbook_anchors(), f"{url}: no such heading in docs/runbooks.md"


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    """The promtool tests hold, for every alert, a case where it fires and one where it must not."""
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerting_rules()}
    assert names - firing == set(), f"alerts never shown firing: {sorted(names - firing)}"
    assert names - quiet == set(), f"alerts never shown quiet: {sorted(names - quiet)}"


def test_stale_alert_covers_a_mongodb_outage() -> None:
    """A unit test shows the stale alert firing while the low-count gauges are absent."""
    text = "\n".join(path.read_text() for path in TEST_FILES)
    assert "mongodb outage never silences the low-count alerts quietly" in text


def test_threshold_comes_from_the_exporter() -> None:
    """The low-active alert compares with the exported per-pool minimum, not a literal."""
    rule = next(r for r in alerting_rules() if r["alert"] == "SessionPoolActiveSessionsLow")
    assert "session_pool_min_active_sessions" in rule["expr"]
