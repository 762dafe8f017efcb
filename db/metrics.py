"""Readings: one row per (user, provider, metric, recorded_at), written idempotently."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import asyncpg
import numpy as np
import numpy.typing as npt


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

# Both paths share one statement shape: a changed value or unit updates, an unchanged one is
# left alone (so a replayed sync writes nothing), and RETURNING tells inserts from updates:
# xmax is 0 only on a freshly inserted tuple.
_CONFLICT = """
ON CONFLICT (user_id, provider, metric, recorded_at) DO UPDATE
   SET value = excluded.value, unit = excluded.unit, connection_id = excluded.connection_id, updated_at = now()
 WHERE metrics.value IS DISTINCT FROM excluded.value OR metrics.unit IS DISTINCT FROM excluded.unit
RETURNING (xmax = 0) AS inserted
"""

# One round trip for a small batch: the readings travel as arrays.
_UPSERT = (
    """
INSERT INTO metrics (user_id, provider, metric, recorded_at, value, unit, connection_id)
SELECT $1, $2, r.metric, r.recorded_at, r.value, r.unit, $3
  FROM unnest($4::text[], $5::timestamptz[], $6::float8[], $7::text[]) AS r(metric, recorded_at, value, unit)
"""
    + _CONFLICT
)

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

# Counted in the server, so one row comes back rather than one per written row.  Fetching the
# RETURNING rows measured the same within noise; this keeps a million-row call's client memory flat.
_FROM_STAGING = (
    """
WITH written AS (
INSERT INTO metrics (user_id, provider, metric, recorded_at, value, unit, connection_id)
SELECT user_id, provider, metric, recorded_at, value, unit, connection_id FROM pg_temp.metrics_staging
"""
    + _CONFLICT
    + """)
SELECT count(*) FILTER (WHERE inserted) AS inserted, count(*) AS written FROM written
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
    staging table; both give the same rows and the same counts.
    """
    latest = {(r.metric, r.recorded_at): r for r in readings}
    if not latest:
        return UpsertCounts()
    # Sorted, so two writers of overlapping keys take their row locks in the same order.
    batch = sorted(latest.values(), key=lambda r: (r.metric, r.recorded_at))
    if len(batch) >= STAGED_FROM:
        rows = [MetricRow(user_id, provider, r.metric, r.recorded_at, r.value, r.unit, connection_id) for r in batch]
        inserted, written = await _staged(conn, rows)
    else:
        returned = await conn.fetch(
            _UPSERT,
            user_id,
            provider,
            connection_id,
            [r.metric for r in batch],
            [r.recorded_at for r in batch],
            [r.value for r in batch],
            [r.unit for r in batch],
        )
        inserted, written = sum(1 for row in returned if row["inserted"]), len(returned)
    return UpsertCounts(inserted, written - inserted, len(readings) - written)


async def upsert_many(conn: asyncpg.Connection, rows: Sequence[MetricRow]) -> UpsertCounts:
    """Write any number of users' readings in one transaction, by COPY into a staging table.

    Same contract as ``upsert``: a changed value updates, an unchanged one is a no-op, the last
    row for a key wins and a superseded row counts as unchanged.  One call is one transaction
    (a savepoint inside the caller's); 10k-50k rows per call is the measured sweet spot.
    Rows are written in the order given: concurrent calls with overlapping keys should send
    them in the same order, or Postgres may abort one of them as a deadlock.
    """
    if not rows:
        return UpsertCounts()
    try:
        inserted, written = await _staged(conn, rows)
    except asyncpg.CardinalityViolationError:
        # The same key twice in one call: ON CONFLICT refuses to touch a row twice in one
        # statement, in every case where the outcome would depend on which row came first, and
        # the transaction rolls back.  Only then do we deduplicate (a dict, last row wins) and
        # go again.  Doing it up front cost every call 10-40% in the bench: about a microsecond
        # a row for the dict in Python, a sort of every batch for DISTINCT ON in SQL.
        latest = {row[:4]: row for row in rows}
        inserted, written = await _staged(conn, list(latest.values()))
    return UpsertCounts(inserted, written - inserted, len(rows) - written)


async def _staged(conn: asyncpg.Connection, rows: Sequence[MetricRow]) -> tuple[int, int]:
    """COPY ``rows`` into the staging table and upsert from it; returns (inserted, written)."""
    async with conn.transaction():
        await conn.execute(_STAGING)
        await conn.copy_records_to_table("metrics_staging", schema_name="pg_temp", records=rows, columns=_COLUMNS)
        counts = await conn.fetchrow(_FROM_STAGING)
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


class MetricArrays(NamedTuple):
    """One metric's readings of one user as two parallel arrays, in ``latest``'s order."""

    seconds: npt.NDArray[np.float64]  # POSIX time: recorded_at.timestamp()
    values: npt.NDArray[np.float64]


# One row per (user, metric, provider): two float8 arrays decode far faster than a Record and a
# Reading per reading.  date_part gives µs ÷ 10⁶ in float8, correctly rounded like timestamp().
# Each user is its own index scan and a small in-memory aggregate (LATERAL), with no ORDER BY:
# grouping or sorting the whole batch's readings spilled to disk past work_mem and cost the
# server more than the scans (~7 ms a user against ~3 ms, 100 users a query, 2-core box).  The
# arrays come in no particular order either: _by_metric sorts each user's rows and readings.
# provider_rank is the providers' order in the database's collation, which latest's uses.
# Each user has its own ``since``: a batch of analyses covers runs whose windows end apart.
_LATEST_ARRAYS = """
SELECT w.user_id, a.metric, a.provider_rank, a.seconds, a.values
  FROM unnest($1::bigint[], $2::timestamptz[]) AS w(user_id, since)
 CROSS JOIN LATERAL (
       SELECT metric, dense_rank() OVER (ORDER BY provider) AS provider_rank,
              array_agg(date_part('epoch', recorded_at)) AS seconds,
              array_agg(value) AS values
         FROM metrics
        WHERE user_id = w.user_id AND recorded_at >= w.since
        GROUP BY metric, provider) AS a
"""


async def latest_arrays(
    conn: asyncpg.Connection, user_ids: Sequence[int], since: datetime | Mapping[int, datetime]
) -> dict[int, dict[str, MetricArrays]]:
    """``latest`` for many users in one query, as arrays per user and metric; ``since`` is one
    time for all, or each user's own.

    Every id given is a key; a user without readings maps to {}.  Each metric's readings come
    in ``latest``'s order: by time, then provider.  ~100 users a call keeps a result near a
    quarter of a million readings.
    """
    ids = list(dict.fromkeys(user_ids))
    starts = [since[user_id] for user_id in ids] if isinstance(since, Mapping) else [since] * len(ids)
    rows: dict[int, list[asyncpg.Record]] = {}
    for row in await conn.fetch(_LATEST_ARRAYS, ids, starts):
        rows.setdefault(row["user_id"], []).append(row)
    found: dict[int, dict[str, MetricArrays]] = {user_id: {} for user_id in user_ids}
    for user_id, own in rows.items():
        found[user_id] = _by_metric(sorted(own, key=lambda row: (row["metric"], row["provider_rank"])))
    return found


def _by_metric(rows: Sequence[asyncpg.Record]) -> dict[str, MetricArrays]:
    """One user's rows, ordered by metric then provider, as time-ordered arrays per metric."""
    names: list[str] = []
    sizes: list[int] = []
    seconds: list[float] = []
    values: list[float] = []
    for row in rows:
        if not names or names[-1] != row["metric"]:
            names.append(row["metric"])
            sizes.append(0)
        sizes[-1] += len(row["seconds"])
        seconds += row["seconds"]
        values += row["values"]
    # One stable sort for the user: by metric, then time; readings of two providers at the same
    # time keep the rows' provider order, as latest's ORDER BY recorded_at, metric, provider does.
    times = np.array(seconds)
    order = np.lexsort((times, np.repeat(np.arange(len(names)), sizes)))
    times, readings = times[order], np.array(values)[order]
    bounds = np.cumsum([0, *sizes]).tolist()
    return {
        name: MetricArrays(times[start:end], readings[start:end])
        for name, start, end in zip(names, bounds[:-1], bounds[1:], strict=True)
    }
