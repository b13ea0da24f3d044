"""The shard rule: every pool watched by exactly `replicas` daemons, and few pools move when daemons are added."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from exporter.config import ShardConfig, owners

POOLS = [f"pool_{n:04d}" for n in range(3000)]


@pytest.mark.parametrize(("count", "replicas"), [(1, 1), (3, 1), (3, 2), (4, 2), (7, 3)])
def test_every_pool_is_watched_by_exactly_replicas_daemons(count: int, replicas: int) -> None:
    watched = Counter(
        pool
        for index in range(count)
        for pool in POOLS
        if ShardConfig(count=count, index=index, replicas=replicas).watches(pool)
    )
    assert set(watched) == set(POOLS)
    assert set(watched.values()) == {replicas}


@pytest.mark.parametrize("replicas", [1, 2])
def test_the_pools_spread_evenly(replicas: int) -> None:
    load = Counter(index for pool in POOLS for index in owners(pool, 4, replicas))
    share = len(POOLS) * replicas / 4
    assert all(abs(n - share) < 0.1 * share for n in load.values()), load


@pytest.mark.parametrize("replicas", [1, 2])
def test_adding_a_daemon_moves_only_what_the_new_one_takes(replicas: int) -> None:
    """From 3 to 4 daemons a pool either keeps its owners or swaps one of them for daemon 3; about
    replicas/4 of the pools move (a modulo rule would move about 3/4)."""
    moved = 0
    for pool in POOLS:
        before, after = set(owners(pool, 3, replicas)), set(owners(pool, 4, replicas))
        if before != after:
            moved += 1
            assert after - before == {3}
            assert len(before - after) == 1
    expected = len(POOLS) * replicas / 4
    assert abs(moved - expected) < 0.15 * expected, moved


def test_the_rule_is_the_same_in_every_process() -> None:
    """The owners come from the name alone (no per-process hash seed): fixed names, fixed owners."""
    assert owners("telegram", 4, 1) == owners("telegram", 4, 1)
    assert len({owners(pool, 5, 1) for pool in POOLS[:50]}) > 1
    code = "from exporter.config import owners; print([owners(f'p{n}', 5, 2) for n in range(20)])"
    runs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    }
    assert len(runs) == 1
    assert runs.pop().strip() == str([owners(f"p{n}", 5, 2) for n in range(20)])


def test_one_daemon_watches_everything() -> None:
    shard = ShardConfig()
    assert shard.owners("any") == (0,)
    assert all(shard.watches(pool) for pool in POOLS)
