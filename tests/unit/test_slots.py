"""The refreshes' slots: at most so many at once, served by priority then arrival, nothing lost to a cancellation."""

from __future__ import annotations

import asyncio

import pytest

from exporter.collector.slots import Priority, Slots


async def test_waiters_are_served_by_priority_then_in_arrival_order() -> None:
    slots = Slots(1)
    await slots.acquire()
    served: list[str] = []

    async def take(name: str, priority: Priority) -> None:
        async with slots.hold(priority):
            served.append(name)

    tasks = [
        asyncio.create_task(take(name, priority))
        for name, priority in [
            ("sums", Priority.SUMS),
            ("refresh a", Priority.REFRESH),
            ("first", Priority.FIRST_REFRESH),
            ("refresh b", Priority.REFRESH),
        ]
    ]
    await asyncio.sleep(0)
    assert slots.waiting == 4 and served == []
    slots.release()
    await asyncio.gather(*tasks)
    assert served == ["first", "refresh a", "refresh b", "sums"]
    assert slots.waiting == 0


async def test_never_more_holders_than_slots() -> None:
    slots = Slots(3)
    inside = most = 0

    async def work() -> None:
        nonlocal inside, most
        async with slots.hold():
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.001)
            inside -= 1

    await asyncio.gather(*(work() for _ in range(50)))
    assert most == 3
    # Every slot came back: three more holders get in at once.
    for _ in range(3):
        await asyncio.wait_for(slots.acquire(), 1)


async def test_a_cancelled_waiter_loses_nothing() -> None:
    """A waiter cancelled in the queue is skipped; one cancelled just as it was handed the slot passes it on."""
    slots = Slots(1)
    await slots.acquire()
    queued = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    handed = asyncio.create_task(slots.acquire())
    after = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    slots.release()  # handed to `handed`, which is cancelled before it runs
    handed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handed
    await asyncio.wait_for(after, 1)  # the slot went on to the next waiter
    assert slots.waiting == 0
