"""What the configured user may do on each collection, and what fails without each right."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient

from exporter.config import Config, PoolDefinition
from exporter.core import OperationFailed, guard
from exporter.doctor.findings import Finding, Verdict, error, ok, warn

_UNAUTHORIZED = 13


@dataclass(frozen=True)
class Grant:
    """One privilege: a resource (database and collection, '' for any) and its actions."""

    db: str | None
    collection: str | None
    actions: frozenset[str]
    any_resource: bool = False

    def covers(self, db: str, collection: str, action: str) -> bool:
        """Whether this grant allows `action` on `db`.`collection` (a '' name matches any non-system one)."""
        if action not in self.actions:
            return False
        if self.any_resource:
            return True
        if self.db is None or self.collection is None:
            return False  # cluster-wide or system_buckets resources
        system = collection.startswith("system.")
        return (self.db in ("", db)) and (self.collection == collection or (self.collection == "" and not system))


@dataclass(frozen=True)
class Rights:
    """The authenticated users and their privileges; `enforced` False: the server has no access control."""

    enforced: bool
    users: tuple[tuple[str, str], ...]
    grants: tuple[Grant, ...]

    @property
    def authenticated(self) -> bool:
        """Whether any user is logged in on this connection."""
        return bool(self.users)

    def allows(self, db: str, collection: str, action: str) -> bool:
        """Whether the connection may run `action` on `db`.`collection`."""
        return not self.enforced or any(g.covers(db, collection, action) for g in self.grants)

    def user(self) -> str:
        """The first user as `name@db` (what `grantRolesToUser` needs), or a placeholder."""
        return f"{self.users[0][0]}@{self.users[0][1]}" if self.users else "(no user)"


def parse_rights(status: Mapping[str, Any], *, enforced: bool = True) -> Rights:
    """Rights from a `connectionStatus` answer with `showPrivileges: true`."""
    info = status.get("authInfo") or {}
    users = tuple((str(u.get("user")), str(u.get("db"))) for u in info.get("authenticatedUsers") or ())
    grants = []
    for privilege in info.get("authenticatedUserPrivileges") or ():
        resource = privilege.get("resource") or {}
        actions = frozenset(str(a) for a in privilege.get("actions") or ())
        if resource.get("anyResource"):
            grants.append(Grant(None, None, actions, any_resource=True))
        elif "db" in resource and "collection" in resource:
            grants.append(Grant(str(resource["db"]), str(resource["collection"]), actions))
    return Rights(enforced, users, tuple(grants))


async def read_rights(client: AsyncMongoClient[dict[str, Any]], timeout: float) -> Rights:  # noqa: ASYNC109
    """The connection's rights; without a user, whether the server enforces access control at all."""
    async with guard("connectionStatus", timeout, client):
        status = await client.admin.command("connectionStatus", showPrivileges=True)
    rights = parse_rights(status)
    if rights.authenticated:
        return rights
    try:
        # Needs a user on a server with access control, and nothing without it.
        async with guard("listDatabases", timeout, client):
            await client.admin.command("listDatabases", nameOnly=True)
    except OperationFailed as exc:
        if exc.code == _UNAUTHORIZED:
            return rights
        raise
    return parse_rights(status, enforced=False)


@dataclass(frozen=True)
class Need:
    """One right the daemon needs on a collection, what fails without it and how bad that is."""

    action: str
    effect: str
    verdict: Verdict


def pool_needs(pool: PoolDefinition, *, admin_enabled: bool, indexes_present: bool | None) -> list[Need]:
    """The rights the daemon needs on a pool's collection, with their effect when missing."""
    needs = [
        Need("find", "the statistics fail: every refresh of this pool fails", Verdict.ERROR),
        Need(
            "collStats", "the total ($collStats, the collection's own count) fails: every refresh fails", Verdict.ERROR
        ),
    ]
    if pool.create_indexes:
        needs.append(
            Need(
                "listIndexes",
                "the index check of every refresh fails, so every refresh fails (or set create_indexes: false)",
                Verdict.ERROR,
            )
        )
        if indexes_present is None:
            needs.append(
                Need("createIndex", "missing indexes cannot be built (the doctor could not list them)", Verdict.WARN)
            )
        elif indexes_present:
            needs.append(
                Need(
                    "createIndex",
                    "the indexes exist now, but are not rebuilt when a worker of the "
                    "original library drops them (its connect() does)",
                    Verdict.WARN,
                )
            )
        else:
            needs.append(
                Need(
                    "createIndex",
                    "the missing indexes cannot be built: the statistics read every document",
                    Verdict.ERROR,
                )
            )
    if admin_enabled:
        needs.append(
            Need("update", "admin actions on this pool fail (unlock, deactivate, activate, lock, block)", Verdict.WARN)
        )
    return needs


AUDIT_NEEDS = (
    Need("insert", "no audit event can be recorded, so every admin write fails", Verdict.WARN),
    Need(
        "createIndex",
        "the audit indexes are created before the first admin write, so every admin write fails",
        Verdict.WARN,
    ),
    Need(
        "update",
        "repeated actions that change nothing fail, and on a standalone server every admin write",
        Verdict.WARN,
    ),
    Need("find", "the audit search (/admin/audit) and repeated actions that change nothing fail", Verdict.WARN),
)


def _grant_hint(rights: Rights, db: str, collection: str, actions: Sequence[str]) -> str:
    """A shell command granting what is missing: the built-in role that has it, or a privilege of a custom role."""
    user, user_db = rights.users[0] if rights.users else ("USER", "admin")
    role = "read" if set(actions) <= {"find", "listIndexes", "collStats"} else "readWrite"
    grant = json.dumps([{"role": role, "db": db}])
    exact = json.dumps({"resource": {"db": db, "collection": collection}, "actions": list(actions)})
    return (
        f'db.getSiblingDB("{user_db}").grantRolesToUser("{user}", {grant}), or a custom role with the privilege {exact}'
    )


def rights_findings(
    rights: Rights, db: str, collection: str, needs: Sequence[Need], *, check: str = "rights", label: str = ""
) -> list[Finding]:
    """One finding per missing right (what fails without it), or one saying every needed right is there."""
    where = f"{label}{db}.{collection}"
    if not rights.enforced:
        return [ok(check, "the server does not enforce access control: every right is granted")]
    missing = [n for n in needs if not rights.allows(db, collection, n.action)]
    if not missing:
        actions = ", ".join(n.action for n in needs)
        return [ok(check, f"{rights.user()} may {actions} on {where}")]
    out = []
    for need in missing:
        hint = _grant_hint(rights, db, collection, [need.action])
        text = f"{rights.user()} has no {need.action} on {where}: {need.effect}"
        out.append(error(check, text, hint) if need.verdict is Verdict.ERROR else warn(check, text, hint))
    return out


def not_authenticated() -> Finding:
    """The server enforces access control and the URI logs nobody in."""
    return error(
        "access",
        "the server enforces access control and mongodb.uri has no user: every read fails",
        "put a user in mongodb.uri (mongodb://USER:PASSWORD@host/?authSource=admin), "
        "or better in mongodb.uri_file or the environment",
    )


def access_finding(rights: Rights) -> Finding:
    """Who the connection is."""
    if not rights.enforced:
        return ok("access", "no access control on this server (no user needed)")
    roles = ", ".join(f"{u}@{d}" for u, d in rights.users)
    return ok("access", f"logged in as {roles}")


def audit_findings(rights: Rights, config: Config) -> list[Finding]:
    """The audit collection's rights, needed only with the admin API on."""
    audit = config.admin.audit
    return rights_findings(
        rights, audit.database, audit.collection, AUDIT_NEEDS, check="audit", label="the audit collection "
    )
