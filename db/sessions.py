"""Sessions: sleep and workouts, one row per (user, provider, kind, started_at), written idempotently.

A session is an interval, stored with its real duration (``duration_s`` is derived from the two
ends), never as a reading of value 0.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg

from db.metrics import UpsertCounts


@dataclass(frozen=True, slots=True)
class Session:
    """One sleep or workout.  ``details`` holds summaries only, in the units its keys name."""

    kind: str
    started_at: datetime
    ended_at: datetime
    activity: str | None = None
    details: Mapping[str, float] = field(default_factory=dict)

    @property
    def duration(self) -> timedelta:
        return self.ended_at - self.started_at


# Like metrics: a changed end, activity or details updates, an unchanged session is left alone
# (so a replayed sync writes nothing), and xmax is 0 only on a freshly inserted tuple.  jsonb
# compares by value, so key order and 30 against 30.0 do not count as changes.  Details travel
# as text and are cast here, whatever codec the connection has for jsonb.
_UPSERT = """
INSERT INTO sessions (user_id, provider, kind, started_at, ended_at, activity, details, connection_id)
SELECT $1, $2, s.kind, s.started_at, s.ended_at, s.activity, s.details::jsonb, $3
  FROM unnest($4::text[], $5::timestamptz[], $6::timestamptz[], $7::text[], $8::text[])
       AS s(kind, started_at, ended_at, activity, details)
ON CONFLICT (user_id, provider, kind, started_at) DO UPDATE
   SET ended_at = excluded.ended_at, activity = excluded.activity, details = excluded.details,
       connection_id = excluded.connection_id, updated_at = now()
 WHERE (sessions.ended_at, sessions.activity, sessions.details)
       IS DISTINCT FROM (excluded.ended_at, excluded.activity, excluded.details)
RETURNING (xmax = 0) AS inserted
"""


async def upsert(
    conn: asyncpg.Connection,
    user_id: int,
    provider: str,
    connection_id: int | None,
    sessions: Sequence[Session],
) -> UpsertCounts:
    """Write one user's batch in one statement; within it the last session for a key wins.

    Counts every session once: one superseded inside the batch counts as unchanged.  Raises
    asyncpg.CheckViolationError for a session that does not end after it starts (callers
    validate first: pipeline.vocabulary.session_problem).
    """
    latest = {(s.kind, s.started_at): s for s in sessions}
    if not latest:
        return UpsertCounts()
    # Sorted, so two writers of overlapping keys take their row locks in the same order.
    batch = sorted(latest.values(), key=lambda s: (s.kind, s.started_at))
    returned = await conn.fetch(
        _UPSERT,
        user_id,
        provider,
        connection_id,
        [s.kind for s in batch],
        [s.started_at for s in batch],
        [s.ended_at for s in batch],
        [s.activity for s in batch],
        [json.dumps(dict(s.details), allow_nan=False) for s in batch],
    )
    inserted, written = sum(1 for row in returned if row["inserted"]), len(returned)
    return UpsertCounts(inserted, written - inserted, len(sessions) - written)
