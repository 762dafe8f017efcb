"""Readings: one row per (user, provider, metric, recorded_at), written idempotently."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import asyncpg


@dataclass(frozen=True, slots=True)
class Reading:
    """One normalised reading, in the metric's canonical unit."""

    metric: str
    recorded_at: datetime
    value: float
    unit: str


@dataclass(frozen=True, slots=True)
class UpsertCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    def __add__(self, other: UpsertCounts) -> UpsertCounts:
        return UpsertCounts(
            self.inserted + other.inserted, self.updated + other.updated, self.unchanged + other.unchanged
        )

    @property
    def written(self) -> int:
        return self.inserted + self.updated


class MetricRow(NamedTuple):
    """One reading with its owner, for ``upsert_many``: the columns of ``metrics`` in COPY order.

    A NamedTuple rather than a frozen dataclass because COPY takes it as it is: a dataclass
    would need a conversion per row, about half a second per million rows on the 2-core box.
    """

    user_id: int
    provider: str
    metric: str
    recorded_at: datetime
    value: float
    unit: str
    connection_id: int | None = None


_COLUMNS = list(MetricRow._fields)

# One user's batch of fewer distinct keys than this goes as one unnest statement, a larger one
# through COPY and a staging table.  Measured on the 2-core box (docs/benchmarks.md, "Bulk
# ingest"), unnest was faster or level at every size from 500 to 50,000 readings: at 500-2,000
# by 1.04-1.4x on first load and 1.2-2.1x on replay, where the staged path's three extra round
# trips and its transaction dominate.  Past that, COPY keeps huge arrays out of one Bind message.
STAGED_FROM = 50_000

# Readings have no foreign keys (migration 0017): the per-row checks cost about half of a bulk
# load's server time.  Each statement takes their guarantee once instead: it locks the owning
# users and connections FOR KEY SHARE, as the checks did per row, and writes only when all are
# there.  A DELETE of one of them (an erase) then either waits for this write to commit and
# its trigger deletes what was written, or it ran first and this finds the owner gone.
_LOCK_OWNERS = """
WITH owners AS MATERIALIZED (
    SELECT (SELECT count(*) FROM (SELECT FROM users WHERE id = ANY($1::bigint[]) FOR KEY SHARE) AS u)
         + (SELECT count(*) FROM (SELECT FROM connections WHERE id = ANY($2::bigint[]) FOR KEY SHARE) AS c)
           AS found
)"""
_OWNERS = (
    _LOCK_OWNERS
    + """, written AS (
INSERT INTO metrics (user_id, provider, metric, recorded_at, value, unit, connection_id)
"""
)

# Both paths share one statement shape: a changed value or unit updates, an unchanged one is
# left alone (so a replayed sync writes nothing), and RETURNING tells inserts from updates:
# xmax is 0 only on a freshly inserted tuple.  Counted in the server, so one row comes back
# rather than one per written row (fetching them measured the same within noise) and a
# million-row call keeps flat client memory.
_CONFLICT = """
 WHERE (SELECT found FROM owners) = $3
ON CONFLICT (user_id, provider, metric, recorded_at) DO UPDATE
   SET value = excluded.value, unit = excluded.unit, connection_id = excluded.connection_id, updated_at = now()
 WHERE metrics.value IS DISTINCT FROM excluded.value OR metrics.unit IS DISTINCT FROM excluded.unit
RETURNING (xmax = 0) AS inserted)
SELECT (SELECT found FROM owners) AS owners, count(*) FILTER (WHERE inserted) AS inserted, count(*) AS written
  FROM written
"""

# One round trip for a small batch: the readings travel as arrays.
_UPSERT = (
    _OWNERS
    + """SELECT $4, $5, r.metric, r.recorded_at, r.value, r.unit, $6
  FROM unnest($7::text[], $8::timestamptz[], $9::float8[], $10::text[]) AS r(metric, recorded_at, value, unit)"""
    + _CONFLICT
)


class OwnerGone(LookupError):
    """A user or connection the readings belong to does not exist (any more): nothing was written."""


# A session temp table: created by the first staged call on a connection (pooled connections
# keep it: asyncpg's reset does not discard temp tables), emptied by every commit.  The DELETE
# finds rows only when the caller's own transaction spans two calls, so ON COMMIT has not run
# yet; on the usual empty table it costs nothing, and it rides the same round trip.
_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS metrics_staging (
    user_id        bigint NOT NULL,
    provider       text NOT NULL,
    metric         text NOT NULL,
    recorded_at    timestamptz NOT NULL,
    value          double precision NOT NULL,
    unit           text NOT NULL,
    connection_id  bigint
) ON COMMIT DELETE ROWS;
DELETE FROM pg_temp.metrics_staging;
"""

_FROM_STAGING = (
    _OWNERS
    + "SELECT user_id, provider, metric, recorded_at, value, unit, connection_id FROM pg_temp.metrics_staging"
    + _CONFLICT
)

# A first load, tried before the statement above: a plain INSERT costs half of what ON CONFLICT
# does per row (1.8 against 3.4-4.1 µs of server CPU on the 2-core box), because ON CONFLICT
# probes the key before each insert and confirms it after.  It writes only when no staged user
# has a stored reading within the time span staged for them: one probe per user, not per row.
# Anything else (a replay, an overlapping window) writes nothing here and goes through ON
# CONFLICT.  A key stored by a concurrent writer since, or staged twice, is a unique violation:
# the caller then starts again on the ON CONFLICT path.
_NEW_FROM_STAGING = (
    _LOCK_OWNERS
    + """, spans AS MATERIALIZED (
    SELECT NOT EXISTS (
        SELECT FROM (SELECT user_id, min(recorded_at) AS first, max(recorded_at) AS last
                       FROM pg_temp.metrics_staging GROUP BY user_id) AS s
         WHERE EXISTS (SELECT FROM metrics m
                        WHERE m.user_id = s.user_id AND m.recorded_at BETWEEN s.first AND s.last)
    ) AS new
), written AS (
INSERT INTO metrics (user_id, provider, metric, recorded_at, value, unit, connection_id)
SELECT user_id, provider, metric, recorded_at, value, unit, connection_id FROM pg_temp.metrics_staging
 WHERE (SELECT found FROM owners) = $3 AND (SELECT new FROM spans)
RETURNING 1)
SELECT (SELECT found FROM owners) AS owners, (SELECT new FROM spans) AS new,
       count(*) AS inserted, count(*) AS written
  FROM written
"""
)


async def upsert(
    conn: asyncpg.Connection,
    user_id: int,
    provider: str,
    connection_id: int | None,
    readings: Sequence[Reading],
) -> UpsertCounts:
    """Write one user's batch in one transaction; within it the last reading for a key wins.

    Counts every reading once: a reading superseded inside the batch counts as unchanged.
    Below ``STAGED_FROM`` distinct keys it is one unnest statement, from there COPY and a
    staging table; both give the same rows and the same counts.  Raises OwnerGone when the
    user or the connection does not exist.
    """
    latest = {(r.metric, r.recorded_at): r for r in readings}
    if not latest:
        return UpsertCounts()
    # Sorted, so two writers of overlapping keys take their row locks in the same order: the
    # primary key's, which also keeps the new index entries next to each other.
    batch = sorted(latest.values(), key=lambda r: (r.recorded_at, r.metric))
    if len(batch) >= STAGED_FROM:
        rows = [MetricRow(user_id, provider, r.metric, r.recorded_at, r.value, r.unit, connection_id) for r in batch]
        try:
            inserted, written = await _staged(conn, rows)
        except asyncpg.UniqueViolationError:  # a concurrent writer stored one of the keys since
            inserted, written = await _staged(conn, rows, new=False)
    else:
        owners = _owners([user_id], [connection_id])
        counts = await conn.fetchrow(
            _UPSERT,
            *owners,
            user_id,
            provider,
            connection_id,
            [r.metric for r in batch],
            [r.recorded_at for r in batch],
            [r.value for r in batch],
            [r.unit for r in batch],
        )
        inserted, written = _written(counts, owners[2])
    return UpsertCounts(inserted, written - inserted, len(readings) - written)


async def upsert_many(conn: asyncpg.Connection, rows: Sequence[MetricRow]) -> UpsertCounts:
    """Write any number of users' readings in one transaction, by COPY into a staging table.

    Same contract as ``upsert``: a changed value updates, an unchanged one is a no-op, the last
    row for a key wins and a superseded row counts as unchanged.  One call is one transaction
    (a savepoint inside the caller's); 10k-50k rows per call is the measured sweet spot.
    Rows are written in the order given: concurrent calls with overlapping keys should send
    them in the same order, or Postgres may abort one of them as a deadlock.  Raises OwnerGone,
    writing nothing, when one of the users or connections does not exist.
    """
    if not rows:
        return UpsertCounts()
    try:
        inserted, written = await _staged(conn, rows)
    except (asyncpg.UniqueViolationError, asyncpg.CardinalityViolationError):
        # The same key twice in one call (or, for a unique violation, a key a concurrent writer
        # stored since the first-load check): the first-load INSERT and ON CONFLICT (which
        # refuses to touch a row twice in one statement wherever the outcome would depend on
        # which row came first) both fail, and the transaction rolls back.  Only then do we
        # deduplicate (a dict, last row wins) and go again, through ON CONFLICT.  Doing it up
        # front cost every call 10-40% in the bench: about a microsecond a row for the dict in
        # Python, a sort of every batch for DISTINCT ON in SQL.
        latest = {row[:4]: row for row in rows}
        inserted, written = await _staged(conn, list(latest.values()), new=False)
    return UpsertCounts(inserted, written - inserted, len(rows) - written)


async def _staged(conn: asyncpg.Connection, rows: Sequence[MetricRow], new: bool = True) -> tuple[int, int]:
    """COPY ``rows`` into the staging table and upsert from it; returns (inserted, written).

    ``new`` tries the first-load INSERT first, which raises UniqueViolationError on a key that
    is stored or staged twice: call again with ``new=False``.
    """
    owners = _owners({row[0] for row in rows}, {row[6] for row in rows})
    async with conn.transaction():
        await conn.execute(_STAGING)
        await conn.copy_records_to_table("metrics_staging", schema_name="pg_temp", records=rows, columns=_COLUMNS)
        counts = await conn.fetchrow(_NEW_FROM_STAGING, *owners) if new else None
        if counts is None or not counts["new"]:
            counts = await conn.fetchrow(_FROM_STAGING, *owners)
        # Raised inside the transaction, so the staging table's rows go with it.
        return _written(counts, owners[2])


def _owners(user_ids: Iterable[int], connection_ids: Iterable[int | None]) -> tuple[list[int], list[int], int]:
    """The owners' parameters of ``_OWNERS``: distinct user ids, connection ids, how many in all."""
    users, links = list(set(user_ids)), [c for c in set(connection_ids) if c is not None]
    return users, links, len(users) + len(links)


def _written(counts: asyncpg.Record, owners: int) -> tuple[int, int]:
    """(inserted, written) from an upsert's one row; OwnerGone when it found an owner missing."""
    if counts["owners"] != owners:
        raise OwnerGone(f"{owners - counts['owners']} of the readings' {owners} users and connections do not exist")
    return int(counts["inserted"]), int(counts["written"])


async def latest(conn: asyncpg.Connection, user_id: int, since: datetime) -> list[Reading]:
    """Readings recorded at or after ``since``, from every provider, ordered by time then metric."""
    rows = await conn.fetch(
        "SELECT metric, recorded_at, value, unit FROM metrics WHERE user_id = $1 AND recorded_at >= $2"
        " ORDER BY recorded_at, metric, provider",
        user_id,
        since,
    )
    return [Reading(**dict(r)) for r in rows]
