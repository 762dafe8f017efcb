"""Starting work: the row first, then the message.

If the message is lost (Redis flushed, broker down at send time), the row is still pending
and the reconciler re-enqueues it, so a trigger never silently disappears.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import asyncpg
import dramatiq
from dramatiq.errors import BrokerError

from db import sync_runs
from pipeline import actors

log = logging.getLogger(__name__)


def enqueue(actor: dramatiq.Actor[..., Any], *args: int) -> bool:
    """Send a message; False (logged) when the broker is unreachable and the reconciler must do it."""
    try:
        actor.send(*args)
    except (BrokerError, OSError, ConnectionError) as exc:
        log.warning("could not enqueue %s%s (%s); the reconciler will retry", actor.actor_name, args, exc)
        return False
    return True


async def request_sync(pool: asyncpg.Pool, connection_id: int, trigger: str) -> int:
    """Record a pending sync run for the connection and enqueue it; returns the run id."""
    async with pool.acquire() as conn:
        run_id = await sync_runs.create(conn, connection_id, trigger)
    enqueue(actors.sync, run_id)
    return run_id


async def sweep(pool: asyncpg.Pool, trigger: str, synced_before: datetime) -> list[int]:
    """Create and enqueue a run for every active connection that is due."""
    async with pool.acquire() as conn:
        run_ids = await sync_runs.create_due(conn, trigger, synced_before)
    for run_id in run_ids:
        enqueue(actors.sync, run_id)
    if run_ids:
        log.info("%s sweep: %d sync run(s) enqueued", trigger, len(run_ids))
    return run_ids
