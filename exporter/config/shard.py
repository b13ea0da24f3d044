"""Which pools this daemon watches when several share them: the `shard` section and its stable rule."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Annotated

from pydantic import Field

from exporter.config.rules import Problem, Section, rule


def owners(pool: str, count: int, replicas: int) -> tuple[int, ...]:
    """The `replicas` daemons (indexes below `count`) that watch `pool`, by rendezvous hashing.

    Each daemon index gets a score from a hash of (index, pool name); the pool goes to the highest
    scores. Going from N to N+1 daemons moves a pool only when the new index beats one of its
    owners: about replicas/(N+1) of the pools, the fewest any rule can move. Every daemon computes
    the same answer from the name alone, with nothing shared but the configuration.
    """
    scores = sorted(range(count), key=lambda index: _score(pool, index), reverse=True)
    return tuple(sorted(scores[:replicas]))


def _score(pool: str, index: int) -> int:
    digest = hashlib.blake2b(f"{index}\x00{pool}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class ShardConfig(Section):
    """Several daemons sharing the pools: each watches the pools the rule gives its `index`."""

    count: Annotated[int, Field(ge=1, le=1000)] = 1
    """How many daemons share the pools (the chart's StatefulSet sets it to its replica count)."""
    index: Annotated[int, Field(ge=0, le=999)] = 0
    """This daemon's number, from 0 to `count` - 1 (the chart's StatefulSet sets it from the pod's ordinal)."""
    replicas: Annotated[int, Field(ge=1, le=1000)] = 1
    """How many daemons watch each pool: 2 keeps every pool watched while one daemon restarts."""

    @rule("index", "count")
    @staticmethod
    def _index_below_count(index: int, count: int) -> Iterator[Problem]:
        """`index` is below `count` (daemons are numbered from 0)."""
        if index >= count:
            yield "index", f"is {index}, but the daemons are numbered 0 to {count - 1} (count: {count})"

    @rule("replicas", "count")
    @staticmethod
    def _replicas_at_most_count(replicas: int, count: int) -> Iterator[Problem]:
        """`replicas` is at most `count` (a pool cannot be watched by more daemons than there are)."""
        if replicas > count:
            yield "replicas", f"is {replicas}, but only {count} daemons share the pools (count: {count})"

    def owners(self, pool: str) -> tuple[int, ...]:
        """The indexes of the daemons that watch `pool` (all of them when `replicas` equals `count`)."""
        return owners(pool, self.count, self.replicas)

    def watches(self, pool: str) -> bool:
        """Whether this daemon watches `pool`."""
        return self.index in self.owners(pool)
