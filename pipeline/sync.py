"""One sync run: claim, unseal, refresh, fetch, validate, upsert in batches, record.

Called by the ``sync`` actor.  Every step is safe to repeat: the claim stops a second
worker, the upsert turns a replayed reading into a no-op, and the run row tells the
reconciler what still needs doing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from db import audit, connections, metrics, sync_runs
from db.connections import Connection
from db.metrics import Reading, UpsertCounts
from db.sealing import Keyring
from pipeline import vocabulary
from pipeline.providers import Provider, Window, get_provider
from pipeline.settings import PipelineSettings

log = logging.getLogger(__name__)

# Rows per upsert statement: big enough to amortise the round trip, small enough to stay quick.
BATCH_SIZE = 1000


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    run_id: int
    user_id: int
    status: str
    window: Window | None = None
    counts: UpsertCounts = UpsertCounts()
    received: int = 0
    invalid: int = 0


def sync_window(settings: PipelineSettings, connection: Connection, trigger: str, now: datetime) -> Window:
    """First sync: the last N days.  Daily job: the lookback.  Otherwise: since the last sync, less
    the overlap, from the start of that (UTC) day, because a day's totals keep changing until
    the day ends and providers report them per day."""
    if connection.last_synced_at is None:
        return Window(now - timedelta(days=settings.first_sync_days), now)
    if trigger == "daily":
        return Window(now - timedelta(days=settings.daily_lookback_days), now)
    since = min(connection.last_synced_at - settings.sync_overlap, now).astimezone(UTC)
    return Window(since.replace(hour=0, minute=0, second=0, microsecond=0), now)


async def run_sync(pool: asyncpg.Pool, keyring: Keyring, settings: PipelineSettings, run_id: int) -> SyncOutcome | None:
    """Run the sync; returns None when the run is not ours to run (finished, or held by another worker).

    Raises TransientSyncError / PermanentSyncError from the provider; the caller records them.
    """
    async with pool.acquire() as conn:
        run = await sync_runs.claim(conn, run_id, settings.stale_after)
        if run is None:
            log.info("sync run %s is finished or held elsewhere; skipping", run_id)
            return None
        connection = await connections.load(conn, run.connection_id)
        if connection is None or connection.status != "active":
            reason = "connection deleted" if connection is None else f"connection is {connection.status}"
            await sync_runs.finish(conn, run_id, "skipped", reason)
            log.info("sync run %s skipped: %s", run_id, reason)
            return SyncOutcome(run_id, connection.user_id if connection else 0, "skipped")

    provider = get_provider(connection.provider)
    tokens = await _fresh_tokens(pool, keyring, provider, connection)
    window = sync_window(settings, connection, run.trigger, datetime.now(UTC))
    async with pool.acquire() as conn:
        await sync_runs.set_window(conn, run_id, window.start, window.end)

    counts, received, invalid = UpsertCounts(), 0, 0
    batch: list[Reading] = []
    async for reading in provider.fetch(tokens, window, connection.settings):
        received += 1
        problem = vocabulary.problem(reading, window.start, window.end)
        if problem is not None:
            invalid += 1
            log.warning("sync run %s connection %s: skipped a reading: %s", run_id, connection.id, problem)
            continue
        batch.append(reading)
        if len(batch) >= BATCH_SIZE:
            counts += await _write(pool, connection, batch)
            batch = []
    counts += await _write(pool, connection, batch)

    async with pool.acquire() as conn, conn.transaction():
        await connections.mark_synced(conn, connection.id, window.end)
        await sync_runs.complete(conn, run_id, counts, received, invalid)
        await audit.record(
            conn,
            tenant_id=connection.tenant_id,
            actor="pipeline",
            action="sync.completed",
            subject_type="sync_run",
            subject_id=run_id,
            details={"received": received, "written": counts.written, "invalid": invalid},
        )
    log.info(
        "sync run %s connection %s (%s): %d readings, %d new, %d updated, %d unchanged, %d invalid",
        run_id, connection.id, provider.id, received, counts.inserted, counts.updated, counts.unchanged, invalid,
    )  # fmt: skip
    return SyncOutcome(run_id, connection.user_id, "completed", window, counts, received, invalid)


async def _write(pool: asyncpg.Pool, connection: Connection, batch: list[Reading]) -> UpsertCounts:
    if not batch:
        return UpsertCounts()
    async with pool.acquire() as conn:
        return await metrics.upsert(conn, connection.user_id, connection.provider, connection.id, batch)


async def _fresh_tokens(
    pool: asyncpg.Pool, keyring: Keyring, provider: Provider, connection: Connection
) -> dict[str, Any]:
    """Unsealed tokens, refreshed first when they expire soon.

    The refresh holds the connection's row lock: with rotating refresh tokens, a manual and a
    scheduled sync refreshing at once would each spend the same refresh token, and one of the
    two grants would be revoked.  The second waits, then finds fresh tokens and uses them.
    """
    tokens = connection.tokens(keyring)
    if not provider.needs_refresh(tokens):
        return tokens
    async with pool.acquire() as conn, conn.transaction():
        locked = await connections.load(conn, connection.id, for_update=True)
        tokens = locked.tokens(keyring) if locked else tokens
        if provider.needs_refresh(tokens):
            tokens = await provider.refresh(tokens)
            await connections.save_tokens(conn, keyring, connection.id, tokens)
            log.info("connection %s: tokens refreshed and resealed", connection.id)
    return tokens
