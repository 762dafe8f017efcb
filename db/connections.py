"""Wearable connections and their sealed tokens."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from db.sealing import Keyring

TABLE, TOKENS = "connections", "tokens_sealed"


@dataclass(frozen=True, slots=True)
class Connection:
    id: int
    user_id: int
    tenant_id: int
    provider: str
    status: str
    settings: dict[str, Any]
    last_synced_at: datetime | None
    tokens_sealed: str | None = field(repr=False)

    def tokens(self, keyring: Keyring) -> dict[str, Any]:
        """The unsealed token object; {} when the connection holds none."""
        if self.tokens_sealed is None:
            return {}
        opened: dict[str, Any] = keyring.open_json(self.tokens_sealed, table=TABLE, column=TOKENS, row_id=self.id)
        return opened


# A connection's row as ``Connection`` reads it; ``sync_runs.claim`` reads it in its claim.
SELECT = (
    "SELECT c.id, c.user_id, u.tenant_id, c.provider, c.status, c.settings, c.last_synced_at, c.tokens_sealed"
    " FROM connections c JOIN users u ON u.id = c.user_id"
)


async def load(conn: asyncpg.Connection, connection_id: int, *, for_update: bool = False) -> Connection | None:
    row = await conn.fetchrow(SELECT + " WHERE c.id = $1" + (" FOR UPDATE OF c" if for_update else ""), connection_id)
    return Connection(**dict(row)) if row else None


async def upsert(
    conn: asyncpg.Connection,
    keyring: Keyring,
    *,
    user_id: int,
    provider: str,
    tokens: dict[str, Any],
    settings: dict[str, Any] | None = None,
) -> int:
    """Create or re-activate the user's connection to ``provider``; the tokens are sealed to its row."""
    async with conn.transaction():
        connection_id: int = await conn.fetchval(
            "INSERT INTO connections (user_id, provider, settings) VALUES ($1, $2, $3)"
            " ON CONFLICT (user_id, provider) DO UPDATE"
            " SET status = 'active', status_reason = NULL, settings = excluded.settings, updated_at = now()"
            " RETURNING id",
            user_id,
            provider,
            settings or {},
        )
        await save_tokens(conn, keyring, connection_id, tokens)
    return connection_id


async def save_tokens(conn: asyncpg.Connection, keyring: Keyring, connection_id: int, tokens: dict[str, Any]) -> None:
    sealed = keyring.seal_json(tokens, table=TABLE, column=TOKENS, row_id=connection_id)
    await conn.execute(
        "UPDATE connections SET tokens_sealed = $2, updated_at = now() WHERE id = $1", connection_id, sealed
    )


async def set_status(conn: asyncpg.Connection, connection_id: int, status: str, reason: str | None) -> None:
    await conn.execute(
        "UPDATE connections SET status = $2, status_reason = $3, updated_at = now() WHERE id = $1",
        connection_id,
        status,
        reason,
    )


async def active_ids(conn: asyncpg.Connection) -> list[int]:
    return [r["id"] for r in await conn.fetch("SELECT id FROM connections WHERE status = 'active' ORDER BY id")]
