"""Notification channels: where alerts go, each with its config sealed to its own row (db/reseal.py
lists the column), and what routing and the API (bot/api/channels.py) read and change of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from db import audit
from db.sealing import Keyring

TABLE, CONFIG = "notification_channels", "config_sealed"


@dataclass(frozen=True, slots=True)
class ChannelRow:
    id: int
    tenant_id: int
    kind: str
    label: str
    config_sealed: str = field(repr=False)
    enabled: bool = True
    disabled_reason: str | None = None

    def config(self, keyring: Keyring) -> dict[str, Any]:
        opened: dict[str, Any] = keyring.open_json(self.config_sealed, table=TABLE, column=CONFIG, row_id=self.id)
        return opened


async def create_channel(
    conn: asyncpg.Connection,
    keyring: Keyring,
    *,
    tenant_id: int,
    kind: str,
    label: str,
    config: dict[str, Any],
) -> int:
    # The id comes first because the sealed config is bound to it.
    channel_id: int = await conn.fetchval("SELECT nextval(pg_get_serial_sequence('notification_channels', 'id'))")
    await conn.execute(
        "INSERT INTO notification_channels (id, tenant_id, kind, label, config_sealed) VALUES ($1, $2, $3, $4, $5)",
        channel_id,
        tenant_id,
        kind,
        label,
        keyring.seal_json(config, table=TABLE, column=CONFIG, row_id=channel_id),
    )
    return channel_id


async def get_channel(conn: asyncpg.Connection, channel_id: int) -> ChannelRow | None:
    row = await conn.fetchrow(
        "SELECT id, tenant_id, kind, label, config_sealed, enabled, disabled_reason"
        " FROM notification_channels WHERE id = $1",
        channel_id,
    )
    return ChannelRow(**dict(row)) if row else None


async def disable_channel(conn: asyncpg.Connection, channel_id: int, reason: str, actor: str = "pipeline") -> bool:
    """Stop sending to the channel, saying why (audited).  False when it was disabled already."""
    async with conn.transaction():
        tenant_id = await conn.fetchval(
            "UPDATE notification_channels SET enabled = false, disabled_reason = $2, disabled_at = now()"
            " WHERE id = $1 AND enabled RETURNING tenant_id",
            channel_id,
            reason,
        )
        if tenant_id is None:
            return False
        await audit.record(
            conn,
            tenant_id=tenant_id,
            actor=actor,
            action="channel.disabled",
            subject_type="notification_channel",
            subject_id=channel_id,
            details={"reason": reason},
        )
    return True


_CHANNEL = "SELECT id, tenant_id, kind, label, config_sealed, enabled, disabled_reason FROM notification_channels"


async def channel_page(conn: asyncpg.Connection, tenant_id: int, after_id: int, limit: int) -> list[ChannelRow]:
    """Up to ``limit`` of the tenant's channels with ids above ``after_id``, in id order."""
    rows = await conn.fetch(
        _CHANNEL + " WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3", tenant_id, after_id, limit
    )
    return [ChannelRow(**dict(r)) for r in rows]


async def update_channel(
    conn: asyncpg.Connection,
    keyring: Keyring,
    channel_id: int,
    *,
    label: str | None = None,
    enabled: bool | None = None,
    config: dict[str, Any] | None = None,
    actor: str = "api",
) -> ChannelRow | None:
    """Change the given fields (None leaves one as it is): ``config`` replaces the sealed config;
    enabling clears the reason the channel was disabled.  None when there is no such channel."""
    sealed = keyring.seal_json(config, table=TABLE, column=CONFIG, row_id=channel_id) if config is not None else None
    row = await conn.fetchrow(
        "UPDATE notification_channels SET label = coalesce($2, label), config_sealed = coalesce($3, config_sealed),"
        " enabled = coalesce($4, enabled),"
        " disabled_reason = CASE WHEN $4 IS NULL THEN disabled_reason WHEN $4 THEN NULL"
        "   WHEN enabled THEN $5 ELSE disabled_reason END,"
        " disabled_at = CASE WHEN $4 IS NULL THEN disabled_at WHEN $4 THEN NULL"
        "   WHEN enabled THEN now() ELSE disabled_at END"
        " WHERE id = $1 RETURNING id, tenant_id, kind, label, config_sealed, enabled, disabled_reason",
        channel_id,
        label,
        sealed,
        enabled,
        f"disabled by {actor}",
    )
    return ChannelRow(**dict(row)) if row else None


async def channel_in_use(conn: asyncpg.Connection, channel_id: int) -> str | None:
    """Why deleting the channel would lose something (a rule sends to it, or the delivery log
    names it), or None when nothing refers to it."""
    if await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM notification_rule_channels WHERE channel_id = $1)", channel_id
    ):
        return "a rule sends to it"
    if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM notification_logs WHERE channel_id = $1)", channel_id):
        return "the delivery log names it"
    return None


async def delete_channel(conn: asyncpg.Connection, channel_id: int) -> bool:
    found = await conn.fetchval("DELETE FROM notification_channels WHERE id = $1 RETURNING id", channel_id)
    return found is not None


async def tenant_channels(conn: asyncpg.Connection, tenant_id: int, channel_ids: Sequence[int]) -> set[int]:
    """Those of ``channel_ids`` that are the tenant's channels."""
    rows = await conn.fetch(
        "SELECT id FROM notification_channels WHERE id = ANY($1::bigint[]) AND tenant_id = $2",
        list(channel_ids),
        tenant_id,
    )
    return {r["id"] for r in rows}
