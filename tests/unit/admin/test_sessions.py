"""The console's API over real HTTP against a real mongod: lists, search, underperformers, history, states."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from exporter.core import State
from tests.support.console import Seeded, login, password, phone, pool_entry, seed
from tests.support.daemon import READ_TOKEN, config, serving, write_config
from tests.support.daemon import InProcess as Daemon
from tests.support.metrics import parse_metrics, value

SyncClient = MongoClient[dict[str, Any]]
DB = "spe_console_api"


@pytest.fixture
def seeded(sync_client: SyncClient, unique_name: str) -> Seeded:
    """A fresh pool of 60 sessions in every state."""
    return seed(sync_client[DB][unique_name])


@pytest.fixture
async def daemon(tmp_path: Path, mongo_uri: str, unique_name: str, seeded: Seeded) -> AsyncIterator[Daemon]:
    """The daemon watching the seeded pool, its audit trail in a collection of its own."""
    data = config(
        mongo_uri,
        [pool_entry(unique_name, DB)],
        admin={"audit": {"database": DB, "collection": f"{unique_name}_audit"}},
    )
    async with serving(write_config(tmp_path, data)) as d:
        await wait_until(lambda: d.collector.pools[unique_name].stats is not None, "first refresh")
        yield d


async def wait_until(predicate: Any, what: str, seconds: float = 20) -> None:
    """Poll `predicate` every 50 ms."""
    for _ in range(int(seconds / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


async def get(d: Daemon, path: str, token: str | None = None, **params: Any) -> Any:
    """GET an admin path; the parsed JSON with the status."""
    async with d.client(token) if token else d.client() as http:
        response = await http.get(path, params=params)
    return response.status_code, response.json()


async def test_each_state_lists_exactly_its_sessions_with_the_total(
    daemon: Daemon, unique_name: str, seeded: Seeded
) -> None:
    """Every state's list holds the seeded ids of that state, and `total` counts them."""
    for state in State:
        status, body = await get(daemon, f"/admin/pools/{unique_name}/sessions", state=str(state), page_size=200)
        assert status == 200, body
        assert body["total"] == len(seeded.ids[state]), state
        assert body["total_as_of"] is not None  # the last refresh's count, not a recount per page
        assert {s["id"] for s in body["sessions"]} == {str(i) for i in seeded.ids[state]}, state
        assert all(s["state"] == state for s in body["sessions"])


async def test_orders_and_pages(daemon: Daemon, unique_name: str, seeded: Seeded) -> None:
    """Held states default to the newest hold end first; pages split the list without overlap."""
    path = f"/admin/pools/{unique_name}/sessions"
    _, blocked = await get(daemon, path, state="blocked")
    ends = [s["next_use"] for s in blocked["sessions"]]
    assert blocked["order"] == "hold_desc" and ends == sorted(ends, reverse=True)
    _, first = await get(daemon, path, state="active", page_size=15, order="last_use_asc")
    _, second = await get(daemon, path, state="active", page_size=15, page=2, order="last_use_asc")
    used = [s["last_use"] for s in first["sessions"] + second["sessions"]]
    assert used == sorted(used) and len(set(used)) == 30
    assert first["total"] == second["total"] == 40


async def test_search_by_phone_and_login_masks_them(daemon: Daemon, unique_name: str, seeded: Seeded) -> None:
    """q finds a session by a prefix of a configured field; search fields are masked, `show` ones are not,
    and nothing else of `session` (the password) is in the answer."""
    target = seeded.ids[State.LOCKED][3]
    i = seeded.numbers[target]
    status, body = await get(daemon, f"/admin/pools/{unique_name}/sessions", q=phone(i))
    assert status == 200, body
    assert [s["id"] for s in body["sessions"]] == [str(target)] and body["total"] == 1
    shown = body["sessions"][0]["fields"]
    assert shown["country"] == "NL"
    assert shown["phone"] == "••••••" + phone(i)[-2:]  # the last session_fields.reveal (2) characters only
    listed = str(body["sessions"])
    assert phone(i) not in listed and login(i) not in listed and password(i) not in listed
    _, by_login = await get(daemon, f"/admin/pools/{unique_name}/sessions", q=login(i), state="locked")
    assert [s["id"] for s in by_login["sessions"]] == [str(target)]
    _, prefix = await get(daemon, f"/admin/pools/{unique_name}/sessions", q="user-0")
    assert prefix["total"] == 60
    _, wrong_state = await get(daemon, f"/admin/pools/{unique_name}/sessions", q=login(i), state="active")
    assert wrong_state["total"] == 0 and wrong_state["sessions"] == []


async def test_the_pool_and_a_session_show_their_lease_overruns(
    daemon: Daemon, unique_name: str, seeded: Seeded
) -> None:
    """The pool's statistics carry the sum of count_overrun from its sums; a session shows its own count."""
    pool = daemon.collector.pools[unique_name]
    await wait_until(lambda: pool.sums is not None, "the first reading of the sums")
    status, body = await get(daemon, "/admin/pools")
    assert status == 200, body
    (mine,) = [p for p in body["pools"] if p["name"] == unique_name]
    assert mine["statistics"]["overruns"] == seeded.overruns == 4
    held = seeded.ids[State.IN_USE][0]
    _, one = await get(daemon, f"/admin/pools/{unique_name}/sessions/{held}")
    assert one["count_overrun"] == 2


async def test_underperformers_are_the_lagging_often_used_sessions(
    daemon: Daemon, unique_name: str, seeded: Seeded, sync_client: SyncClient
) -> None:
    """underperforming=1 lists exactly the sessions with >= min_uses whose ratio is 20 % under the pool's;
    the gauge, counted on its own cadence, says how many."""
    status, body = await get(daemon, f"/admin/pools/{unique_name}/sessions", underperforming=1)
    assert status == 200, body
    assert {s["id"] for s in body["sessions"]} == {str(i) for i in seeded.underperformers}
    assert body["total"] == 5
    assert body["threshold"] == pytest.approx(seeded.successes / seeded.uses * 0.8)

    def gauge() -> float | None:
        samples = parse_metrics(daemon.metrics.render()[0].decode())
        return value(samples, "session_pool_underperforming_sessions", pool=unique_name)

    await wait_until(lambda: gauge() == 5, "the underperformers gauge at 5")
    # One of them recovers: the next count (interval 1 s) says 4.
    sync_client[DB][unique_name].update_one({"_id": seeded.underperformers[0]}, {"$set": {"count_success": 150}})
    await wait_until(lambda: gauge() == 4, "the underperformers gauge at 4")


async def test_bad_queries_are_located(daemon: Daemon, unique_name: str) -> None:
    """Every refusal is the one error shape, located at its query parameter."""
    path = f"/admin/pools/{unique_name}/sessions"
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "query.state"),
        ({"state": "sleeping"}, "query.state"),
        ({"state": "locked", "page_size": 500}, "query.page_size"),
        ({"state": "locked", "page": 300, "page_size": 200}, "query.page"),
        ({"state": "locked", "order": "random"}, "query.order"),
        ({"underperforming": 1, "state": "locked"}, "query.underperforming"),
        ({"q": ""}, "query.q"),
        ({"state": "locked", "sort": "x"}, "query.sort"),
    ]
    for params, location in cases:
        status, body = await get(daemon, path, **params)
        assert status == 422, (params, body)
        assert set(body) == {"error", "message", "problems"}
        assert location in [p["location"] for p in body["problems"]], (params, body)
    status, body = await get(daemon, f"/admin/pools/{unique_name}/sessions", "x" * 30, state="locked")
    assert status == 401


async def test_history_shows_the_hold_and_every_action(daemon: Daemon, unique_name: str, seeded: Seeded) -> None:
    """The history answers the session's hold with what set it, and its audit events newest first."""
    target = seeded.ids[State.LOCKED][0]
    async with daemon.client() as http:
        status, before = await get(daemon, f"/admin/pools/{unique_name}/sessions/{target}/history")
        assert status == 200, before
        assert before["session"]["set_by"] == "session_lock" and before["total"] == 0
        for action in ("unlock", "lock", "deactivate"):
            response = await http.post(
                f"/admin/pools/{unique_name}/sessions/{target}/{action}", json={"reason": f"test {action}"}
            )
            assert response.status_code == 200, response.text
    _, after = await get(daemon, f"/admin/pools/{unique_name}/sessions/{target}/history", READ_TOKEN)
    assert [e["action"] for e in after["events"]] == ["deactivate", "lock", "unlock"]
    assert [e["reason"] for e in after["events"]] == ["test deactivate", "test lock", "test unlock"]
    assert after["session"]["state"] == "inactive" and after["total"] == 3
    status, missing = await get(daemon, f"/admin/pools/{unique_name}/sessions/{'0' * 24}/history")
    assert status == 404 and missing["error"] == "not_found"


async def test_states_timeline_comes_from_memory(daemon: Daemon, unique_name: str, seeded: Seeded) -> None:
    """The overview's chart: points of the last hour, each with the five counts of a refresh."""
    status, body = await get(daemon, f"/admin/pools/{unique_name}/states")
    assert status == 200, body
    assert body["points"], body
    last = body["points"][-1]["states"]
    assert last == {str(s): len(seeded.ids[s]) for s in State}
    _, pools = await get(daemon, "/admin/pools")
    mine = next(p for p in pools["pools"] if p["name"] == unique_name)
    assert mine["search_fields"] == ["phone", "login"] and mine["min_active_sessions"] == 1
