"""Users (patients) of a tenant: read, create, change, list by page, and erase everything of one.

Every function takes the tenant id and filters by it, so a caller cannot reach another
tenant's user by id: it gets None, as for an id that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

_COLUMNS = "id, tenant_id, external_id, display_name, timezone, created_at"


@dataclass(frozen=True, slots=True)
class User:
    id: int
    tenant_id: int
    external_id: str
    display_name: str
    timezone: str
    created_at: datetime


class DuplicateExternalId(Exception):
    """The tenant already has a user with this external id."""


async def get(conn: asyncpg.Connection, tenant_id: int, user_id: int) -> User | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE id = $1 AND tenant_id = $2", user_id, tenant_id)
    return User(**dict(row)) if row else None


async def create(conn: asyncpg.Connection, tenant_id: int, external_id: str, display_name: str, timezone: str) -> User:
    """Raises DuplicateExternalId."""
    try:
        row = await conn.fetchrow(
            "INSERT INTO users (tenant_id, external_id, display_name, timezone) VALUES ($1, $2, $3, $4)"
            f" RETURNING {_COLUMNS}",
            tenant_id,
            external_id,
            display_name,
            timezone,
        )
    except asyncpg.UniqueViolationError:
        raise DuplicateExternalId(external_id) from None
    return User(**dict(row))


async def update(
    conn: asyncpg.Connection,
    tenant_id: int,
    user_id: int,
    *,
    external_id: str | None = None,
    display_name: str | None = None,
    timezone: str | None = None,
) -> User | None:
    """Change the given fields (None leaves one as it is).  Raises DuplicateExternalId."""
    try:
        row = await conn.fetchrow(
            "UPDATE users SET external_id = coalesce($3, external_id), display_name = coalesce($4, display_name),"
            f" timezone = coalesce($5, timezone) WHERE id = $1 AND tenant_id = $2 RETURNING {_COLUMNS}",
            user_id,
            tenant_id,
            external_id,
            display_name,
            timezone,
        )
    except asyncpg.UniqueViolationError:
        raise DuplicateExternalId(external_id or "") from None
    return User(**dict(row)) if row else None


async def page(conn: asyncpg.Connection, tenant_id: int, after_id: int, limit: int) -> list[User]:
    """Up to ``limit`` users with ids above ``after_id``, in id order."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM users WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        tenant_id,
        after_id,
        limit,
    )
    return [User(**dict(r)) for r in rows]


async def erase(conn: asyncpg.Connection, tenant_id: int, user_id: int, actor: str) -> bool:
    """Delete the user and everything about them, in one transaction; False when there is no
    such user in the tenant.

    Every table that holds a user's data goes with the ``users`` row: readings, daily stats and the
    cooldowns' claims by triggers on it (tables written on every load or send have no foreign keys,
    see migrations 0017, 0020 and 0021), the others by ON DELETE CASCADE (sessions, scores,
    correlations, CGM summaries, alerts and their delivery log, connections and their sync runs,
    reports, rules and silences about the patient, OAuth states), so deleting the row removes them.
    Two tables mention users inside JSON, without a foreign key: the integrator event outbox and
    the audit log; rows there that name the user go too, dispatched or not (an event is a pointer
    to data that no longer exists).  One audit row records the erasure itself, with the bare id
    and no personal data: the accountability GDPR asks for.
    """
    key = str(user_id)
    async with conn.transaction():
        found = await conn.fetchval(
            "SELECT id FROM users WHERE id = $1 AND tenant_id = $2 FOR UPDATE", user_id, tenant_id
        )
        if found is None:
            return False
        await conn.execute(
            "DELETE FROM events WHERE tenant_id = $1 AND (payload -> 'data' ->> 'user_id' = $2"
            " OR payload -> 'data' ->> 'alert_id' IN (SELECT id::text FROM alerts WHERE user_id = $3))",
            tenant_id,
            key,
            user_id,
        )
        await conn.execute(
            "DELETE FROM audit_events WHERE tenant_id = $1"
            " AND (details ->> 'user_id' = $2 OR details ->> 'patient_id' = $2"
            "      OR (subject_type = 'user' AND subject_id = $3)"
            "      OR (subject_type = 'alert' AND subject_id IN (SELECT id FROM alerts WHERE user_id = $3)))",
            tenant_id,
            key,
            user_id,
        )
        await conn.execute("DELETE FROM users WHERE id = $1", user_id)
        await conn.execute(
            "INSERT INTO audit_events (tenant_id, actor, action, subject_type, subject_id)"
            " VALUES ($1, $2, 'user_erased', 'user', $3)",
            tenant_id,
            actor,
            user_id,
        )
    return True
