"""The integrator event outbox: one row per event, written in the transaction of its cause.

Writing the event with the change it describes means a crash can lose neither alone; the
webhook dispatcher reads undispatched rows and fans them out to the tenant's endpoints.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

SYNC_COMPLETED, SYNC_FAILED = "sync.completed", "sync.failed"


async def publish(conn: asyncpg.Connection, tenant_id: int, event_type: str, data: dict[str, Any]) -> int:
    """Record ``{type, timestamp, data}`` for the tenant; returns the event id."""
    payload = {"type": event_type, "timestamp": datetime.now(UTC).isoformat(), "data": data}
    event_id: int = await conn.fetchval(
        "INSERT INTO events (tenant_id, type, payload) VALUES ($1, $2, $3) RETURNING id", tenant_id, event_type, payload
    )
    return event_id


async def undispatched(conn: asyncpg.Connection, limit: int = 1000) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT id, tenant_id, type, payload, created_at FROM events WHERE dispatched_at IS NULL ORDER BY id LIMIT $1",
        limit,
    )
    return rows
