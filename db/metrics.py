"""Readings: one row per (user, provider, metric, recorded_at), written idempotently."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

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


# One statement per batch (arrays through unnest): one round trip, and a changed value
# updates while an unchanged one is left alone, so a replayed sync writes nothing.
_UPSERT = """
INSERT INTO metrics (user_id, provider, metric, recorded_at, value, unit, connection_id)
SELECT $1, $2, r.metric, r.recorded_at, r.value, r.unit, $3
  FROM unnest($4::text[], $5::timestamptz[], $6::float8[], $7::text[]) AS r(metric, recorded_at, value, unit)
ON CONFLICT (user_id, provider, metric, recorded_at) DO UPDATE
   SET value = excluded.value, unit = excluded.unit, connection_id = excluded.connection_id, updated_at = now()
 WHERE metrics.value IS DISTINCT FROM excluded.value OR metrics.unit IS DISTINCT FROM excluded.unit
RETURNING (xmax = 0) AS inserted
"""


async def upsert(
    conn: asyncpg.Connection,
    user_id: int,
    provider: str,
    connection_id: int | None,
    readings: Sequence[Reading],
) -> UpsertCounts:
    """Write one batch.  Within a batch the last reading for a key wins (Postgres refuses two in one statement)."""
    latest = {(r.metric, r.recorded_at): r for r in readings}
    if not latest:
        return UpsertCounts()
    batch = sorted(latest.values(), key=lambda r: (r.metric, r.recorded_at))
    rows = await conn.fetch(
        _UPSERT,
        user_id,
        provider,
        connection_id,
        [r.metric for r in batch],
        [r.recorded_at for r in batch],
        [r.value for r in batch],
        [r.unit for r in batch],
    )
    # xmax is 0 only on a freshly inserted tuple: the usual way to tell inserts from updates.
    inserted = sum(1 for row in rows if row["inserted"])
    # Unchanged includes readings superseded inside the batch, so every reading is counted once.
    return UpsertCounts(inserted, len(rows) - inserted, len(readings) - len(rows))


async def latest(conn: asyncpg.Connection, user_id: int, since: datetime) -> list[Reading]:
    """Readings recorded at or after ``since``, from every provider, ordered by time then metric."""
    rows = await conn.fetch(
        "SELECT metric, recorded_at, value, unit FROM metrics WHERE user_id = $1 AND recorded_at >= $2"
        " ORDER BY recorded_at, metric, provider",
        user_id,
        since,
    )
    return [Reading(**dict(r)) for r in rows]
