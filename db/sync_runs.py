"""Sync runs: the row that exists before any message does.

A run moves pending → running → completed | failed | skipped.  A worker claims it with a
conditional UPDATE, so two deliveries of the same message cannot both run it; a run left
"running" longer than the stale interval (its worker died) can be claimed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from db.metrics import UpsertCounts


@dataclass(frozen=True, slots=True)
class SyncRun:
    id: int
    connection_id: int
    trigger: str
    status: str
    attempts: int
    created_at: datetime


async def create(conn: asyncpg.Connection, connection_id: int, trigger: str) -> int:
    run_id: int = await conn.fetchval(
        "INSERT INTO sync_runs (connection_id, trigger) VALUES ($1, $2) RETURNING id", connection_id, trigger
    )
    return run_id


async def claim(conn: asyncpg.Connection, run_id: int, stale_after: timedelta) -> SyncRun | None:
    """Mark the run running and return it, or None when it is finished or another worker holds it."""
    row = await conn.fetchrow(
        "UPDATE sync_runs SET status = 'running', started_at = now(), attempts = attempts + 1, error = NULL"
        " WHERE id = $1 AND (status = 'pending' OR (status = 'running' AND started_at < now() - $2::interval))"
        " RETURNING id, connection_id, trigger, status, attempts, created_at",
        run_id,
        stale_after,
    )
    return SyncRun(**dict(row)) if row else None


async def set_window(conn: asyncpg.Connection, run_id: int, start: datetime, end: datetime) -> None:
    await conn.execute("UPDATE sync_runs SET window_start = $2, window_end = $3 WHERE id = $1", run_id, start, end)


async def complete(conn: asyncpg.Connection, run_id: int, counts: UpsertCounts, received: int, invalid: int) -> None:
    await conn.execute(
        "UPDATE sync_runs SET status = 'completed', finished_at = now(),"
        " rows_received = $2, rows_written = $3, rows_invalid = $4 WHERE id = $1",
        run_id,
        received,
        counts.written,
        invalid,
    )


async def finish(conn: asyncpg.Connection, run_id: int, status: str, error: str | None) -> None:
    """End the run as failed or skipped, or hand it back as pending for a retry."""
    await conn.execute(
        "UPDATE sync_runs SET status = $2, error = $3,"
        " finished_at = CASE WHEN $2 = 'pending' THEN NULL ELSE now() END WHERE id = $1",
        run_id,
        status,
        error,
    )


async def needing_enqueue(conn: asyncpg.Connection, older_than: timedelta, stale_after: timedelta) -> list[int]:
    """Runs whose message may be lost: pending too long, or running past the stale interval."""
    rows = await conn.fetch(
        "SELECT id FROM sync_runs WHERE (status = 'pending' AND created_at < now() - $1::interval)"
        " OR (status = 'running' AND started_at < now() - $2::interval) ORDER BY id LIMIT 1000",
        older_than,
        stale_after,
    )
    return [r["id"] for r in rows]


async def get(conn: asyncpg.Connection, run_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM sync_runs WHERE id = $1", run_id)


async def mark_analysed(conn: asyncpg.Connection, run_id: int) -> None:
    await conn.execute("UPDATE sync_runs SET analysed_at = now() WHERE id = $1 AND analysed_at IS NULL", run_id)


async def unanalysed(conn: asyncpg.Connection, older_than: timedelta) -> list[int]:
    """Completed runs whose analytics message may be lost."""
    rows = await conn.fetch(
        "SELECT id FROM sync_runs WHERE status = 'completed' AND analysed_at IS NULL"
        " AND finished_at < now() - $1::interval ORDER BY id LIMIT 1000",
        older_than,
    )
    return [r["id"] for r in rows]


async def create_due(conn: asyncpg.Connection, trigger: str, synced_before: datetime) -> list[int]:
    """A run for each active connection last synced before ``synced_before`` that has none open."""
    rows = await conn.fetch(
        "INSERT INTO sync_runs (connection_id, trigger)"
        " SELECT c.id, $1 FROM connections c WHERE c.status = 'active'"
        "   AND (c.last_synced_at IS NULL OR c.last_synced_at < $2)"
        "   AND NOT EXISTS (SELECT 1 FROM sync_runs r WHERE r.connection_id = c.id"
        "                   AND r.status IN ('pending', 'running'))"
        " RETURNING id",
        trigger,
        synced_before,
    )
    return [r["id"] for r in rows]
