"""The integrator event outbox: one row per event, written in the transaction of its cause.

Writing the event with the change it describes means a crash can lose neither alone; the
webhook dispatcher reads undispatched rows and fans them out to the tenant's endpoints.
The catalogue (docs/webhooks.md shows a payload of each): payloads carry ids and summaries,
never bulk health data.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

SYNC_COMPLETED, SYNC_FAILED = "sync.completed", "sync.failed"
CONNECTION_CREATED, CONNECTION_DISCONNECTED = "connection.created", "connection.disconnected"
ALERT_CREATED, ALERT_ACKNOWLEDGED, ALERT_RESOLVED = "alert.created", "alert.acknowledged", "alert.resolved"
SCORE_UPDATED, REPORT_READY = "score.updated", "report.ready"
# Operational: an endpoint of the tenant was disabled (410, or too many failures in a row).
WEBHOOK_DISABLED = "webhook.disabled"
# Sent only by `POST /v1/webhooks/{id}/test`, to that endpoint, whatever it subscribes to.
WEBHOOK_TEST = "webhook.test"

# What an endpoint may subscribe to.
CATALOGUE = (
    SYNC_COMPLETED,
    SYNC_FAILED,
    CONNECTION_CREATED,
    CONNECTION_DISCONNECTED,
    ALERT_CREATED,
    ALERT_ACKNOWLEDGED,
    ALERT_RESOLVED,
    SCORE_UPDATED,
    REPORT_READY,
    WEBHOOK_DISABLED,
)


# An event is born dispatched when no enabled endpoint of its tenant subscribes to its type: the
# dispatcher would only mark it so, and each row it marks leaves a dead entry in the partial
# index it scans (a bitmap scan never prunes them), which made that scan the costliest statement
# of a sync when a tenant has no webhooks.  An endpoint subscribes from its creation onwards.
NOBODY_SUBSCRIBES = (
    "NOT EXISTS (SELECT FROM webhook_endpoints e WHERE e.tenant_id = $1 AND e.enabled AND $2 = ANY (e.events))"
)


async def publish(
    conn: asyncpg.Connection, tenant_id: int, event_type: str, data: dict[str, Any], *, dispatched: bool = False
) -> int:
    """Record ``{type, timestamp, data}`` for the tenant; returns the event id.

    ``dispatched`` marks an event the caller fans out itself (the test event), so the
    dispatcher leaves it alone.  So is an event no enabled endpoint of the tenant subscribes to
    (``NOBODY_SUBSCRIBES``).
    """
    payload = envelope(event_type, data)
    event_id: int = await conn.fetchval(
        "INSERT INTO events (tenant_id, type, payload, dispatched_at)"
        f" VALUES ($1, $2, $3, CASE WHEN $4 OR {NOBODY_SUBSCRIBES} THEN now() END) RETURNING id",
        tenant_id,
        event_type,
        payload,
        dispatched,
    )
    return event_id


def envelope(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """An event's payload as stored and sent: ``{type, timestamp, data}``."""
    return {"type": event_type, "timestamp": datetime.now(UTC).isoformat(), "data": data}


async def publish_many(conn: asyncpg.Connection, found: Sequence[tuple[int, str, dict[str, Any]]]) -> None:
    """``publish`` for many (tenant_id, type, data), in one round trip."""
    now = datetime.now(UTC).isoformat()
    await conn.executemany(
        "INSERT INTO events (tenant_id, type, payload, dispatched_at)"
        f" VALUES ($1, $2, $3, CASE WHEN {NOBODY_SUBSCRIBES} THEN now() END)",
        [
            (tenant_id, event_type, {"type": event_type, "timestamp": now, "data": data})
            for tenant_id, event_type, data in found
        ],
    )


async def any_pending(executor: asyncpg.Connection | asyncpg.Pool) -> bool:
    """Whether the dispatcher has anything to fan out: one probe of its partial index."""
    found: bool = await executor.fetchval("SELECT EXISTS (SELECT FROM events WHERE dispatched_at IS NULL)")
    return found


async def undispatched(conn: asyncpg.Connection, limit: int = 1000) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT id, tenant_id, type, payload, created_at FROM events WHERE dispatched_at IS NULL ORDER BY id LIMIT $1",
        limit,
    )
    return rows
