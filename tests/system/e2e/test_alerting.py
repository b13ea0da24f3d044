"""The shipped Alertmanager example (amtool, its inhibit rules on a real Alertmanager) and the
renderings of the rules and the example the end-to-end test runs on shorter clocks."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.alerting import (
    ALERTMANAGER_EXAMPLE,
    Process,
    Webhook,
    alertmanager_config,
    binary,
    duration_ms,
    free_port,
    http_json,
    scaled_rules,
    wait_for,
)
from tests.support.paths import ROOT

JOB = "session-pool-exporter"
POOLS = [f"p{index:02d}" for index in range(1, 21)]
_RANGE = re.compile(r"\[(\d+(?:ms|s|m|h|d|w|y))\]")


def amtool() -> str:
    """Path of amtool (Debian's prometheus-alertmanager package)."""
    return binary("amtool")


@pytest.mark.integration
def test_amtool_accepts_the_example() -> None:
    """`amtool check-config` accepts examples/alertmanager.yml, with its three inhibit rules."""
    result = subprocess.run(
        [amtool(), "check-config", str(ALERTMANAGER_EXAMPLE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "3 inhibit rules" in result.stdout, result.stdout


def test_example_inhibits_by_the_rules_alert_names() -> None:
    """Every alert name the inhibit rules match as a source, or list as a target, is an alert of the rules."""
    rules = {
        rule["alert"]
        for path in sorted((ROOT / "alerts").glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    config = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text())
    for inhibit in config["inhibit_rules"]:
        for matcher in inhibit["source_matchers"] + inhibit["target_matchers"]:
            name = re.fullmatch(r'alertname(=|!=|=~)"(.+)"', matcher)
            if name is None:
                continue
            operator, value = name.groups()
            if operator == "=~":
                assert any(re.fullmatch(value, alert) for alert in rules), matcher
            else:
                assert value in rules, matcher


def test_docs_show_the_example_as_shipped() -> None:
    """docs/alerting.md's alertmanager.yml block is examples/alertmanager.yml, byte for byte."""
    text = (ROOT / "docs" / "alerting.md").read_text()
    blocks = re.findall(r'^```yaml title="alertmanager.yml"\n(.*?)^```$', text, flags=re.MULTILINE | re.DOTALL)
    assert blocks == [ALERTMANAGER_EXAMPLE.read_text()]


def test_rendering_for_tests_changes_only_timings_and_receiver() -> None:
    """The e2e test's Alertmanager config is the example with the webhook's URL and shorter group timings."""
    shipped = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text())
    rendered = alertmanager_config("http://127.0.0.1:1/alerts", 12)
    timings = ("group_wait", "group_interval", "repeat_interval")
    for timing in timings:
        assert duration_ms(rendered["route"][timing]) * 12 == duration_ms(shipped["route"][timing])
    assert {k: v for k, v in rendered["route"].items() if k not in timings} == {
        k: v for k, v in shipped["route"].items() if k not in timings
    }
    assert rendered["inhibit_rules"] == shipped["inhibit_rules"]
    assert [r["name"] for r in rendered["receivers"]] == [r["name"] for r in shipped["receivers"]]
    assert all(r["webhook_configs"] == [{"url": "http://127.0.0.1:1/alerts"}] for r in rendered["receivers"])


def test_scaled_rules_change_only_durations(tmp_path: Path) -> None:
    """The e2e test's rules are the shipped ones with every duration divided by the factor, nothing else."""
    sources = sorted((ROOT / "alerts").glob("*.yml"))
    copies = scaled_rules(tmp_path, 12)
    assert [p.name for p in copies] == [p.name for p in sources]
    changed = 0
    for source, copy in zip(sources, copies, strict=True):
        shipped, scaled = yaml.safe_load(source.read_text()), yaml.safe_load(copy.read_text())
        assert [g["name"] for g in scaled["groups"]] == [g["name"] for g in shipped["groups"]]
        for group, scaled_group in zip(shipped["groups"], scaled["groups"], strict=True):
            for rule, short in zip(group["rules"], scaled_group["rules"], strict=True):
                assert _RANGE.sub("[D]", short["expr"]) == _RANGE.sub("[D]", rule["expr"])
                for old, new in zip(_RANGE.findall(rule["expr"]), _RANGE.findall(short["expr"]), strict=True):
                    assert duration_ms(new) * 12 == duration_ms(old)
                    changed += 1
                if "for" in rule:
                    assert duration_ms(short["for"]) * 12 == duration_ms(rule["for"])
                    changed += 1
                rest = {k: v for k, v in rule.items() if k not in ("expr", "for")}
                assert {k: v for k, v in short.items() if k not in ("expr", "for")} == rest
    assert changed > 20


def alert(alertname: str, **labels: str) -> dict[str, Any]:
    """An alert as Prometheus sends it to Alertmanager's API."""
    return {
        "labels": {"alertname": alertname, "job": JOB, **labels},
        "annotations": {"summary": alertname},
        "startsAt": datetime.now(UTC).isoformat(),
    }


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[tuple[str, Webhook]]:
    """A real Alertmanager on the shipped example (group_wait 1 s), sending to a webhook."""
    webhook = Webhook()
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(yaml.safe_dump(alertmanager_config(webhook.url, 30)))
    process = Process(
        "alertmanager",
        [
            binary("prometheus-alertmanager"),
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("alertmanager ready", lambda: http_json(url + "/-/ready")[0] == 200, 30, process.tail)
        yield url, webhook
    finally:
        process.stop()
        webhook.close()


@pytest.mark.integration
def test_inhibit_rules_fold_symptoms_under_their_cause(alertmanager: tuple[str, Webhook]) -> None:
    """On a real Alertmanager: per-pool alerts of an exporter that cannot reach MongoDB, everything of
    an exporter that is down, and a missing collection's stale and refresh alerts are not notified;
    the same alerts of another replica, pool-level alerts and other teams' alerts are."""
    url, webhook = alertmanager
    inhibited = [
        # MongoDB unreachable from exp-a: 20 pools' stale, refresh-failing and refresh-errors alerts.
        *(alert(name, instance="exp-a:9810", pool=pool) for pool in POOLS for name in (
            "SessionPoolStatisticsStale", "SessionPoolRefreshFailing", "SessionPoolRefreshErrors")),
        alert("SessionPoolUnderperformingSessions", instance="exp-a:9810", pool="p03"),
        # exp-c cannot be scraped: whatever it said before.
        alert("SessionPoolMongoDBUnreachable", instance="exp-c:9810"),
        alert("SessionPoolStatisticsStale", instance="exp-c:9810", pool="p01"),
        # The collection of pool typo is missing: its alerts on exp-b.
        alert("SessionPoolStatisticsStale", instance="exp-b:9810", pool="typo"),
        alert("SessionPoolRefreshFailing", instance="exp-b:9810", pool="typo"),
    ]  # fmt: skip
    notified = [
        alert("SessionPoolMongoDBUnreachable", instance="exp-a:9810"),
        alert("SessionPoolExporterDown", instance="exp-c:9810"),
        alert("SessionPoolCollectionMissing", pool="typo"),
        # Another replica that reaches MongoDB: its own stale pool still pages.
        alert("SessionPoolStatisticsStale", instance="exp-b:9810", pool="p01"),
        # A pool-level alert (replicas aggregated away): not one exporter's symptom.
        alert("SessionPoolExhausted", pool="p01"),
        # Another team's alert about the same target.
        alert("NodeFilesystemFull", instance="exp-c:9810"),
    ]
    status, body = http_json(url + "/api/v2/alerts", data=inhibited + notified)
    assert status == 200, body

    def key(labels: dict[str, str]) -> tuple[str, str, str]:
        return labels["alertname"], labels.get("instance", ""), labels.get("pool", "")

    expected = sorted(key(a["labels"]) for a in notified)

    def received() -> list[tuple[str, str, str]]:
        return sorted(key(a["labels"]) for a in webhook.alerts())

    wait_for(
        "the notified alerts at the webhook", lambda: set(expected) <= set(received()), 30, lambda: str(received())
    )
    # Alertmanager says why the others were not sent: each is inhibited by its cause.
    status, body = http_json(url + "/api/v2/alerts")
    assert status == 200, body
    states = {key(a["labels"]): a["status"] for a in body}
    for labels in (a["labels"] for a in inhibited):
        assert states[key(labels)]["state"] == "suppressed" and states[key(labels)]["inhibitedBy"], labels
    for labels in (a["labels"] for a in notified):
        assert states[key(labels)]["state"] == "active", labels
    # Those alone were sent, one notification per group (alertname, job, pool): one per alert here.
    assert received() == expected
    assert len(webhook.notifications()) == len(notified)
