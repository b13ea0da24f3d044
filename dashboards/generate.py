"""Generate the Grafana dashboards (dashboards/*.json) with grafana-foundation-sdk."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.builders.common import ReduceDataOptions, StackingConfig
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import BigValueColorMode, BigValueGraphMode, StackingMode
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    RangeMap,
    RegexMap,
    SpecialValueMap,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
    VariableRefresh,
    VariableSort,
)

HERE = Path(__file__).resolve().parent
DS = DataSourceRef(type_val="prometheus", uid="${DS_PROMETHEUS}")
POOL = 'pool=~"$pool"'
EXPORTER_JOB = 'job=~".*session-pool-exporter.*"'
# Several exporter replicas export the same pool: one series per pool, whichever replica it comes from.
ONE = "max without (instance, pod) "
TAGS = ["session-pool-exporter", "mongodb"]


def query(expr: str, legend: str, ref: str) -> prometheus.Dataquery:
    """A range query against the dashboard's Prometheus datasource."""
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DS).range()


def series(title: str, description: str, unit: str, *targets: tuple[str, str], width: int = 12) -> timeseries.Panel:
    """A time series panel with one query per (expr, legend) pair."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .height(8)
        .span(width)
        .fill_opacity(10)
    )
    for index, (expr, legend) in enumerate(targets):
        panel = panel.with_target(query(expr, legend, chr(ord("A") + index)))
    return panel


def single(
    title: str, description: str, unit: str, expr: str, legend: str, *, thresholds: list[tuple[float | None, str]]
) -> stat.Panel:
    """A stat panel showing the latest value per series, coloured by thresholds."""
    steps = (
        dash.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([_step(value, color) for value, color in thresholds])
    )
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .height(5)
        .span(6)
        .thresholds(steps)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .graph_mode(BigValueGraphMode.NONE)
        .color_mode(BigValueColorMode.VALUE)
        .with_target(query(expr, legend, "A").instant())
    )


def _step(value: float | None, color: str) -> Threshold:
    """One threshold step (value None is the base step)."""
    return Threshold(value=value, color=color)


def variables() -> list[Any]:
    """The datasource variable (DS_PROMETHEUS, also an import input) and the pool variable."""
    datasource = dash.DatasourceVariable("DS_PROMETHEUS").label("Prometheus").type("prometheus")
    pool = (
        dash.QueryVariable("pool")
        .label("Pool")
        .datasource(DS)
        .query({"query": "label_values(session_pool_up, pool)", "refId": "PoolVariable"})
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )
    return [datasource, pool]


def overview() -> dash.Dashboard:
    """Session pools overview: capacity, states, usage and success of every pool."""
    board = dash.Dashboard("Session pools overview").uid("session-pool-overview").tags(TAGS)
    board = board.description("Sessions per state, active ratio, usage and success of each MongoDB session pool.")
    board = board.time("now-6h", "now").refresh("30s").timezone("browser").editable()
    for variable in variables():
        board = board.with_variable(variable)
    board = board.with_panel(
        single(
            "Active sessions",
            "Sessions a worker could take right now (count_active).",
            "none",
            f"pool:session_pool_active_sessions:max{{{POOL}}}",
            "{{pool}}",
            thresholds=[(None, "red"), (1, "orange"), (5, "green")],
        )
    )
    board = board.with_panel(
        single(
            "Active ratio",
            "Active sessions / all sessions; the SessionPoolActiveRatioLow alert fires at or below 20%.",
            "percentunit",
            f"pool:session_pool_active_ratio:ratio{{{POOL}}}",
            "{{pool}}",
            thresholds=[(None, "red"), (0.2, "orange"), (0.5, "green")],
        )
    )
    board = board.with_panel(
        single(
            "Success ratio (1h)",
            "Successes / uses over the last hour, from the session_pool_successes and session_pool_uses gauges.",
            "percentunit",
            f"pool:session_pool_success_ratio:ratio1h{{{POOL}}}",
            "{{pool}}",
            thresholds=[(None, "red"), (0.5, "orange"), (0.8, "green")],
        )
    )
    board = board.with_panel(
        single(
            "Time to next unlock",
            "Seconds until the earliest lock or block of the pool ends (no value: nothing is held).",
            "s",
            f"clamp_min({ONE}(session_pool_next_unlock_timestamp_seconds{{{POOL}}}) - time(), 0)",
            "{{pool}}",
            thresholds=[(None, "green")],
        )
    )
    board = board.with_panel(
        series(
            "Active sessions vs minimum",
            "Active sessions and the pool's configured min_active_sessions (SessionPoolActiveSessionsLow).",
            "none",
            (f"pool:session_pool_active_sessions:max{{{POOL}}}", "{{pool}} active"),
            (f"{ONE}(session_pool_min_active_sessions{{{POOL}}})", "{{pool}} minimum"),
        )
    )
    board = board.with_panel(
        series(
            "Sessions by state",
            "Sessions per state, stacked: active, in_use (held within the grace), locked, blocked, inactive.",
            "none",
            (f"max by (pool, state) (session_pool_sessions{{{POOL}}})", "{{pool}} {{state}}"),
        ).stacking(StackingConfig().mode(StackingMode.NORMAL))
    )
    board = board.with_panel(
        series(
            "Active ratio",
            "Active sessions / all sessions over time.",
            "percentunit",
            (f"pool:session_pool_active_ratio:ratio{{{POOL}}}", "{{pool}}"),
        )
        .min(0)
        .max(1)
    )
    board = board.with_panel(
        series(
            "Usage and success rates",
            "Uses and successes per second, derived with deriv() from the session_pool_uses and "
            "session_pool_successes gauges (sums over documents read every sums_interval, not counters) "
            "over 15 minutes: three readings at the default 300 s.",
            "ops",
            (f"pool:session_pool_uses:deriv15m{{{POOL}}}", "{{pool}} uses"),
            (f"pool:session_pool_successes:deriv15m{{{POOL}}}", "{{pool}} successes"),
        )
    )
    board = board.with_panel(
        series(
            "Success ratio",
            "Successes / uses over the last 15 minutes (three readings of the sums), the last hour and the last day "
            "(SessionPoolSuccessRatioBelowNorm compares the last two).",
            "percentunit",
            (
                f"clamp({ONE}(delta(session_pool_successes{{{POOL}}}[15m]))"
                f" / ({ONE}(delta(session_pool_uses{{{POOL}}}[15m])) > 0), 0, 1)",
                "{{pool}} 15m",
            ),
            (f"pool:session_pool_success_ratio:ratio1h{{{POOL}}}", "{{pool}} 1h"),
            (f"pool:session_pool_success_ratio:ratio1d{{{POOL}}}", "{{pool}} 1d"),
        )
        .min(0)
        .max(1)
    )
    board = board.with_panel(
        series(
            "Lease overruns",
            "Reports handlers made on a session already handed to another handler (their work outlasted "
            "next_use_delay), per interval; read with the sums every sums_interval (SessionPoolLeaseOverruns).",
            "none",
            (
                f"{ONE}(increase(session_pool_lease_overruns_total{{{POOL}}}[$__rate_interval]))",
                "{{pool}} overruns",
            ),
        )
    )
    board = board.with_panel(
        series(
            "Time to next unlock",
            "Seconds until the earliest lock or block ends, and how long the least recently used "
            "active session has rested.",
            "s",
            (
                f"clamp_min({ONE}(session_pool_next_unlock_timestamp_seconds{{{POOL}}}) - time(), 0)",
                "{{pool}} next unlock",
            ),
            (
                f"time() - {ONE}(session_pool_oldest_active_last_use_timestamp_seconds{{{POOL}}})",
                "{{pool}} oldest active idle",
            ),
        )
    )
    return board


def health() -> dash.Dashboard:
    """Exporter health: scrape and refresh status, staleness, durations, failures, admin actions."""
    board = dash.Dashboard("Session pool exporter health").uid("session-pool-exporter-health").tags(TAGS)
    board = board.description(
        "Is session-pool-exporter scraped, are its refreshes fresh and fast, what did admins change."
    )
    board = board.time("now-6h", "now").refresh("30s").timezone("browser").editable()
    for variable in variables():
        board = board.with_variable(variable)
    up_mappings: list[ValueMap | RangeMap | RegexMap | SpecialValueMap] = [
        ValueMap(
            options={
                "0": ValueMappingResult(text="DOWN", color="red"),
                "1": ValueMappingResult(text="UP", color="green"),
            }
        )
    ]
    board = board.with_panel(
        single(
            "Scrape up",
            "Whether Prometheus can scrape each exporter instance (SessionPoolExporterDown).",
            "none",
            f"up{{{EXPORTER_JOB}}}",
            "{{instance}}",
            thresholds=[(None, "red"), (1, "green")],
        ).mappings(up_mappings)
    )
    board = board.with_panel(
        single(
            "Refresh up",
            "Whether the last refresh of each pool succeeded (SessionPoolRefreshFailing).",
            "none",
            f"session_pool_up{{{POOL}}}",
            "{{pool}} {{instance}}",
            thresholds=[(None, "red"), (1, "green")],
        ).mappings(up_mappings)
    )
    board = board.with_panel(
        single(
            "Age of last success",
            "Seconds since the last successful refresh (SessionPoolStatisticsStale past 3 intervals).",
            "s",
            f"time() - session_pool_last_success_timestamp_seconds{{{POOL}}}",
            "{{pool}} {{instance}}",
            thresholds=[(None, "green"), (60, "orange"), (180, "red")],
        )
    )
    board = board.with_panel(
        single(
            "Version",
            "Exporter build (session_pool_build_info).",
            "none",
            f"count by (version, python_version, pymongo_version) (session_pool_build_info{{{EXPORTER_JOB}}})",
            "{{version}} (python {{python_version}}, pymongo {{pymongo_version}})",
            thresholds=[(None, "blue")],
        )
    )
    board = board.with_panel(
        series(
            "Age of last success",
            "Seconds since each pool's last successful refresh, against the stale threshold (3 intervals).",
            "s",
            (f"time() - session_pool_last_success_timestamp_seconds{{{POOL}}}", "{{pool}} {{instance}} age"),
            (f"3 * session_pool_refresh_interval_seconds{{{POOL}}}", "{{pool}} {{instance}} stale threshold"),
        )
    )
    board = board.with_panel(
        series(
            "Refresh duration",
            "Duration of each pool's last refresh (one aggregation on MongoDB).",
            "s",
            (f"session_pool_refresh_duration_seconds{{{POOL}}}", "{{pool}} {{instance}}"),
        )
    )
    board = board.with_panel(
        series(
            "Refresh failures",
            "Refreshes attempted and failed per second (SessionPoolRefreshErrors above 20% failed).",
            "ops",
            (f"rate(session_pool_refreshes_total{{{POOL}}}[$__rate_interval])", "{{pool}} {{instance}} refreshes"),
            (
                f"rate(session_pool_refresh_failures_total{{{POOL}}}[$__rate_interval])",
                "{{pool}} {{instance}} failures",
            ),
        )
    )
    board = board.with_panel(
        series(
            "Admin actions",
            "Admin API writes applied and failed, per pool and action (increase over the interval).",
            "none",
            (
                f"sum by (pool, action) (increase(session_pool_admin_actions_total{{{POOL}}}[$__rate_interval]))",
                "{{pool}} {{action}}",
            ),
            (
                # Failure series only exist after a first failure: show 0 for every action used.
                "sum by (pool, action) "
                f"(increase(session_pool_admin_action_failures_total{{{POOL}}}[$__rate_interval]))"
                " or sum by (pool, action) "
                f"(increase(session_pool_admin_actions_total{{{POOL}}}[$__rate_interval])) * 0",
                "{{pool}} {{action}} failed",
            ),
        )
    )
    board = board.with_panel(
        series(
            "MongoDB member clocks",
            "Each replica-set member's clock against the exporter's, from the driver's heartbeats; members more "
            "than 0.25 s apart fire SessionPoolMongoDBClocksApart (only their differences matter).",
            "s",
            (f"session_pool_mongodb_member_clock_offset_seconds{{{EXPORTER_JOB}}}", "{{member}} ({{instance}})"),
        )
    )
    board = board.with_panel(
        series(
            "Exporter memory",
            "Resident memory of each exporter process.",
            "bytes",
            (f"process_resident_memory_bytes{{{EXPORTER_JOB}}}", "{{instance}}"),
        )
    )
    board = board.with_panel(
        series(
            "Exporter CPU",
            "CPU seconds per second used by each exporter process.",
            "percentunit",
            (f"rate(process_cpu_seconds_total{{{EXPORTER_JOB}}}[$__rate_interval])", "{{instance}}"),
        )
    )
    return board


DASHBOARDS = {"session-pool-overview.json": overview, "session-pool-exporter-health.json": health}


def render(board: dash.Dashboard) -> dict[str, Any]:
    """The import-ready JSON document: SDK output plus __inputs/__requires and panel ids."""
    model: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    for number, panel in enumerate(model.get("panels", []), start=1):
        panel["id"] = number
    for variable in model.get("templating", {}).get("list", []):
        # The SDK writes a placeholder UUID; Grafana keys variables by name.
        variable.pop("id", None)
    return {
        "__inputs": [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "description": "The Prometheus that scrapes session-pool-exporter and loads alerts/*.yml",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            {"type": "panel", "id": "timeseries", "name": "Time series", "version": ""},
            {"type": "panel", "id": "stat", "name": "Stat", "version": ""},
        ],
        **model,
    }


def text(board: dash.Dashboard) -> str:
    """The committed form of a dashboard: stable key order, 2-space indent, final newline."""
    return json.dumps(render(board), indent=2, ensure_ascii=False) + "\n"


def expressions(model: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every PromQL expression of a dashboard JSON: (where, expr), panels and variables."""
    for panel in model.get("panels", []):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield f"{panel['title']}/{target.get('refId', '?')}", target["expr"]
    for variable in model.get("templating", {}).get("list", []):
        query_value = variable.get("query")
        if variable.get("type") == "query" and query_value:
            text_value = query_value["query"] if isinstance(query_value, dict) else query_value
            yield f"variable {variable['name']}", text_value


LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)$")


def substitute(expr: str, *, pool: str = ".*", rate_interval: str = "1m") -> str:
    """Replace Grafana template variables (and label_values()) so Prometheus can run the expression."""
    match = LABEL_VALUES.match(expr.strip())
    if match:
        expr = match.group("selector") or f'{{{match.group("label")}!=""}}'
    for name, value in (("__rate_interval", rate_interval), ("__interval", rate_interval), ("pool", pool)):
        expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
    return expr


def main(argv: list[str] | None = None) -> int:
    """Write dashboards/*.json, or with --check report which are out of date."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a committed dashboard differs")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path = HERE / name
        wanted = text(build())
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != wanted:
                stale.append(name)
        else:
            path.write_text(wanted, encoding="utf-8")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python dashboards/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
