"""The clock's rows, one per (job, slot) claimed, and the reads its jobs make.

A slot is claimed with INSERT … ON CONFLICT DO NOTHING RETURNING.  However many clock
processes try, one gets the row back, and only that one runs the job.  Slots are at most once:
a clock that dies mid-job leaves its row unfinished, and no other clock retries it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import asyncpg

# The first key of the two-key advisory locks taken here ("cloc"), so they cannot collide
# with db/migrate.py's single-key lock or anyone else's.
LOCK_CLASS = 0x636C6F63
# Enough for an exception's message; a traceback belongs in the log, not in the row.
ERROR_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Slot:
    job: str
    slot: datetime
    claimed_by: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class DailySummary:
    """The runs of one daily sync; ``errors`` maps the commonest errors to how many runs hit them."""

    runs: int
    users_synced: int
    rows_written: int
    failed: int
    skipped: int
    unfinished: int
    errors: dict[str, int]


async def claim(conn: asyncpg.Connection, job: str, slot: datetime, claimed_by: str, at: datetime) -> bool:
    """True when this caller won the slot and must run it; False when someone else has it."""
    won = await conn.fetchval(
        "INSERT INTO scheduler_slots (job, slot, claimed_by, started_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (job, slot) DO NOTHING RETURNING true",
        job,
        slot,
        claimed_by,
        at,
    )
    return bool(won)


async def finish(conn: asyncpg.Connection, job: str, slot: datetime, at: datetime, error: str | None) -> None:
    """Record the outcome: ``error`` None means the job succeeded."""
    await conn.execute(
        "UPDATE scheduler_slots SET finished_at = $3, outcome = $4, error = $5 WHERE job = $1 AND slot = $2",
        job,
        slot,
        at,
        "ok" if error is None else "error",
        None if error is None else error[:ERROR_CHARS],
    )


async def latest(conn: asyncpg.Connection) -> list[Slot]:
    """The latest claimed slot of each job, by job name: what an operator page shows."""
    rows = await conn.fetch("SELECT DISTINCT ON (job) * FROM scheduler_slots ORDER BY job, slot DESC")
    return [Slot(**dict(row)) for row in rows]


@asynccontextmanager
async def exclusive(pool: asyncpg.Pool, name: str, poll: float = 0.2) -> AsyncIterator[None]:
    """Hold the lock ``name`` for the block, across every process on this database.

    The lock lives in a transaction on a connection of its own, so the block's work (on other
    connections) commits before the next holder starts, and sees what the last one wrote.
    A waiter polls and holds no connection meanwhile: waiters holding connections could empty
    a small pool, and the holder needs one more for its work.
    """
    while True:
        async with pool.acquire() as conn, conn.transaction():
            if await conn.fetchval("SELECT pg_try_advisory_xact_lock($1, hashtext($2))", LOCK_CLASS, name):
                yield
                return
        await asyncio.sleep(poll)


async def daily_summary(conn: asyncpg.Connection, since: datetime) -> DailySummary:
    """The sync runs with trigger 'daily' created at or after ``since``."""
    where = "r.trigger = 'daily' AND r.created_at >= $1"
    counts = await conn.fetchrow(
        "SELECT count(*) AS runs,"
        " count(DISTINCT c.user_id) FILTER (WHERE r.status = 'completed') AS users_synced,"
        " coalesce(sum(r.rows_written) FILTER (WHERE r.status = 'completed'), 0) AS rows_written,"
        " count(*) FILTER (WHERE r.status = 'failed') AS failed,"
        " count(*) FILTER (WHERE r.status = 'skipped') AS skipped,"
        " count(*) FILTER (WHERE r.status IN ('pending', 'running')) AS unfinished"
        f" FROM sync_runs r JOIN connections c ON c.id = r.connection_id WHERE {where}",
        since,
    )
    errors = await conn.fetch(
        "SELECT left(coalesce(r.error, 'unknown'), 200) AS error, count(*) AS runs"
        f" FROM sync_runs r WHERE {where} AND r.status = 'failed' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5",
        since,
    )
    return DailySummary(**dict(counts), errors={row["error"]: row["runs"] for row in errors})


async def users_to_aggregate(
    conn: asyncpg.Connection, readings_since: datetime, analysed_since: datetime
) -> list[tuple[int, str]]:
    """(user id, time zone) of each user with readings since ``readings_since`` whose stats no
    analysis has refreshed since ``analysed_since``; analytics after a sync already did the rest."""
    rows = await conn.fetch(
        "SELECT u.id, u.timezone FROM users u"
        " WHERE EXISTS (SELECT 1 FROM metrics m WHERE m.user_id = u.id AND m.recorded_at >= $1)"
        "   AND NOT EXISTS (SELECT 1 FROM connections c JOIN sync_runs r ON r.connection_id = c.id"
        # Bounded on created_at too, so the probe uses the (connection_id, created_at) index
        # instead of reading every run the connection ever had.
        "                   WHERE c.user_id = u.id AND r.created_at >= $2::timestamptz - interval '1 day'"
        "                     AND r.analysed_at >= $2)"
        " ORDER BY u.id",
        readings_since,
        analysed_since,
    )
    return [(row["id"], row["timezone"]) for row in rows]
