"""The operator console in a real chromium against the real daemon and a real mongod."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import MongoClient

from exporter.config import owners
from exporter.core import State
from exporter.mongod import Mongod, free_port
from tests.support.browser import PHONE, Watched, page, screenshot
from tests.support.console import login, password, phone, pool_entry
from tests.support.daemon import READ_TOKEN, WRITE_TOKEN, config, running
from tests.unit.console.conftest import Console


def sign_in(tab: Watched, console: Console, token: str) -> None:
    """Open the console and sign in with `token` through the form."""
    tab.page.goto(console.url)
    tab.page.get_by_label("Admin token").fill(token)
    tab.page.get_by_role("button", name="Sign in").click()


def held_now(console: Console, state: State) -> int:
    """How many sessions hold a recorded hold of that kind right now (counted in MongoDB, not by the daemon)."""
    kind = {State.LOCKED: "lock", State.BLOCKED: "block"}[state]
    now = datetime.now(UTC)
    return console.sessions.count_documents({"active": True, "next_use": {"$gt": now}, "hold.kind": kind})


def stored(console: Console, oid: ObjectId) -> dict[str, Any]:
    """The session's document as MongoDB holds it."""
    doc = console.sessions.find_one({"_id": oid})
    assert doc is not None
    return doc


def confirm(tab: Watched, reason: str) -> None:
    """Give the dialog's reason and confirm."""
    dialog = tab.page.locator("dialog[open]")
    dialog.get_by_label(re.compile("Reason")).fill(reason)
    dialog.locator("#dialog-ok").click()


def test_operator_journey(console: Console, chromium: Any) -> None:
    """Sign in, read the overview, find a session by phone and unlock it, bulk-unlock a state after a
    dry run, deactivate the underperformers, and find every action in the audit trail; the page logs
    no error and no CSP violation on the way, and never shows a credential."""
    with page(chromium) as tab:
        p = tab.page
        # A wrong token is refused and says so; the right one opens the overview.
        sign_in(tab, console, "not-a-token-but-long-enough-000")
        p.locator("#signin-note", has_text="Token refused").wait_for()
        p.get_by_label("Admin token").fill(WRITE_TOKEN)
        p.get_by_role("button", name="Sign in").click()
        card = p.locator(f"article[data-pool='{console.pool}']")
        for state in State:
            count = card.locator(f".value[data-state='{state}']")
            assert count.inner_text() == str(len(console.seeded.ids[state])), state
        assert "Refresh ok" in card.locator(".health").inner_text()
        assert "minimum 1" in card.inner_text()
        card.locator(".chart").wait_for(timeout=20_000)
        # The pool's lease overruns, from its sums (read at start), flagged as a warning.
        overruns = card.locator("dd.warn", has_text=str(console.seeded.overruns))
        overruns.wait_for(timeout=20_000)
        assert card.locator("dt", has_text="Lease overruns").count() == 1
        screenshot(tab, "pools")

        # Find a locked session by its phone: masked in the list, then unlock it from its page.
        target = console.seeded.ids[State.LOCKED][2]
        number = console.seeded.numbers[target]
        card.get_by_role("link", name=console.pool).click()
        p.get_by_label("Search").fill(phone(number))
        p.get_by_label("Search").press("Enter")
        p.locator("table.sessions caption", has_text="matching").wait_for()
        rows = p.locator("table.sessions tbody tr")
        assert rows.count() == 1 and rows.first.get_attribute("data-id") == str(target)
        text = rows.first.inner_text()
        assert phone(number) not in text and "••••••" + phone(number)[-2:] in text and "NL" in text
        rows.first.get_by_role("link").click()
        p.get_by_role("heading", name="State").wait_for()
        assert "session_lock" in p.inner_text("main")
        countdown = p.locator("time.countdown").first
        before = countdown.inner_text()
        assert re.fullmatch(r"in \d+m \d+s", before), before
        p.wait_for_timeout(1100)
        assert countdown.inner_text() != before, "the hold's end does not count down"
        p.get_by_role("button", name="Unlock").click()
        confirm(tab, "source recovered for this account")
        p.get_by_text("unlock: changed (locked → active)").first.wait_for()
        assert stored(console, target)["next_use"] is None
        assert "source recovered for this account" in p.inner_text("table.events")
        screenshot(tab, "session")

        # Bulk unlock of the blocked ones: the dry run's count first; cancelling changes nothing.
        blocked = held_now(console, State.BLOCKED)
        assert blocked == 6
        p.goto(f"{console.url}#/pools/{console.pool}?state=blocked")
        p.locator("[data-action='bulk-unlock']").click()
        dry = p.locator("dialog[open] .dry-run").inner_text()
        assert f"Dry run: {blocked} session(s) are blocked" in dry
        p.locator("dialog[open]").get_by_role("button", name="Cancel").click()
        assert held_now(console, State.BLOCKED) == blocked
        p.locator("[data-action='bulk-unlock']").click()
        confirm(tab, "the source lifted its bans")
        p.get_by_text(f"Bulk unlock: {blocked} blocked session(s) unlocked.").first.wait_for()
        assert held_now(console, State.BLOCKED) == 0
        p.goto(f"{console.url}#/pools/{console.pool}?state=locked")
        p.locator("table.sessions tbody tr").first.wait_for()
        screenshot(tab, "sessions")

        # The underperformers: select them all and deactivate.
        p.get_by_role("link", name="Underperforming").click()
        p.locator("table.sessions caption", has_text="underperforming").wait_for()
        listed = {r.get_attribute("data-id") for r in p.locator("table.sessions tbody tr").all()}
        assert listed == {str(i) for i in console.seeded.underperformers}
        screenshot(tab, "underperforming")
        p.get_by_label("Select every session on this page").check()
        p.get_by_role("button", name="Deactivate selected").click()
        confirm(tab, "success ratio far below the pool's")
        p.get_by_text("Deactivate: 5 changed, 0 unchanged, 0 failed").first.wait_for()
        assert console.sessions.count_documents({"_id": {"$in": console.seeded.underperformers}, "active": False}) == 5

        # The audit trail shows each action, with its actor and reason.
        p.get_by_role("link", name="Audit").click()
        p.locator("table.events").wait_for()
        trail = p.inner_text("table.events")
        assert "source recovered for this account" in trail
        assert trail.count("the source lifted its bans") == blocked
        assert trail.count("success ratio far below the pool's") == 5
        assert "alice" in trail
        screenshot(tab, "audit")
        p.get_by_label("Action").select_option("unlock")
        p.get_by_role("button", name="Search").click()
        p.locator("table.events caption", has_text=f"{blocked + 1} event(s)").wait_for()

        for secret in (password(number), login(number), WRITE_TOKEN):
            assert secret not in p.content()
        tab.clean(refused=[401])
        assert p.context.cookies() == []
    recorded = list(console.audit.find({"pool": console.pool}))
    assert {e["actor"] for e in recorded} == {"alice"}
    assert not [e for e in recorded if WRITE_TOKEN in str(e) or password(number) in str(e)]


def test_a_bulk_unlock_over_the_cap_is_shown_refused_before_any_confirmation(console: Console, chromium: Any) -> None:
    """More locked sessions than admin.bulk_unlock_cap: the dry run's refusal (409, count and cap) is shown and no
    unlock is offered; nothing changes."""
    locked = held_now(console, State.LOCKED)
    assert locked > 6
    with page(chromium) as tab:
        p = tab.page
        sign_in(tab, console, WRITE_TOKEN)
        p.locator("article.pool").wait_for()
        p.goto(f"{console.url}#/pools/{console.pool}?state=locked")
        p.locator("[data-action='bulk-unlock']").click()
        refused = p.locator("#result .dry-run")
        refused.wait_for()
        text = refused.inner_text()
        assert f"Dry run: {locked} session(s) are locked now, more than the cap of 6" in text
        assert "refused whole (409)" in text and p.locator("dialog[open]").count() == 0
        tab.clean()
    assert held_now(console, State.LOCKED) == locked


def test_a_read_token_searches_masked_fields_by_whole_value(console: Console, chromium: Any) -> None:
    """A read token's prefix finds nothing and the page says why; the whole phone finds the session."""
    target = console.seeded.ids[State.ACTIVE][1]
    number = phone(console.seeded.numbers[target])
    with page(chromium) as tab:
        p = tab.page
        sign_in(tab, console, READ_TOKEN)
        p.locator("article.pool").wait_for()
        p.goto(f"{console.url}#/pools/{console.pool}?q={number[:-1].replace('+', '%2B')}")
        p.locator("#exact-note").wait_for()
        assert "matches phone" in p.inner_text("#exact-note") and "has “" in p.inner_text(".empty")
        p.goto(f"{console.url}#/pools/{console.pool}?q={number.replace('+', '%2B')}")
        row = p.locator(f"table.sessions tbody tr[data-id='{target}']")
        row.wait_for()
        assert p.locator("table.sessions tbody tr").count() == 1 and number not in row.inner_text()
        tab.clean()


def test_a_read_token_sees_but_cannot_deactivate(console: Console, chromium: Any) -> None:
    """A read token lists sessions; its deactivate is refused (403) and the page says why; nothing changes."""
    target = console.seeded.ids[State.ACTIVE][0]
    with page(chromium) as tab:
        p = tab.page
        sign_in(tab, console, READ_TOKEN)
        p.locator("article.pool").wait_for()
        p.goto(f"{console.url}#/pools/{console.pool}?state=active&order=last_use_asc")
        row = p.locator(f"table.sessions tbody tr[data-id='{target}']")
        row.get_by_role("checkbox").check()
        p.get_by_role("button", name="Deactivate").click()
        confirm(tab, "trying with a read token")
        result = p.locator("#result .panel.error")
        result.wait_for()
        assert "Not allowed: token 'reader' has role 'read'; this route needs 'write'" in result.inner_text()
        tab.clean(refused=[403])
    assert stored(console, target)["active"] is True
    assert not console.audit.count_documents({"session_id": str(target)})


def test_the_token_in_the_fragment_moves_to_session_storage(console: Console, chromium: Any) -> None:
    """The demo's link carries the token in the fragment: the page keeps it in sessionStorage and
    clears it from the address bar; signing out forgets it."""
    with page(chromium) as tab:
        p = tab.page
        p.goto(f"{console.url}#token={WRITE_TOKEN}")
        p.locator("article.pool").wait_for()
        assert WRITE_TOKEN not in p.url and p.url.endswith("#/pools")
        assert p.evaluate("() => sessionStorage.getItem('session-pool-console-token')") == WRITE_TOKEN
        assert p.evaluate("() => document.cookie") == ""
        p.get_by_role("button", name="Sign out").click()
        p.get_by_label("Admin token").wait_for()
        assert p.evaluate("() => sessionStorage.length") == 0
        tab.clean()


def test_keyboard_only(console: Console, chromium: Any) -> None:
    """Sign in, search, open a session and cancel an action with the keyboard alone."""
    target = console.seeded.ids[State.LOCKED][5]
    number = console.seeded.numbers[target]
    with page(chromium) as tab:
        p = tab.page
        p.goto(console.url)
        p.keyboard.type(WRITE_TOKEN)  # the token field has the focus
        p.keyboard.press("Enter")
        p.locator("article.pool").wait_for()
        p.goto(f"{console.url}#/pools/{console.pool}?state=locked")
        p.locator("table.sessions").wait_for()
        reached = []
        for _ in range(40):
            p.keyboard.press("Tab")
            reached.append(p.evaluate("() => document.activeElement.id || document.activeElement.textContent.trim()"))
            if reached[-1] == "q":
                break
        assert "q" in reached, reached
        p.keyboard.type(login(number))
        p.keyboard.press("Enter")
        p.locator("table.sessions caption", has_text="matching").wait_for()
        link = p.locator(f"table.sessions tbody tr[data-id='{target}'] a")
        link.focus()
        p.keyboard.press("Enter")
        p.get_by_role("heading", name="State").wait_for()
        p.get_by_role("button", name="Deactivate").focus()
        p.keyboard.press("Enter")
        assert p.evaluate("() => document.activeElement.name") == "reason"
        p.keyboard.type("changed my mind")
        p.keyboard.press("Escape")
        assert p.locator("dialog[open]").count() == 0
        assert p.evaluate("() => document.activeElement.dataset.action") == "deactivate"
        tab.clean()
    assert stored(console, target)["active"] is True


def test_readable_on_a_phone(console: Console, chromium: Any) -> None:
    """At 390 px nothing but the tables scrolls sideways."""
    with page(chromium, PHONE) as tab:
        p = tab.page
        p.goto(f"{console.url}#token={WRITE_TOKEN}")
        p.locator("article.pool").wait_for()
        assert p.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
        screenshot(tab, "pools-phone")
        p.goto(f"{console.url}#/pools/{console.pool}?state=active")
        p.locator("table.sessions").wait_for()
        assert p.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
        screenshot(tab, "sessions-phone")
        tab.clean()


def test_a_csp_violation_would_be_caught(console: Console, chromium: Any) -> None:
    """The watch that keeps the other tests clean sees a CSP violation: an injected inline script is refused."""
    with page(chromium) as tab:
        tab.page.goto(console.url)
        tab.page.get_by_label("Admin token").wait_for()
        tab.page.evaluate(
            "() => document.body.append(Object.assign(document.createElement('script'), {textContent: 'window.x = 1'}))"
        )
        tab.page.wait_for_timeout(200)
        assert any("Content Security Policy" in e for e in tab.errors), tab.errors
        assert tab.page.evaluate("() => window.x") is None


def test_mongodb_unreachable_and_the_pool_down_are_said(chromium: Any) -> None:
    """With MongoDB unreachable the overview says the pool is down and why, and a list says MongoDB is
    unreachable (503) instead of an empty table."""
    data = config(
        f"mongodb://127.0.0.1:{free_port()}/?directConnection=true",
        [pool_entry("offline", "spe_console_ui")],
        mongodb={"server_selection_timeout": 1, "timeout": 2},
    )
    with running(data) as daemon, page(chromium) as tab:
        daemon.wait_for(lambda: daemon.get("/healthz").status_code == 200, "/healthz")
        p = tab.page
        p.goto(f"{daemon.url}/admin/ui/#token={WRITE_TOKEN}")
        # At first no refresh has finished; the overview redraws every 5 s with the failure's cause.
        health = p.locator("article[data-pool='offline'] .health.down", has_text="MongoDB is unreachable")
        health.wait_for(timeout=20_000)
        assert health.inner_text().startswith("Pool down: ")
        screenshot(tab, "pool-down")
        p.goto(f"{daemon.url}/admin/ui/#/pools/offline?state=locked")
        alert = p.locator("#list .panel.error")
        alert.wait_for(timeout=20_000)
        assert alert.inner_text().startswith("MongoDB unreachable:"), alert.inner_text()
        assert p.get_by_role("button", name="Try again").is_visible()
        tab.clean(refused=[503])


def test_stale_counts_are_dimmed_with_their_age_and_causes_are_words(
    chromium: Any, mongod_factory: Callable[..., Mongod]
) -> None:
    """MongoDB stopped after a good refresh: the card says why in words (no step name), dims the last counts
    and says how old they are; a pool whose collection is missing says so, with the close name."""
    server = mongod_factory()
    client: MongoClient[dict[str, Any]] = MongoClient(server.uri)
    with client:
        client["spe_console_stale"]["telegram"].insert_many([{"active": True, "next_use": None} for _ in range(5)])
    pools = [
        pool_entry("telegram", "spe_console_stale"),
        {**pool_entry("typo", "spe_console_stale"), "collection": "telegarm"},
    ]
    data = config(server.uri, pools, mongodb={"server_selection_timeout": 1, "timeout": 2},
                  defaults={"interval": 1, "jitter": 0, "refresh_timeout": 2, "max_age": 600})  # fmt: skip
    with running(data, create_pools=False) as daemon, page(chromium) as tab:
        daemon.wait_for(lambda: daemon.refreshes("telegram") >= 1 and daemon.refreshes("typo") >= 1, "refreshes")
        p = tab.page
        p.goto(f"{daemon.url}/admin/ui/#token={WRITE_TOKEN}")
        missing = p.locator("article[data-pool='typo'] .health.down")
        missing.wait_for(timeout=20_000)
        assert missing.inner_text() == (
            "Collection missing: collection spe_console_stale.telegarm does not exist (did you mean telegram?). "
            "Nothing creates it: check the pool's database and collection."
        ), missing.inner_text()
        card = p.locator("article[data-pool='telegram']")
        card.locator(".health.ok").wait_for(timeout=20_000)
        assert card.locator(".counts.aged").count() == 0
        server.stop()
        down = card.locator(".health.down", has_text="MongoDB is unreachable")
        down.wait_for(timeout=30_000)
        text = down.inner_text()
        assert text.startswith("Pool down: MongoDB is unreachable") and "connection refused" in text, text
        assert not re.search(r"(index_information|aggregate_statistics|server_time|connect): ", text), text
        assert card.locator(".counts.aged").count() == 1  # the last good counts, dimmed
        assert re.fullmatch(r"Counts as of .+ ago, not current\.", card.locator(".health.aged").inner_text())
        assert card.locator("[data-state='active']").inner_text() == "5"
        screenshot(tab, "pool-stale")
        tab.clean()  # the overview reads from memory: nothing is refused while MongoDB is down


def test_a_pool_another_daemon_watches_says_which(chromium: Any, mongo_uri: str) -> None:
    """Several daemons sharing the pools (shard): the card of a pool this daemon does not watch names the
    daemons that do, instead of saying it is down or has no refresh."""
    names = [f"shard_{n}" for n in range(8)]
    shard = {"count": 2, "index": 0, "replicas": 1}
    mine = [name for name in names if owners(name, 2, 1) == (0,)]
    theirs = [name for name in names if owners(name, 2, 1) == (1,)]
    assert mine and theirs
    data = config(mongo_uri, [pool_entry(name, "spe_console_shard") for name in names], shard=shard)
    with running(data, ready=True) as daemon, page(chromium) as tab:
        p = tab.page
        p.goto(f"{daemon.url}/admin/ui/#token={WRITE_TOKEN}")
        elsewhere = p.locator(f"article[data-pool='{theirs[0]}'] .health.elsewhere")
        elsewhere.wait_for(timeout=20_000)
        assert elsewhere.inner_text().startswith("Watched by daemon 1 (shard), not this one"), elsewhere.inner_text()
        p.locator(f"article[data-pool='{mine[0]}'] .health.ok").wait_for(timeout=20_000)
        assert p.locator(".health.down").count() == 0
        tab.clean()
