"""The weekly cleanup's deletes.  Each statement deletes at most ``batch`` rows and commits on
its own, so the cleanup never holds many locks, or one transaction, for long.

There is no duplicate pass.  The primary key (user_id, provider, metric, recorded_at) is a
reading's identity, and a repeated reading updates its row in place (db/metrics.py), so exact
duplicates cannot exist.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

BATCH = 10_000


async def old_readings(conn: asyncpg.Connection, before: datetime, batch: int = BATCH) -> int:
    """Delete readings recorded before ``before``; daily stats stay.  Returns how many went.

    One user at a time, because the primary key leads with (user_id, recorded_at): a global
    ``recorded_at < …`` would read the whole table for every batch.
    """
    deleted = 0
    for row in await conn.fetch("SELECT id FROM users ORDER BY id"):
        deleted += await _drain(conn, "user_id = $1 AND recorded_at < $2", row["id"], before, batch=batch)
    return deleted


async def orphaned_readings(conn: asyncpg.Connection, batch: int = BATCH) -> int:
    """Delete readings of disconnected devices: their connection was deleted (connection_id
    set NULL; the metrics_orphaned index finds them) or revoked.  Returns how many went."""
    deleted = await _drain(conn, "connection_id IS NULL", batch=batch)
    for row in await conn.fetch("SELECT id, user_id, provider FROM connections WHERE status = 'revoked' ORDER BY id"):
        # user_id leads the primary key, so this reads only that user's rows.
        deleted += await _drain(
            conn,
            "user_id = $1 AND provider = $2 AND connection_id = $3",
            row["user_id"],
            row["provider"],
            row["id"],
            batch=batch,
        )
    return deleted


async def old_slots(conn: asyncpg.Connection, before: datetime) -> int:
    """Delete scheduler slots before ``before``, except each job's latest, which an operator
    page still shows.  One statement: nothing else ever locks an old slot's row."""
    status = await conn.execute(
        "DELETE FROM scheduler_slots s WHERE s.slot < $1"
        " AND s.slot < (SELECT max(l.slot) FROM scheduler_slots l WHERE l.job = s.job)",
        before,
    )
    return _count(status)


async def _drain(conn: asyncpg.Connection, where: str, *args: object, batch: int) -> int:
    """Delete the metrics rows matching ``where``, ``batch`` per statement, until a statement
    finds fewer than that; returns how many went."""
    # ctids picked by a bounded subquery: DELETE has no LIMIT of its own.
    statement = (
        f"DELETE FROM metrics WHERE ctid = ANY(ARRAY(SELECT ctid FROM metrics WHERE {where} LIMIT ${len(args) + 1}))"
    )
    deleted = 0
    while True:
        found = _count(await conn.execute(statement, *args, batch))
        deleted += found
        if found < batch:
            return deleted


def _count(status: str) -> int:
    # asyncpg returns the command tag, "DELETE 42".
    return int(status.rsplit(" ", 1)[1])
