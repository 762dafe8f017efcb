"""Turning events into deliveries: the fan-out, the test event, and replays.

Each returns the ids of the deliveries it made pending; the caller enqueues them (a lost
message is re-sent by the reconciler, because the pending row stays).
"""

from __future__ import annotations

import asyncpg

from db import events
from db import webhooks as stored


async def dispatch(pool: asyncpg.Pool, batch: int = 1000) -> list[int]:
    """Fan up to ``batch`` undispatched events out to their tenant's enabled endpoints that
    subscribe to their type; returns the new delivery ids.  Safe to run any number of times at
    once (each takes other events); the reconciler's next pass takes what is left."""
    async with pool.acquire() as conn, conn.transaction():
        return await stored.dispatch(conn, batch)


async def send_test(pool: asyncpg.Pool, endpoint: stored.Endpoint) -> tuple[int, int]:
    """A ``webhook.test`` event for this endpoint alone; returns (event id, delivery id)."""
    async with pool.acquire() as conn, conn.transaction():
        event_id = await events.publish(
            conn,
            endpoint.tenant_id,
            events.WEBHOOK_TEST,
            {"endpoint_id": endpoint.id, "message": "A test event from CareBeacon."},
            dispatched=True,
        )
        delivery_id = await stored.create_delivery(conn, event_id, endpoint.id)
    return event_id, delivery_id


async def replay(pool: asyncpg.Pool, endpoint_id: int, delivery_ids: list[int] | None = None) -> list[int]:
    """Make deliveries of the endpoint pending again, keeping their ``webhook-id``: the listed
    ones (unless one is mid-attempt), or every failed one when ``delivery_ids`` is None."""
    async with pool.acquire() as conn:
        return await stored.replay(conn, endpoint_id, delivery_ids)
