"""The session upsert on a real, migrated database: idempotence, exact counts, real durations."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from db import connections, sessions, tenants
from db.metrics import UpsertCounts
from db.sealing import Keyring
from db.sessions import Session

START = datetime(2026, 1, 1, 23, 0, 30, tzinfo=UTC)
PROVIDER = "simulator"
NIGHTS = 20


def nights(count: int = NIGHTS) -> list[Session]:
    """``count`` nights of 6 h and more, each 5 min longer; the last has half a second over."""
    return [
        Session(
            "sleep",
            START + timedelta(days=i),
            START + timedelta(days=i, hours=6, minutes=5 * i, seconds=30.5 if i == count - 1 else 0),
            None,
            {"deep_min": 60 + i, "rem_min": 90, "light_min": 200, "awake_min": 15},
        )
        for i in range(count)
    ]


def workouts(count: int = 5) -> list[Session]:
    return [
        Session(
            "workout",
            START + timedelta(days=i, hours=-5),
            START + timedelta(days=i, hours=-5, minutes=20 + 10 * i),
            "running",
            {"energy_kcal": 300.0, "distance_m": 5000, "avg_heart_rate_bpm": 140, "max_heart_rate_bpm": 171},
        )
        for i in range(count)
    ]


@pytest.fixture
async def user_id(conn: asyncpg.Connection) -> int:
    tenant_id = await tenants.ensure_tenant(conn, "sessions", "Sessions")
    return await tenants.ensure_user(conn, tenant_id, "u1", "User One")


async def upsert(conn: asyncpg.Connection, user_id: int, batch: list[Session]) -> UpsertCounts:
    return await sessions.upsert(conn, user_id, PROVIDER, None, batch)


async def stored(conn: asyncpg.Connection, user_id: int) -> list[Session]:
    rows = await conn.fetch(
        "SELECT kind, started_at, ended_at, activity, details FROM sessions WHERE user_id = $1"
        " ORDER BY kind, started_at",
        user_id,
    )
    return [Session(**dict(r)) for r in rows]


async def versions(conn: asyncpg.Connection, user_id: int) -> dict[tuple[str, datetime], str]:
    """Each row's xmin: it changes only when the row is written."""
    rows = await conn.fetch("SELECT kind, started_at, xmin::text AS v FROM sessions WHERE user_id = $1", user_id)
    return {(r["kind"], r["started_at"]): r["v"] for r in rows}


async def test_a_first_load_inserts_every_session_with_its_real_duration(
    conn: asyncpg.Connection, user_id: int
) -> None:
    batch = nights() + workouts()

    assert await upsert(conn, user_id, batch) == UpsertCounts(inserted=len(batch))

    assert await stored(conn, user_id) == sorted(batch, key=lambda s: (s.kind, s.started_at))
    durations = await conn.fetch("SELECT started_at, duration_s FROM sessions WHERE user_id = $1", user_id)
    expected = {s.started_at: int(s.duration.total_seconds()) for s in batch}
    assert {r["started_at"]: r["duration_s"] for r in durations} == expected
    assert min(expected.values()) == 20 * 60 and expected[batch[NIGHTS - 1].started_at] == 6 * 3600 + 95 * 60 + 30


async def test_a_replay_writes_nothing_and_counts_every_session_unchanged(
    conn: asyncpg.Connection, user_id: int
) -> None:
    batch = nights() + workouts()
    await upsert(conn, user_id, batch)
    before = await versions(conn, user_id)
    # The same details in another key order, and a whole number sent as a float: no change.
    reordered = [replace(s, details={k: float(v) for k, v in reversed(list(s.details.items()))}) for s in batch]

    assert await upsert(conn, user_id, batch) == UpsertCounts(unchanged=len(batch))
    assert await upsert(conn, user_id, reordered) == UpsertCounts(unchanged=len(batch))
    assert await versions(conn, user_id) == before


async def test_a_changed_end_or_details_updates_exactly_those_sessions(conn: asyncpg.Connection, user_id: int) -> None:
    batch = nights()
    await upsert(conn, user_id, batch)
    before = await versions(conn, user_id)
    changed = list(batch)
    changed[3] = replace(batch[3], ended_at=batch[3].ended_at + timedelta(minutes=40))  # a later wake-up
    changed[7] = replace(batch[7], details={**batch[7].details, "awake_min": 25})
    changed[9] = replace(batch[9], activity="nap")

    assert await upsert(conn, user_id, changed) == UpsertCounts(updated=3, unchanged=NIGHTS - 3)

    assert await stored(conn, user_id) == changed
    after = await versions(conn, user_id)
    assert {key for key in after if after[key] != before[key]} == {("sleep", batch[i].started_at) for i in (3, 7, 9)}
    longer = await conn.fetchval(
        "SELECT duration_s FROM sessions WHERE user_id = $1 AND started_at = $2", user_id, batch[3].started_at
    )
    assert longer == batch[3].duration.total_seconds() + 40 * 60


async def test_a_key_sent_twice_in_one_batch_keeps_the_last_and_counts_the_other_unchanged(
    conn: asyncpg.Connection, user_id: int
) -> None:
    first, second = nights(2)
    later = replace(first, ended_at=first.ended_at + timedelta(hours=1))

    assert await upsert(conn, user_id, [first, second, later]) == UpsertCounts(inserted=2, unchanged=1)
    assert await stored(conn, user_id) == [later, second]


async def test_the_database_refuses_a_session_that_does_not_end_after_it_starts(
    conn: asyncpg.Connection, user_id: int
) -> None:
    [night] = nights(1)

    # Half a second ends after the start, but would store duration_s = 0.
    for lasting in (timedelta(0), timedelta(hours=-1), timedelta(seconds=0.5)):
        with pytest.raises(asyncpg.CheckViolationError):
            await upsert(conn, user_id, [replace(night, ended_at=night.started_at + lasting)])
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute(
            "INSERT INTO sessions (user_id, provider, kind, started_at, ended_at) VALUES ($1, 'x', 'sleep', $2, $2)",
            user_id,
            night.started_at,
        )
    with pytest.raises(asyncpg.CheckViolationError):
        await upsert(conn, user_id, [replace(night, kind="nap")])
    assert await stored(conn, user_id) == []


async def test_deleting_a_user_deletes_their_sessions_and_a_connection_only_unlinks_them(
    conn: asyncpg.Connection, user_id: int, keyring: Keyring
) -> None:
    connection_id = await connections.upsert(conn, keyring, user_id=user_id, provider=PROVIDER, tokens={"a": "b"})
    await sessions.upsert(conn, user_id, PROVIDER, connection_id, nights(3))

    await conn.execute("DELETE FROM connections WHERE id = $1", connection_id)
    assert await conn.fetchval("SELECT count(*) FROM sessions WHERE connection_id IS NULL") == 3
    await conn.execute("DELETE FROM users WHERE id = $1", user_id)
    assert await conn.fetchval("SELECT count(*) FROM sessions") == 0
