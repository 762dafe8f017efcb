"""Sync runs: the row that exists before any message does.

A run moves pending → running → completed | failed | skipped.  A worker claims it with a
conditional UPDATE, so two deliveries of the same message cannot both run it; a run left
"running" longer than the stale interval (its worker died) can be claimed again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from db import connections, events
from db.connections import Connection
from db.metrics import UpsertCounts


@dataclass(frozen=True, slots=True)
class Scope:
    """What a targeted run reads: ``start``..``end`` (both None: the run's own window) and only
    the provider's collections in ``only`` (None: all of them)."""

    start: datetime | None = None
    end: datetime | None = None
    only: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class SyncRun:
    id: int
    connection_id: int
    trigger: str
    status: str
    attempts: int
    created_at: datetime
    scope: Scope | None = None


@dataclass(frozen=True, slots=True)
class Claimed:
    """A claimed run and its connection (None: the connection was deleted)."""

    run: SyncRun
    connection: Connection | None


async def create(conn: asyncpg.Connection, connection_id: int, trigger: str, scope: Scope | None = None) -> int:
    scope = scope or Scope()
    run_id: int = await conn.fetchval(
        "INSERT INTO sync_runs (connection_id, trigger, scope_start, scope_end, scope_only)"
        " VALUES ($1, $2, $3, $4, $5) RETURNING id",
        connection_id,
        trigger,
        scope.start,
        scope.end,
        sorted(scope.only) if scope.only is not None else None,
    )
    return run_id


async def widen(conn: asyncpg.Connection, run_id: int, scope: Scope) -> bool:
    """Make the pending run ``run_id`` read ``scope`` as well; False when it is no longer
    pending (a worker took it: the caller needs a run of its own).  Either side unbounded
    makes the result unbounded: a waiting ordinary run already covers any push."""
    widened: int | None = await conn.fetchval(
        "UPDATE sync_runs SET"
        " scope_start = CASE WHEN scope_start IS NULL OR $2::timestamptz IS NULL THEN NULL"
        "   ELSE least(scope_start, $2) END,"
        " scope_end = CASE WHEN scope_end IS NULL OR $3::timestamptz IS NULL THEN NULL"
        "   ELSE greatest(scope_end, $3) END,"
        " scope_only = CASE WHEN scope_only IS NULL OR $4::text[] IS NULL THEN NULL"
        "   ELSE ARRAY(SELECT DISTINCT unnest(scope_only || $4::text[]) ORDER BY 1) END"
        " WHERE id = $1 AND status = 'pending' RETURNING id",
        run_id,
        scope.start,
        scope.end,
        sorted(scope.only) if scope.only is not None else None,
    )
    return widened is not None


# The claim, and the run's connection read in the same statement (c_id NULL: it was deleted).
_CLAIM = f"""
WITH run AS (
    UPDATE sync_runs SET status = 'running', started_at = now(), attempts = attempts + 1, error = NULL,
           claimed_by = $3
     WHERE id = $1 AND (status = 'pending' OR (status = 'running'
           AND (started_at < now() - $2::interval OR ($3::text IS NOT NULL AND claimed_by = $3))))
    RETURNING id, connection_id, trigger, status, attempts, created_at, scope_start, scope_end, scope_only)
SELECT run.*, c.id AS c_id, c.user_id, c.tenant_id, c.provider, c.status AS c_status, c.settings,
       c.last_synced_at, c.tokens_sealed
  FROM run LEFT JOIN ({connections.SELECT}) c ON c.id = run.connection_id
"""


async def claim(
    conn: asyncpg.Connection, run_id: int, stale_after: timedelta, claimant: str | None = None
) -> Claimed | None:
    """Mark the run running and return it with its connection, or None when it is finished or
    another worker holds it.  One statement: the connection is read in the claim's round trip.

    ``claimant`` (the Dramatiq message id) may take back a run it left running itself: a retry
    of an attempt that failed while the database was unreachable, so nothing marked it pending.
    """
    row = await conn.fetchrow(_CLAIM, run_id, stale_after, claimant)
    if row is None:
        return None
    start, end, only = row["scope_start"], row["scope_end"], row["scope_only"]
    scoped = start is not None or only is not None
    run = SyncRun(
        row["id"], row["connection_id"], row["trigger"], row["status"], row["attempts"], row["created_at"],
        Scope(start, end, frozenset(only) if only is not None else None) if scoped else None,
    )  # fmt: skip
    if row["c_id"] is None:  # the connection was deleted
        return Claimed(run, None)
    connection = Connection(
        row["c_id"], row["user_id"], row["tenant_id"], row["provider"], row["c_status"], row["settings"],
        row["last_synced_at"], row["tokens_sealed"],
    )  # fmt: skip
    return Claimed(run, connection)


async def set_window(conn: asyncpg.Connection, run_id: int, start: datetime, end: datetime) -> None:
    await conn.execute("UPDATE sync_runs SET window_start = $2, window_end = $3 WHERE id = $1", run_id, start, end)


# The attempt's duration, from the claim to now.
_DURATION = "duration_ms = (extract(epoch FROM now() - started_at) * 1000)::integer"

# A run's completion: its counts, the connection's last sync ($8 NULL leaves it), the audit row
# and the ``sync.completed`` event, in one statement: one round trip, and all of it or none.
# $1 and $2 are the tenant and the event type, as ``events.NOBODY_SUBSCRIBES`` expects.
_COMPLETE = f"""
WITH run AS (
    UPDATE sync_runs SET status = 'completed', finished_at = now(), {_DURATION}, rows_received = $4,
           rows_written = $5, rows_unchanged = $6, rows_invalid = $7
     WHERE id = $3),
synced AS (
    UPDATE connections SET last_synced_at = GREATEST(last_synced_at, $9), updated_at = now() WHERE id = $8),
audited AS (
    INSERT INTO audit_events (tenant_id, actor, action, subject_type, subject_id, details)
    VALUES ($1, 'pipeline', 'wearable_sync', 'sync_run', $3, $10))
INSERT INTO events (tenant_id, type, payload, dispatched_at)
VALUES ($1, $2, $11, CASE WHEN {events.NOBODY_SUBSCRIBES} THEN now() END)
"""


async def complete(
    conn: asyncpg.Connection,
    run_id: int,
    connection: Connection,
    synced_at: datetime | None,
    counts: UpsertCounts,
    received: int,
    invalid: int,
    summary: dict[str, Any],
) -> None:
    """Complete the run and, in the same statement, record what goes with it: the connection's
    ``last_synced_at`` moved up to ``synced_at`` (None leaves it), the audit row and the
    ``sync.completed`` event, whose data is ``summary``.  One statement is one round trip, and
    all of it is written or none."""
    await conn.execute(
        _COMPLETE,
        connection.tenant_id,
        events.SYNC_COMPLETED,
        run_id,
        received,
        counts.written,
        counts.unchanged,
        invalid,
        connection.id if synced_at is not None else None,
        synced_at,
        summary,
        events.envelope(events.SYNC_COMPLETED, summary),
    )


async def finish(
    conn: asyncpg.Connection, run_id: int, status: str, error: str | None, retry_in: timedelta | None = None
) -> None:
    """End the run as failed or skipped, or hand it back as pending for a retry due in
    ``retry_in``: until then the reconciler leaves it to Dramatiq's backoff."""
    await conn.execute(
        f"UPDATE sync_runs SET status = $2, error = $3, {_DURATION},"
        " finished_at = CASE WHEN $2 = 'pending' THEN NULL ELSE now() END,"
        " not_before = CASE WHEN $4::interval IS NULL THEN not_before ELSE now() + $4::interval END"
        " WHERE id = $1",
        run_id,
        status,
        error,
        retry_in,
    )


async def needing_enqueue(conn: asyncpg.Connection, older_than: timedelta, stale_after: timedelta) -> list[int]:
    """Runs whose message may be lost: pending longer than ``older_than`` after they fell due
    (a jittered or retrying run falls due at ``not_before``), or running past the stale interval.

    Each run returned is stamped due again now, so the next pass leaves it alone for another
    ``older_than`` instead of re-sending it every time while it waits for a free worker.
    """
    rows = await conn.fetch(
        "UPDATE sync_runs SET not_before = now() WHERE id IN ("
        "  SELECT id FROM sync_runs WHERE coalesce(not_before, created_at) < now() - $1::interval"
        "   AND created_at < now() - $1::interval"
        "   AND (status = 'pending' OR (status = 'running' AND started_at < now() - $2::interval))"
        "  ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED)"
        " RETURNING id",
        older_than,
        stale_after,
    )
    return sorted(r["id"] for r in rows)


async def failed(conn: asyncpg.Connection, limit: int = 100) -> list[asyncpg.Record]:
    """The dead letters, newest first: runs that ran out of retries or failed permanently."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT r.id, r.connection_id, c.provider, c.user_id, r.trigger, r.attempts, r.error, r.finished_at"
        " FROM sync_runs r JOIN connections c ON c.id = r.connection_id"
        " WHERE r.status = 'failed' ORDER BY r.finished_at DESC NULLS LAST, r.id DESC LIMIT $1",
        limit,
    )
    return rows


async def requeue(conn: asyncpg.Connection, run_ids: list[int] | None) -> list[int]:
    """Hand failed runs back as pending (all of them when ``run_ids`` is None); returns their ids.

    The attempt count restarts, so the run gets the actor's full retry budget again.
    """
    rows = await conn.fetch(
        "UPDATE sync_runs SET status = 'pending', attempts = 0, finished_at = NULL, not_before = NULL"
        " WHERE status = 'failed' AND ($1::bigint[] IS NULL OR id = ANY($1)) RETURNING id",
        run_ids,
    )
    return sorted(r["id"] for r in rows)


async def get(conn: asyncpg.Connection, run_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM sync_runs WHERE id = $1", run_id)


async def mark_analysed(conn: asyncpg.Connection, run_id: int) -> None:
    await conn.execute("UPDATE sync_runs SET analysed_at = now() WHERE id = $1 AND analysed_at IS NULL", run_id)


async def mark_analysed_many(conn: asyncpg.Connection, run_ids: Sequence[int]) -> None:
    await conn.execute(
        "UPDATE sync_runs SET analysed_at = now() WHERE id = ANY($1::bigint[]) AND analysed_at IS NULL", list(run_ids)
    )


async def unanalysed(conn: asyncpg.Connection, older_than: timedelta) -> list[int]:
    """Completed runs whose analytics message may be lost."""
    rows = await conn.fetch(
        "SELECT id FROM sync_runs WHERE status = 'completed' AND analysed_at IS NULL"
        " AND finished_at < now() - $1::interval ORDER BY id LIMIT 1000",
        older_than,
    )
    return [r["id"] for r in rows]


@dataclass(frozen=True, slots=True)
class DueRun:
    id: int
    delay: timedelta


async def create_due(
    conn: asyncpg.Connection,
    trigger: str,
    synced_before: datetime,
    providers: Sequence[str] | None = None,
    jitter: timedelta = timedelta(0),
    skip: Sequence[str] = (),
) -> list[DueRun]:
    """A run for each active connection (of ``providers``, if given, and not of ``skip``) last
    synced before ``synced_before`` that has none open.

    Each run is due after a delay in [0, jitter) fixed by its connection id, so a sweep over
    many connections spreads its load, and the same connection keeps its place in every sweep.
    """
    jitter_ms = int(jitter.total_seconds() * 1000)
    rows = await conn.fetch(
        "INSERT INTO sync_runs (connection_id, trigger, not_before)"
        " SELECT c.id, $1, CASE WHEN $4 > 0 THEN now() + make_interval(secs => (hashtext(c.id::text)::bigint"
        "   + 2147483648) % $4 / 1000.0) END"
        " FROM connections c WHERE c.status = 'active'"
        "   AND (c.last_synced_at IS NULL OR c.last_synced_at < $2)"
        "   AND ($3::text[] IS NULL OR c.provider = ANY($3)) AND c.provider <> ALL($5::text[])"
        "   AND NOT EXISTS (SELECT 1 FROM sync_runs r WHERE r.connection_id = c.id"
        "                   AND r.status IN ('pending', 'running'))"
        " RETURNING id, coalesce(not_before - created_at, interval '0') AS delay",
        trigger,
        synced_before,
        list(providers) if providers is not None else None,
        jitter_ms,
        list(skip),
    )
    return [DueRun(r["id"], r["delay"]) for r in rows]


async def lock_unanalysed(conn: asyncpg.Connection, run_ids: Sequence[int], limit: int) -> list[int]:
    """In the caller's transaction, lock those of the runs that still wait for analysis and,
    when they are fewer than ``limit``, other waiting runs up to it, oldest first; the runs
    given come first.  Runs another transaction holds are skipped, so two workers never analyse
    one run at once; a worker that dies releases its locks with its connection.  Empty when
    none of the runs given waits any more (analysed, or held elsewhere: the holder analyses it).
    """
    own = await conn.fetch(
        "SELECT id FROM sync_runs WHERE id = ANY($1::bigint[]) AND status = 'completed' AND analysed_at IS NULL"
        " ORDER BY id FOR UPDATE SKIP LOCKED",
        list(run_ids),
    )
    if not own or len(own) >= limit:
        return [r["id"] for r in own]
    others = await conn.fetch(
        "SELECT id FROM sync_runs WHERE status = 'completed' AND analysed_at IS NULL AND id <> ALL($1::bigint[])"
        " ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        list(run_ids),
        limit - len(own),
    )
    return [r["id"] for r in (*own, *others)]
