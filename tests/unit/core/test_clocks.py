"""Member clocks, the shift that keeps holds whole, and the primary watch, on the driver's own event objects."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from pymongo import monitoring
from pymongo.asynchronous.settings import TopologySettings
from pymongo.hello import Hello
from pymongo.server_description import ServerDescription
from pymongo.topology_description import TOPOLOGY_TYPE, TopologyDescription

from exporter.core.clocks import (
    ESTIMATE_UNCERTAINTY,
    NO_SHIFT,
    MemberClocks,
    Reading,
    Shift,
    offset_of,
    outliers,
    shift_of,
)
from exporter.core.failover import PrimaryReplaced, PrimaryWatch, on_primary, primary_of
from exporter.core.timeframe import TimeFrame


def reading(offset: float) -> Reading:
    return Reading(offset, 0.001, 0.0)


def test_offset_takes_half_the_round_trip() -> None:
    """A clock read while answering: half the round trip before we received the answer."""
    sent = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    offset, uncertainty = offset_of(sent, sent.timestamp() + 0.1, 0.2)
    assert offset == pytest.approx(0.0, abs=1e-6) and uncertainty == pytest.approx(0.101)
    ahead, _ = offset_of(sent.replace(tzinfo=None) + timedelta(seconds=90), sent.timestamp(), None)
    assert ahead == pytest.approx(90.0)


def test_outliers_name_the_member_off_the_median() -> None:
    offsets = {"a:1": reading(0.0), "b:1": reading(0.01), "c:1": reading(90.0)}
    ((member, ahead, _),) = outliers(offsets)
    assert member == "c:1" and ahead == pytest.approx(89.99)
    assert outliers({"a:1": reading(0.0), "b:1": reading(0.2), "c:1": reading(0.1)}) == []
    assert outliers({"a:1": reading(0.0)}) == []


def test_the_shift_only_ever_lengthens_holds() -> None:
    """A primary ahead reads holds with its clock moved back; one behind sets them longer; else nothing moves."""
    normal = {"p:1": reading(0.0), "s:1": reading(0.0), "t:1": reading(0.0)}
    assert shift_of("p:1", normal) == NO_SHIFT
    ahead = {**normal, "p:1": reading(90.0)}
    assert shift_of("p:1", ahead) == Shift(read=90.0, write=0.0)
    behind = {**normal, "p:1": reading(-30.0)}
    assert shift_of("p:1", behind) == Shift(read=0.0, write=30.0)
    # A secondary off alone moves nothing while the primary agrees with the majority.
    assert shift_of("p:1", {**normal, "t:1": reading(90.0)}) == NO_SHIFT
    # Two members: whichever way is safe, by the other one.
    assert shift_of("p:1", {"p:1": reading(5.0), "s:1": reading(0.0)}) == Shift(read=5.0, write=0.0)
    assert shift_of("p:1", {"p:1": reading(0.0), "s:1": reading(5.0)}) == Shift(read=0.0, write=5.0)
    # Unknown primary, no reading of it, or nobody to compare with: nothing.
    assert shift_of(None, ahead) == NO_SHIFT and shift_of("x:1", ahead) == NO_SHIFT
    assert shift_of("p:1", {"p:1": reading(90.0)}) == NO_SHIFT


def test_a_shifted_frame_moves_only_the_servers_now() -> None:
    frame = TimeFrame()
    assert frame.shifted(0) is frame
    assert frame.shifted(-90).now_expr(timedelta(seconds=1)) == {"$add": ["$$NOW", -89_000]}
    moscow = TimeFrame("Europe/Moscow").shifted(2.5)
    assert moscow.now_expr() == {"$add": ["$$NOW", moscow.offset_ms() + 2500]}
    when = datetime(2026, 12, 1, tzinfo=UTC)
    assert moscow.to_stored(when) == TimeFrame("Europe/Moscow").to_stored(when)


def heartbeat(port: int, local: datetime, duration: float, awaited: bool) -> monitoring.ServerHeartbeatSucceededEvent:
    """The driver's heartbeat event for a member answering `local` as its localTime."""
    return monitoring.ServerHeartbeatSucceededEvent(
        duration, Hello({"ok": 1, "localTime": local}), ("h", port), awaited
    )


def test_member_clocks_from_heartbeats() -> None:
    """Plain hellos give the round trip; streamed ones are read as sent at once; old readings drop out."""
    clocks = MemberClocks(max_age=60)
    now = datetime.now(UTC)
    clocks.succeeded(heartbeat(1, now, 0.002, awaited=False))
    clocks.succeeded(heartbeat(2, now + timedelta(seconds=90), 0.002, awaited=False))
    clocks.succeeded(heartbeat(3, now.replace(tzinfo=None), 10.0, awaited=True))
    offsets = clocks.offsets()
    assert set(offsets) == {"h:1", "h:2", "h:3"}
    assert offsets["h:2"].offset - offsets["h:1"].offset == pytest.approx(90, abs=0.5)
    assert abs(offsets["h:3"].offset - offsets["h:1"].offset) < 0.5  # the 10 s wait of a streamed answer is no delay
    shift = clocks.shift("h:2")
    assert shift.read == pytest.approx(90, abs=0.5) and shift.write == 0.0
    stale = MemberClocks(max_age=0)
    stale.succeeded(heartbeat(1, now, 0.002, awaited=False))
    assert stale.offsets() == {}


def test_a_members_clock_now_from_a_recent_and_precise_reading() -> None:
    """now_of: the member's clock read at its last heartbeat, moved on by ours; None when imprecise or unknown."""
    clocks = MemberClocks()
    ahead = datetime.now(UTC) + timedelta(seconds=90)
    clocks.succeeded(heartbeat(1, ahead, 0.002, awaited=False))
    clocks.succeeded(heartbeat(2, ahead, 2 * ESTIMATE_UNCERTAINTY + 0.1, awaited=False))  # too slow to trust
    estimate = clocks.now_of("h:1")
    assert estimate is not None
    assert abs((estimate - (datetime.now(UTC) + timedelta(seconds=90))).total_seconds()) < 0.1
    assert clocks.now_of("h:2") is None and clocks.now_of("h:9") is None


def description(primary_port: int | None, ports: tuple[int, ...] = (1, 2, 3)) -> TopologyDescription:
    """The driver's view of a set whose primary is h:`primary_port` (None: no primary)."""
    servers: dict[tuple[str, int | None], ServerDescription] = {}
    for port in ports:
        hello = {
            "ok": 1,
            "setName": "rs",
            "hosts": [f"h:{p}" for p in ports],
            "minWireVersion": 0,
            "maxWireVersion": 17,
        }
        hello |= {"isWritablePrimary": True} if port == primary_port else {"secondary": True}
        servers[("h", port)] = ServerDescription(("h", port), Hello(hello))
    kind = TOPOLOGY_TYPE.ReplicaSetWithPrimary if primary_port else TOPOLOGY_TYPE.ReplicaSetNoPrimary
    return TopologyDescription(kind, servers, "rs", None, None, TopologySettings())


async def test_an_operation_on_a_replaced_primary_is_abandoned() -> None:
    """The watch wakes a call sent to h:1 when h:2 becomes primary; a call that answers first is unaffected."""
    view = {"now": description(1)}
    watch = PrimaryWatch(lambda: view["now"], every=0.01)
    assert watch.primary == "h:1" and primary_of(description(1)) == "h:1"
    assert await on_primary(watch, "get_session", lambda: asyncio.sleep(0, "done")) == "done"
    hanging = asyncio.Event()

    async def stuck() -> str:
        await hanging.wait()
        return "late"

    call = asyncio.ensure_future(on_primary(watch, "get_session", stuck))
    await asyncio.sleep(0.05)
    view["now"] = description(None)  # an election under way: keep waiting
    await asyncio.sleep(0.05)
    assert not call.done()
    view["now"] = description(2)
    with pytest.raises(PrimaryReplaced, match="h:1 was replaced by h:2") as raised:
        await asyncio.wait_for(call, 5)
    assert raised.value.status == 503
    # With no watch, or no primary known when it starts, the call simply runs.
    assert await on_primary(None, "get_session", lambda: asyncio.sleep(0, "plain")) == "plain"
    view["now"] = description(None)
    assert await on_primary(watch, "get_session", lambda: asyncio.sleep(0.05, "no primary")) == "no primary"
