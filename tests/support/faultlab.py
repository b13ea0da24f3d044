"""A fault lab: a real 3-member replica set whose members can be cut off, paused, killed and run on a skewed clock.

Each member runs as an OS user of its own (created here, removed afterwards), so iptables' `owner`
match tells its loopback traffic from the others' and from the clients' (everything else this test
runs as root). Partitions are DROP rules in a chain of our own, jumped to from OUTPUT for loopback
only: removing the chain removes every rule. A skewed clock is libfaketime (Debian's `faketime`)
preloaded into that member. `cleanup()` undoes everything (processes, rules, users, directories)
and is safe to call twice; use the lab as a context manager so it always runs.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from pymongo import MongoClient
from pymongo.errors import AutoReconnect, OperationFailure, PyMongoError

from exporter.mongod import find_mongod, free_port
from tests.support.tools import missing_tool, require_binary

# Debian's faketime package; the multi-threaded variant, since mongod is multi-threaded.
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"
# Elections as the docs recommend for the leases (docs/replica-set.md): a member calls one after
# this long without hearing from a primary (MongoDB's default is 10 s).
ELECTION_TIMEOUT_MS = 2000
HEARTBEAT_MS = 500
# A member counts another as down after this long without a heartbeat answer (MongoDB's default: 10 s);
# a secondary then leaves a sync source it cannot reach, so the new primary's majority writes go on.
HEARTBEAT_TIMEOUT_S = int(os.environ.get("FAULTS_HEARTBEAT_TIMEOUT_S", "2"))
CLIENT_HEARTBEAT_MS = 500
# A secondary gives up on an unreachable sync source after the oplog fetcher's wait plus this buffer
# (5 s by default); the new primary's majority writes wait for that. FAULTS_SERVER_PARAMETERS="" for none.
SERVER_PARAMETERS = [
    p for p in os.environ.get("FAULTS_SERVER_PARAMETERS", "oplogNetworkTimeoutBufferSeconds=1").split(",") if p
]
# A member counts another as down after this long without a heartbeat answer (MongoDB's default: 10 s);
# a secondary then leaves a sync source it cannot reach, so the new primary's majority writes go on.
HEARTBEAT_TIMEOUT_S = int(os.environ.get("FAULTS_HEARTBEAT_TIMEOUT_S", "2"))


def lab_tools() -> tuple[str, str, str]:
    """iptables, useradd and userdel: the lab needs root and these (CI runs as root)."""
    if os.geteuid() != 0:
        raise PermissionError("the fault lab needs root (iptables rules, users of its own)")
    return (require_binary("iptables", "Debian package iptables"), require_binary("useradd", "Debian package passwd"),
            require_binary("userdel", "Debian package passwd"))  # fmt: skip


def faketime_library() -> str:
    """libfaketime's path (`apt-get install faketime`); a failure under CI=true, a skip elsewhere."""
    if not os.path.exists(LIBFAKETIME):
        missing_tool(f"{LIBFAKETIME} (Debian package faketime)")
    return LIBFAKETIME


def _run(args: Sequence[str]) -> None:
    subprocess.run(list(args), check=True, capture_output=True, text=True)


@dataclass
class Member:
    """One mongod of the lab: its OS user, port, data directory, process and clock offset."""

    index: int
    user: str
    uid: int
    gid: int
    port: int
    dbpath: Path
    faketime: str | None = None  # e.g. "+90s": the member's clock runs that far ahead
    process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """host:port, as the replica set's configuration and the driver name it."""
        return f"127.0.0.1:{self.port}"

    @property
    def uri(self) -> str:
        """A direct connection to this member only."""
        return f"mongodb://{self.host}/?directConnection=true"

    @property
    def alive(self) -> bool:
        """True while the process runs (paused counts as running)."""
        return self.process is not None and self.process.poll() is None


def hello(member: Member, timeout: float = 0.5) -> dict[str, Any] | None:
    """One member's `hello`, or None when it does not answer within `timeout`."""
    if not member.alive:
        return None
    ms = int(timeout * 1000)
    client: MongoClient[dict[str, Any]] = MongoClient(
        member.uri, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, socketTimeoutMS=ms
    )
    try:
        answer: dict[str, Any] = client.admin.command("hello")
        return answer
    except PyMongoError:
        return None
    finally:
        client.close()


@dataclass
class FaultLab:
    """Three members on 127.0.0.1, member 0 preferred at first; faults on demand, all undone by `cleanup()`."""

    skews: dict[int, str] = field(default_factory=dict)  # member index -> FAKETIME offset, e.g. {2: "+90s"}
    size: int = 3
    name: str = "rs-lab"
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    members: list[Member] = field(default_factory=list)
    chain: str = ""
    _dirs: list[Path] = field(default_factory=list)
    _users: list[str] = field(default_factory=list)
    _jumped: bool = False
    paused: set[int] = field(default_factory=set)

    # -- set-up and tear-down --

    def __enter__(self) -> FaultLab:
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()

    @property
    def uri(self) -> str:
        """The set's connection string for clients that follow elections."""
        hosts = ",".join(m.host for m in self.members)
        return f"mongodb://{hosts}/?replicaSet={self.name}&heartbeatFrequencyMS={CLIENT_HEARTBEAT_MS}"

    def start(self, timeout: float = 60.0) -> FaultLab:
        """Users, directories, the chain, the processes; then initiate the set and wait for member 0 primary."""
        iptables, useradd, _ = lab_tools()
        if self.skews:
            faketime_library()
        binary = find_mongod()
        self.chain = f"SPE-LAB-{self.token}"
        _run([iptables, "-N", self.chain])
        _run([iptables, "-I", "OUTPUT", "-o", "lo", "-j", self.chain])
        self._jumped = True
        for index in range(self.size):
            user = f"spelab-{self.token}-{index}"
            _run([useradd, "--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", user])
            self._users.append(user)
            entry = pwd.getpwnam(user)
            dbpath = Path(tempfile.mkdtemp(prefix=f"spe-lab-{index}-"))
            self._dirs.append(dbpath)
            os.chown(dbpath, entry.pw_uid, entry.pw_gid)
            member = Member(index, user, entry.pw_uid, entry.pw_gid, free_port(), dbpath, self.skews.get(index))
            self.members.append(member)
            self._launch(member, binary)
        for member in self.members:
            self._wait_answering(member, timeout)
        config = {
            "_id": self.name,
            "members": [{"_id": m.index, "host": m.host, "priority": 2 if m.index == 0 else 1} for m in self.members],
            "settings": {
                "electionTimeoutMillis": ELECTION_TIMEOUT_MS,
                "heartbeatIntervalMillis": HEARTBEAT_MS,
                "heartbeatTimeoutSecs": HEARTBEAT_TIMEOUT_S,
            },
        }
        with self._client(self.members[0]) as client:
            client.admin.command("replSetInitiate", config)
        deadline = time.monotonic() + timeout
        while True:
            states = [hello(m) or {} for m in self.members]
            if states[0].get("isWritablePrimary") and all(s.get("secondary") for s in states[1:]):
                return self
            if time.monotonic() > deadline:
                raise TimeoutError(f"replica set not up after {timeout:g} s: {states}")
            time.sleep(0.1)

    def _launch(self, member: Member, binary: str | None = None) -> None:
        """Start the member's mongod as its own user (with its clock skew, if any)."""
        args = [
            binary or find_mongod(),
            "--dbpath", str(member.dbpath),
            "--port", str(member.port),
            "--bind_ip", "127.0.0.1",
            # No /tmp/mongodb-PORT.sock: killed with SIGKILL it would stay, owned by a user removed since,
            # and a later member on that port (another user) could neither remove nor reuse it.
            "--nounixsocket",
            "--replSet", self.name,
            "--quiet",
            "--logpath", str(member.dbpath / "mongod.log"),
            "--wiredTigerCacheSizeGB", "0.25",
            "--setParameter", "enableTestCommands=1",
            *(f"--setParameter={p}" for p in SERVER_PARAMETERS),
        ]  # fmt: skip
        env = {"PATH": "/usr/bin:/bin", "HOME": str(member.dbpath), "TZ": "UTC"}
        if member.faketime:
            # Wall-clock calls run ahead; timers and timeouts (the monotonic clock) are left alone.
            env |= {"LD_PRELOAD": faketime_library(), "FAKETIME": member.faketime, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
        member.process = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            user=member.uid,
            group=member.gid,
            extra_groups=[],
            env=env,
            cwd=member.dbpath,
        )

    def _wait_answering(self, member: Member, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while hello(member) is None:
            if member.process is not None and member.process.poll() is not None:
                log = member.dbpath / "mongod.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"member {member.index} exited with {member.process.returncode}: {tail}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"member {member.index} not answering after {timeout:g} s")
            time.sleep(0.1)

    def cleanup(self) -> None:
        """Undo everything, whatever state it is in: resume and kill the members, remove rules, users, directories."""
        iptables, _, userdel = (shutil.which(n) or n for n in ("iptables", "useradd", "userdel"))
        for member in self.members:
            if member.alive and member.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(member.process.pid, signal.SIGCONT)
                    member.process.send_signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    member.process.wait(timeout=30)
        if self._jumped:
            subprocess.run([iptables, "-D", "OUTPUT", "-o", "lo", "-j", self.chain], check=False, capture_output=True)
            self._jumped = False
        if self.chain:
            subprocess.run([iptables, "-F", self.chain], check=False, capture_output=True)
            subprocess.run([iptables, "-X", self.chain], check=False, capture_output=True)
            self.chain = ""
        for user in self._users:
            subprocess.run([userdel, user], check=False, capture_output=True)
        self._users.clear()
        for path in self._dirs:
            shutil.rmtree(path, ignore_errors=True)
        self._dirs.clear()
        self.paused.clear()

    # -- looking --

    @contextlib.contextmanager
    def _client(self, member: Member, timeout: float = 5.0) -> Iterator[MongoClient[dict[str, Any]]]:
        ms = int(timeout * 1000)
        client: MongoClient[dict[str, Any]] = MongoClient(
            member.uri, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, socketTimeoutMS=ms
        )
        try:
            yield client
        finally:
            client.close()

    def primary(self, *, among: Sequence[Member] | None = None) -> Member | None:
        """A member that says it is the writable primary now (the one with the newest term if several do)."""
        found: list[tuple[bytes, Member]] = []
        for member in among if among is not None else self.members:
            if member.index in self.paused:
                continue
            answer = hello(member)
            if answer and answer.get("isWritablePrimary"):
                # The election id ends with the term, big-endian: the newest primary has the largest.
                election = answer.get("electionId")
                found.append((election.binary if election is not None else b"", member))
        return max(found, key=lambda item: item[0])[1] if found else None

    def wait_primary(self, *, other_than: Member | None = None, timeout: float = 60.0) -> Member:
        """Wait until a member other than `other_than` is the writable primary; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            others = [m for m in self.members if m is not other_than]
            member = self.primary(among=others)
            if member is not None:
                return member
            time.sleep(0.05)
        raise TimeoutError(f"no new primary within {timeout:g} s")

    def member_states(self) -> dict[int, str]:
        """Each member's own view: PRIMARY, SECONDARY, other, or down (no answer)."""
        out: dict[int, str] = {}
        for member in self.members:
            answer = None if member.index in self.paused else hello(member)
            if answer is None:
                out[member.index] = "down"
            elif answer.get("isWritablePrimary"):
                out[member.index] = "PRIMARY"
            elif answer.get("secondary"):
                out[member.index] = "SECONDARY"
            else:
                out[member.index] = "other"
        return out

    def count_in_logs(self, text: str) -> int:
        """Lines of the members' logs containing `text` (a rollback's end, say)."""
        count = 0
        for member in self.members:
            log = member.dbpath / "mongod.log"
            if log.exists():
                count += sum(text in line for line in log.read_text(errors="replace").splitlines())
        return count

    # -- faults --

    def _drop(self, source: Member | None, target: Member) -> None:
        """Drop what `source` (None: the clients, i.e. root) sends to `target`'s port."""
        iptables = shutil.which("iptables") or "iptables"
        uid = 0 if source is None else source.uid
        _run([iptables, "-A", self.chain, "-p", "tcp", "--dport", str(target.port),
              "-m", "owner", "--uid-owner", str(uid), "-j", "DROP"])  # fmt: skip

    def cut(self, a: Member, b: Member) -> None:
        """Members `a` and `b` can no longer reach each other (both directions)."""
        self._drop(a, b)
        self._drop(b, a)

    def isolate(self, member: Member, *, from_clients: bool = False) -> None:
        """Cut `member` from every other member; with `from_clients`, from every client too."""
        for other in self.members:
            if other is not member:
                self.cut(member, other)
        if from_clients:
            self._drop(None, member)

    def bridge(self, middle: Member) -> None:
        """A bridge partition: the two others cannot reach each other, `middle` reaches both."""
        a, b = [m for m in self.members if m is not middle]
        self.cut(a, b)

    def heal(self) -> None:
        """Remove every partition rule (the chain stays, empty)."""
        iptables = shutil.which("iptables") or "iptables"
        _run([iptables, "-F", self.chain])

    def rules(self) -> list[str]:
        """The chain's rules right now (for the test's own record)."""
        iptables = shutil.which("iptables") or "iptables"
        out = subprocess.run([iptables, "-S", self.chain], check=True, capture_output=True, text=True).stdout
        return [line for line in out.splitlines() if line.startswith("-A")]

    def pause(self, member: Member) -> None:
        """SIGSTOP the member (it keeps its sockets; nobody gets an answer)."""
        assert member.process is not None
        os.kill(member.process.pid, signal.SIGSTOP)
        self.paused.add(member.index)

    def resume(self, member: Member) -> None:
        """SIGCONT a paused member."""
        assert member.process is not None
        os.kill(member.process.pid, signal.SIGCONT)
        self.paused.discard(member.index)

    def kill(self, member: Member) -> None:
        """SIGKILL the member (by the pid this lab started) and wait for it."""
        if member.process is not None and member.process.poll() is None:
            member.process.send_signal(signal.SIGKILL)
            member.process.wait(timeout=30)

    def restart(self, member: Member, timeout: float = 60.0) -> None:
        """Start a killed member again on its data directory."""
        self._launch(member)
        self._wait_answering(member, timeout)

    def step_down(self, member: Member, seconds: int = 60) -> None:
        """`replSetStepDown` on `member` (no catch-up wait beyond 5 s)."""
        with self._client(member, timeout=15) as client:
            try:
                client.admin.command("replSetStepDown", seconds, secondaryCatchUpPeriodSecs=5)
            except AutoReconnect:
                pass
            except OperationFailure as exc:
                if exc.code != 189:  # PrimarySteppedDown: already done
                    raise

    def freeze(self, member: Member, seconds: int) -> None:
        """`replSetFreeze`: the member will not seek election for `seconds` (0 unfreezes)."""
        with self._client(member) as client:
            client.admin.command("replSetFreeze", seconds)

    def step_up(self, member: Member) -> None:
        """`replSetStepUp`: the member calls an election now."""
        with self._client(member, timeout=15) as client:
            client.admin.command("replSetStepUp")

    def set_priority(self, member: Member, priority: float) -> None:
        """Reconfigure the set with `member` at `priority` (through the primary)."""
        primary = self.primary()
        assert primary is not None, "no primary to reconfigure through"
        with self._client(primary, timeout=15) as client:
            config = client.admin.command("replSetGetConfig")["config"]
            for entry in config["members"]:
                if entry["host"] == member.host:
                    entry["priority"] = priority
            config["version"] += 1
            client.admin.command("replSetReconfig", config)
