"""A real 3-member replica set from the same mongod binary: start, find the primary, step it down, kill it."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from pymongo import MongoClient
from pymongo.errors import AutoReconnect, OperationFailure, PyMongoError

from exporter.mongod import Mongod, find_mongod

# Fast failover: a member calls an election after 1 s without a primary's heartbeat (10 s by default).
ELECTION_TIMEOUT_MS = 1000
HEARTBEAT_MS = 500


def _hello(member: Mongod) -> dict[str, Any] | None:
    """One member's `hello`, or None when it does not answer within half a second."""
    if member.process is None or member.process.poll() is not None:
        return None
    client: MongoClient[dict[str, Any]] = MongoClient(
        member.uri, serverSelectionTimeoutMS=500, connectTimeoutMS=500, socketTimeoutMS=500
    )
    try:
        hello: dict[str, Any] = client.admin.command("hello")
        return hello
    except PyMongoError:
        return None
    finally:
        client.close()


@dataclass
class ReplicaSet:
    """`size` mongod processes on 127.0.0.1 (own port and dbpath, one set name); member 0 is preferred at first."""

    size: int = 3
    name: str = "rs-failover"
    members: list[Mongod] = field(default_factory=list)

    @property
    def uri(self) -> str:
        """The set's connection string for clients that follow elections (driver heartbeats every 500 ms)."""
        hosts = ",".join(f"127.0.0.1:{m.port}" for m in self.members)
        return f"mongodb://{hosts}/?replicaSet={self.name}&heartbeatFrequencyMS={HEARTBEAT_MS}"

    def start(self, timeout: float = 60.0) -> ReplicaSet:
        """Start every member, initiate the set and wait for member 0 to be primary and the others secondaries."""
        binary = find_mongod()
        for _ in range(self.size):
            self.members.append(Mongod(replica_set=self.name, initiate=False, binary=binary).start(timeout))
        config = {
            "_id": self.name,
            "members": [
                # The higher priority makes the first election predictable (member 0).
                {"_id": i, "host": f"127.0.0.1:{m.port}", "priority": 2 if i == 0 else 1}
                for i, m in enumerate(self.members)
            ],
            "settings": {"electionTimeoutMillis": ELECTION_TIMEOUT_MS, "heartbeatIntervalMillis": HEARTBEAT_MS},
        }
        first: MongoClient[dict[str, Any]] = MongoClient(self.members[0].uri, serverSelectionTimeoutMS=5000)
        try:
            first.admin.command("replSetInitiate", config)
        finally:
            first.close()
        deadline = time.monotonic() + timeout
        while True:
            states = [_hello(m) or {} for m in self.members]
            if states[0].get("isWritablePrimary") and all(s.get("secondary") for s in states[1:]):
                return self
            if time.monotonic() > deadline:
                raise TimeoutError(f"replica set not up after {timeout:g} s: {states}")
            time.sleep(0.1)

    def primary(self) -> Mongod | None:
        """The member that says it is the writable primary now, or None."""
        for member in self.members:
            hello = _hello(member)
            if hello and hello.get("isWritablePrimary"):
                return member
        return None

    def wait_primary(self, *, other_than: Mongod | None = None, timeout: float = 30.0) -> Mongod:
        """Wait until a member (not `other_than`) is the writable primary; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            member = self.primary()
            if member is not None and member is not other_than:
                return member
            time.sleep(0.05)
        raise TimeoutError(f"no new primary within {timeout:g} s")

    def step_down(self, member: Mongod, seconds: int = 60) -> None:
        """`replSetStepDown` on `member`: it may not be primary again for `seconds` (an election follows)."""
        client: MongoClient[dict[str, Any]] = MongoClient(member.uri, serverSelectionTimeoutMS=5000)
        try:
            client.admin.command("replSetStepDown", seconds, secondaryCatchUpPeriodSecs=5)
        except AutoReconnect:
            pass  # servers before 4.2 closed every connection on step-down
        except OperationFailure as exc:
            if exc.code != 189:  # PrimarySteppedDown: already what we asked
                raise
        finally:
            client.close()

    def cleanup(self) -> None:
        """Kill every member and remove their data directories."""
        for member in self.members:
            with contextlib.suppress(Exception):
                # Throwaway data: a clean shutdown would wait up to 10 s for secondaries to catch up.
                member.kill()
                member.cleanup()
        self.members.clear()
