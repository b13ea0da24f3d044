"""A member whose clock runs 90 s ahead (libfaketime) on a real replica set: seen, named, and holds kept whole."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter import MongoSessions, SessionPoolError
from tests.support.daemon import config, running, write_config
from tests.support.doctor import doctor, json_checks
from tests.support.faultlab import FaultLab
from tests.support.metrics import value
from tests.system.faults.faults import FAULTS

SKEW = 90.0
DB, POOL = "spe_clocks", "pool"


@pytest.fixture(scope="module")
def lab() -> Iterator[FaultLab]:
    """Three members, the third one's clock 90 s ahead (it never becomes primary unless a test makes it)."""
    with FaultLab(skews={2: f"+{SKEW:g}s"}) as members:
        yield members


def test_the_daemon_exports_each_members_clock(lab: FaultLab) -> None:
    """session_pool_mongodb_member_clock_offset_seconds: about +90 s for the skewed member, about 0 for the others."""
    data = config(lab.uri, [{"name": "p", "database": DB, "collection": POOL}], tokens=False)
    with running(data, ready=True) as daemon:

        def offsets() -> dict[str, float | None]:
            samples = daemon.samples()
            name = "session_pool_mongodb_member_clock_offset_seconds"
            return {m.host: value(samples, name, member=m.host) for m in lab.members}

        daemon.wait_for(lambda: all(v is not None for v in offsets().values()), "a clock reading of every member")
        got = offsets()
    skewed, *normal = (got[m.host] for m in (lab.members[2], lab.members[0], lab.members[1]))
    assert skewed is not None and abs(skewed - SKEW) < 2, got
    assert all(v is not None and abs(v) < 2 for v in normal), got


def test_doctor_names_the_member_whose_clock_is_off(lab: FaultLab, tmp_path: Path) -> None:
    """`doctor` fails (exit 4) and names the member and how far ahead it is."""
    path = write_config(tmp_path, config(lab.uri, [{"name": "p", "database": DB, "collection": POOL}], tokens=False))
    result = doctor(path, "--json")
    assert result.returncode == 4, result.stdout + result.stderr
    _, checks = json_checks(result.stdout)
    clocks = [c for c in checks if c["check"] == "member-clocks"]
    assert [c["verdict"] for c in clocks] == ["error"], clocks
    # The offset as measured (within its stated uncertainty of the 90 s set): 1m29.998s is as right as 1m30s.
    found = re.match(rf"{re.escape(lab.members[2].host)}'s clock is 1m(\d+(?:\.\d+)?)s ahead", clocks[0]["found"])
    assert found is not None and abs(60 + float(found.group(1)) - SKEW) < 1, clocks[0]["found"]
    assert "NTP" in clocks[0]["fix"]


async def test_a_hold_survives_the_failover_to_a_member_ahead(lab: FaultLab) -> None:
    """A one-minute hold taken on the primary is still whole after the member 90 s ahead becomes primary: the
    core reads holds by the members' median clock, not by the new primary's (before, it was handed out again)."""
    pool = MongoSessions(lab.uri, DB, f"{POOL}_failover", tz_aware=True, w="majority")
    await pool.connect()
    try:
        await pool.add({"session": {"login": "only"}})
        taken = await pool.get_session(next_use_delay=60)
        assert taken is not None
        old = await asyncio.to_thread(lab.primary)
        assert old is not None and old is not lab.members[2]
        await asyncio.to_thread(FAULTS["skew"].inject, lab, old)
        skewed = ("127.0.0.1", lab.members[2].port)
        deadline = time.monotonic() + 30
        while pool.client.topology_description.server_descriptions()[skewed].server_type_name != "RSPrimary":
            # Until the client follows the election, a hand-out may meet no primary; it must never get the session.
            with contextlib.suppress(SessionPoolError):
                assert await pool.get_session() is None, "handed out again during its hold"
            assert time.monotonic() < deadline, "the client did not follow the election"
            await asyncio.sleep(0.2)
        # On the skewed primary, several times over: the session stays held.
        for _ in range(5):
            assert await pool.get_session() is None, "handed out again during its hold"
            await asyncio.sleep(0.2)
        # The holder's success still lands, and the hold it sets is not shorter than asked.
        await pool.session_success(taken, next_use_delay=30)
        assert await pool.get_session() is None
    finally:
        await pool.close()
