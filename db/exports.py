"""Uploaded exports (Apple Health): the connection that reads them, and which file it reads.

The file itself lives on disk (bot/web/apple_health.py writes it); the connection's settings
name it, so the sync run that imports it finds it, and a retried run finds the same one.
"""

from __future__ import annotations

import asyncpg

from db import connections, events
from db.sealing import Keyring


async def record(
    conn: asyncpg.Connection, keyring: Keyring, *, user_id: int, provider: str, name: str, size: int
) -> tuple[int, str | None]:
    """Create or re-activate the user's connection to ``provider`` reading the export ``name``
    (``size`` bytes) and publish ``connection.created``, in one transaction.  Returns the
    connection id and the name of the export it read before (None for a first upload)."""
    async with conn.transaction():
        previous: str | None = await conn.fetchval(
            "SELECT settings->>'export' FROM connections WHERE user_id = $1 AND provider = $2 FOR UPDATE",
            user_id,
            provider,
        )
        # No tokens: an export needs none, and the sealed empty object keeps the column's meaning.
        connection_id = await connections.upsert(
            conn, keyring, user_id=user_id, provider=provider, tokens={}, settings={"export": name, "bytes": size}
        )
        tenant_id: int = await conn.fetchval("SELECT tenant_id FROM users WHERE id = $1", user_id)
        data = {"connection_id": connection_id, "user_id": user_id, "provider": provider}
        await events.publish(conn, tenant_id, events.CONNECTION_CREATED, data)
    return connection_id, previous


async def named(conn: asyncpg.Connection, provider: str) -> set[str]:
    """The exports that connections to ``provider`` still read: every one but a revoked one's."""
    rows = await conn.fetch(
        "SELECT settings->>'export' AS name FROM connections"
        " WHERE provider = $1 AND status <> 'revoked' AND settings ? 'export'",
        provider,
    )
    return {r["name"] for r in rows}
