"""A mongod with access control, and users with exactly the roles a test gives them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import MongoClient

from exporter.mongod import Mongod

ROOT_PASSWORD = "root-pw-7c1e9a"


@dataclass
class AuthServer:
    """A private `--auth` mongod (standalone) with a root user."""

    server: Mongod

    def uri(self, user: str, password: str) -> str:
        """A connection string logging in as `user` (users live in the admin database)."""
        return f"mongodb://{user}:{password}@127.0.0.1:{self.server.port}/?authSource=admin&directConnection=true"

    @property
    def root_uri(self) -> str:
        """The root user's connection string."""
        return self.uri("root", ROOT_PASSWORD)

    def root(self) -> MongoClient[dict[str, Any]]:
        """A client logged in as root (close it)."""
        return MongoClient(self.root_uri, tz_aware=True)

    def add_user(self, name: str, password: str, roles: Sequence[dict[str, str] | str]) -> str:
        """Create a user with `roles` and return its connection string."""
        with self.root() as root:
            root.admin.command("createUser", name, pwd=password, roles=list(roles))
        return self.uri(name, password)


def auth_server(mongod_factory: Callable[..., Mongod]) -> AuthServer:
    """Start a standalone mongod with `--auth` and create root through the localhost exception."""
    server = mongod_factory(replica_set=None, extra_args=["--auth"])
    bootstrap: MongoClient[dict[str, Any]] = MongoClient(server.uri)
    with bootstrap:
        bootstrap.admin.command("createUser", "root", pwd=ROOT_PASSWORD, roles=["root"])
    return AuthServer(server)
