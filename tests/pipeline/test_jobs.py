"""The scheduled jobs on real Postgres (and, for reports, a real Dramatiq worker), each run for a
slot given by hand: sweeps pick their providers and spread their runs, the aggregate job
summarises the daily sync and refreshes stats, cleanup deletes exactly what it should, and
reports are built once per user and week."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta

import asyncpg
import dramatiq
import pytest

from db import cleanup, tenants
from db import reports as stored_reports
from pipeline import jobs, runtime
from pipeline.settings import PipelineSettings
from tests.helpers import eventually

SETTINGS = PipelineSettings(redis_url=None)
# A Sunday cleanup slot, and the readings' retention boundary 90 days before it.
SUNDAY = datetime(2030, 1, 6, 4, tzinfo=UTC)
RETAINED_FROM = SUNDAY - timedelta(days=90)


async def _patient(conn: asyncpg.Connection, tenant: str, timezone: str = "UTC") -> int:
    tenant_id = await tenants.ensure_tenant(conn, tenant, tenant.title())
    return await tenants.ensure_user(conn, tenant_id, "p1", "Pat One", timezone)


async def _connection(
    conn: asyncpg.Connection,
    user_id: int,
    provider: str,
    *,
    status: str = "active",
    last_synced_at: datetime | None = None,
) -> int:
    connection_id: int = await conn.fetchval(
        "INSERT INTO connections (user_id, provider, status, last_synced_at) VALUES ($1, $2, $3, $4) RETURNING id",
        user_id,
        provider,
        status,
        last_synced_at,
    )
    return connection_id


async def _readings(
    conn: asyncpg.Connection, user_id: int, provider: str, connection_id: int, rows: list[tuple[str, datetime, float]]
) -> None:
    await conn.executemany(
        "INSERT INTO metrics (user_id, provider, metric, recorded_at, value, unit, connection_id)"
        " VALUES ($1, $2, $3, $4, $5, 'x', $6)",
        [(user_id, provider, metric, at, value, connection_id) for metric, at, value in rows],
    )


async def _runs_of(pool: asyncpg.Pool, user_ids: list[int]) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT r.*, c.provider FROM sync_runs r JOIN connections c ON c.id = r.connection_id"
        " WHERE c.user_id = ANY($1) ORDER BY c.provider",
        user_ids,
    )
    return rows


async def _retire(pool: asyncpg.Pool, user_ids: list[int]) -> None:
    """Take a sweep test's connections out of later sweeps: they have no tokens to sync with."""
    await pool.execute("UPDATE connections SET status = 'inactive' WHERE user_id = ANY($1)", user_ids)


# --- cleanup -------------------------------------------------------------------------------------


async def test_cleanup_deletes_old_and_orphaned_readings_and_keeps_daily_stats_and_recent_readings(
    fresh_pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    async with fresh_pool.acquire() as conn:
        user_id = await _patient(conn, "tidy")
        active = await _connection(conn, user_id, "simulator")
        revoked = await _connection(conn, user_id, "oura", status="revoked")
        deleted = await _connection(conn, user_id, "whoop")
        old = [("heart_rate", RETAINED_FROM - timedelta(hours=hours), 60.0) for hours in (1, 24, 48)]
        recent = [("heart_rate", RETAINED_FROM + timedelta(hours=1), 61.0), ("heart_rate", SUNDAY, 62.0)]
        await _readings(conn, user_id, "simulator", active, old + recent)
        await _readings(conn, user_id, "oura", revoked, [("steps", SUNDAY - timedelta(days=2), 100.0)])
        await _readings(conn, user_id, "whoop", deleted, [("hrv", SUNDAY - timedelta(days=3), 40.0)])
        await conn.execute("DELETE FROM connections WHERE id = $1", deleted)  # its readings' connection_id → NULL
        await conn.execute(
            "INSERT INTO daily_stats VALUES ($1, 'heart_rate', $2, 60, 60, 60, 3, 60, 60)",
            user_id,
            RETAINED_FROM.date() - timedelta(days=1),
        )
        slots = [("a", RETAINED_FROM - timedelta(days=2)), ("a", RETAINED_FROM - timedelta(days=1)), ("a", SUNDAY)]
        slots += [("b", RETAINED_FROM - timedelta(days=30))]  # b's only slot: its latest, so it stays
        await conn.executemany(
            "INSERT INTO scheduler_slots (job, slot, claimed_by, started_at) VALUES ($1, $2, 'test', $2)", slots
        )

    with caplog.at_level(logging.INFO, logger="pipeline.jobs"):
        await jobs.cleanup(fresh_pool, SETTINGS, SUNDAY)

    remaining = await fresh_pool.fetch("SELECT provider, recorded_at, value FROM metrics ORDER BY recorded_at")
    assert [tuple(r) for r in remaining] == [
        ("simulator", RETAINED_FROM + timedelta(hours=1), 61.0),
        ("simulator", SUNDAY, 62.0),
    ]
    assert await fresh_pool.fetchval("SELECT count(*) FROM daily_stats") == 1
    kept_slots = await fresh_pool.fetch("SELECT job, slot FROM scheduler_slots ORDER BY job, slot")
    assert [tuple(r) for r in kept_slots] == [("a", SUNDAY), ("b", RETAINED_FROM - timedelta(days=30))]
    assert "cleanup: 3 old reading(s), 2 orphaned reading(s), 2 old slot(s) deleted" in caplog.messages


async def test_cleanup_deletes_in_batches_until_nothing_is_left(fresh_pool: asyncpg.Pool) -> None:
    async with fresh_pool.acquire() as conn:
        user_id = await _patient(conn, "batches")
        active = await _connection(conn, user_id, "simulator")
        gone = await _connection(conn, user_id, "whoop")
        old = [("steps", RETAINED_FROM - timedelta(minutes=minutes), 1.0) for minutes in range(1, 8)]
        await _readings(conn, user_id, "simulator", active, old + [("steps", SUNDAY, 2.0)])
        await _readings(conn, user_id, "whoop", gone, [("hrv", SUNDAY - timedelta(hours=h), 3.0) for h in range(5)])
        await conn.execute("DELETE FROM connections WHERE id = $1", gone)

        assert await cleanup.old_readings(conn, RETAINED_FROM, batch=2) == 7
        assert await cleanup.orphaned_readings(conn, batch=2) == 5
        assert await cleanup.old_readings(conn, RETAINED_FROM, batch=2) == 0
        assert await conn.fetchval("SELECT count(*) FROM metrics") == 1


# --- aggregate -----------------------------------------------------------------------------------

AGGREGATE = datetime(2030, 1, 10, 5, tzinfo=UTC)
DAILY = datetime(2030, 1, 10, 3, tzinfo=UTC)


async def test_aggregate_summarises_the_daily_sync_and_refreshes_stats_analytics_did_not(
    fresh_pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    async with fresh_pool.acquire() as conn:
        unsynced = await _patient(conn, "unsynced")  # readings, but no sync analysed today
        analysed = await _patient(conn, "analysed")  # analytics already refreshed it after 03:00
        dormant = await _patient(conn, "dormant")  # nothing within the lookback
        first = await _connection(conn, unsynced, "simulator")
        second = await _connection(conn, analysed, "simulator")
        third = await _connection(conn, dormant, "simulator")
        await _readings(
            conn,
            unsynced,
            "simulator",
            first,
            [
                ("heart_rate", datetime(2029, 12, 21, 12, tzinfo=UTC), 50.0),  # only in the 30-day average
                ("heart_rate", datetime(2030, 1, 8, 8, tzinfo=UTC), 60.0),
                ("heart_rate", datetime(2030, 1, 8, 20, tzinfo=UTC), 70.0),
                ("heart_rate", datetime(2030, 1, 9, 8, tzinfo=UTC), 80.0),
            ],
        )
        await _readings(conn, analysed, "simulator", second, [("heart_rate", datetime(2030, 1, 9, tzinfo=UTC), 1.0)])
        await _readings(conn, dormant, "simulator", third, [("heart_rate", datetime(2029, 12, 1, tzinfo=UTC), 1.0)])
        runs = [
            # connection, trigger, status, rows written, error, created, analysed
            (second, "daily", "completed", 10, None, DAILY + timedelta(minutes=1), DAILY + timedelta(minutes=9)),
            (first, "daily", "failed", 0, "TransientSyncError: 503", DAILY + timedelta(minutes=2), None),
            (first, "daily", "failed", 0, "TransientSyncError: 503", DAILY + timedelta(minutes=3), None),
            (third, "daily", "skipped", 0, "connection is revoked", DAILY + timedelta(minutes=4), None),
            (second, "scheduled", "completed", 99, None, DAILY + timedelta(minutes=30), None),  # not the daily sync
            (second, "daily", "completed", 99, None, DAILY - timedelta(days=1), None),  # yesterday's
        ]
        await conn.executemany(
            "INSERT INTO sync_runs (connection_id, trigger, status, rows_written, error, created_at, analysed_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            runs,
        )

    with caplog.at_level(logging.INFO, logger="pipeline.jobs"):
        await jobs.aggregate(fresh_pool, SETTINGS, AGGREGATE)

    event = await fresh_pool.fetchrow("SELECT * FROM audit_events WHERE action = 'sync.daily_summary'")
    assert (event["actor"], event["subject_type"], event["tenant_id"]) == ("clock", "schedule", None)
    assert event["details"] == {
        "since": "2030-01-10T03:00:00+00:00",
        "runs": 4,
        "users_synced": 1,
        "rows_written": 10,
        "failed": 2,
        "skipped": 1,
        "unfinished": 0,
        "errors": {"TransientSyncError: 503": 2},
    }
    assert (
        "daily sync since 2030-01-10T03:00:00+00:00: 4 run(s), 1 user(s) synced, 10 row(s) stored, 2 failed,"
        " 1 skipped, 0 unfinished" in caplog.messages
    )
    stats = await fresh_pool.fetch(
        "SELECT user_id, day, avg, min, max, count, avg_7d, avg_30d FROM daily_stats ORDER BY user_id, day"
    )
    assert [tuple(s) for s in stats] == [
        (unsynced, date(2030, 1, 8), 65.0, 60.0, 70.0, 2, 65.0, 57.5),
        (unsynced, date(2030, 1, 9), 80.0, 80.0, 80.0, 1, 72.5, 65.0),
    ]


# --- sweeps --------------------------------------------------------------------------------------
# On the session's database, so their messages reach runs that exist there.  A daily sweep
# covers every due connection in it, other tests' too: their runs are real and harmless.


async def test_whoop_and_cgm_syncs_sweep_only_their_providers_spread_over_the_jitter(pool: asyncpg.Pool) -> None:
    settings = replace(runtime.current().settings, daily_sync_jitter=timedelta(seconds=60))
    slot = datetime.now(UTC)
    async with pool.acquire() as conn:
        wearer = await _patient(conn, "sweep-whoop")
        diabetic = await _patient(conn, "sweep-cgm")
        for provider in ("whoop", "simulator"):
            await _connection(conn, wearer, provider)
        for provider in ("dexcom", "libre", "simulator"):
            await _connection(conn, diabetic, provider)

    await jobs.whoop_sync(pool, settings, slot)
    assert [(r["provider"], r["trigger"]) for r in await _runs_of(pool, [wearer, diabetic])] == [("whoop", "scheduled")]
    await jobs.cgm_sync(pool, settings, slot)
    runs = await _runs_of(pool, [wearer, diabetic])

    assert [r["provider"] for r in runs] == ["dexcom", "libre", "whoop"]
    jitter = {"whoop": settings.daily_sync_jitter, "dexcom": settings.sync_jitter, "libre": settings.sync_jitter}
    for run in runs:
        assert timedelta(0) <= run["not_before"] - run["created_at"] < jitter[run["provider"]]
    await _retire(pool, [wearer, diabetic])


async def test_the_daily_sync_takes_every_connection_not_synced_since_its_slot(pool: asyncpg.Pool) -> None:
    slot = datetime.now(UTC)
    async with pool.acquire() as conn:
        user_id = await _patient(conn, "sweep-daily")
        await _connection(conn, user_id, "simulator")
        await _connection(conn, user_id, "oura", last_synced_at=slot + timedelta(minutes=1))
        await _connection(conn, user_id, "fitbit", status="revoked")

    await jobs.daily_sync(pool, runtime.current().settings, slot)

    assert [(r["provider"], r["trigger"]) for r in await _runs_of(pool, [user_id])] == [("simulator", "daily")]
    await _retire(pool, [user_id])


async def test_the_interval_sweep_leaves_the_daily_slot_to_the_daily_sync(pool: asyncpg.Pool) -> None:
    settings = runtime.current().settings
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        user_id = await _patient(conn, "sweep-interval")
        # Due at half an interval: a run stamps last_synced_at after its slot.
        await _connection(conn, user_id, "simulator", last_synced_at=now - settings.sync_interval * 0.6)
        await _connection(conn, user_id, "oura", last_synced_at=now - settings.sync_interval * 0.4)

    await jobs.sync_sweep(pool, settings, datetime.combine(now.date(), time(3), UTC))
    assert await _runs_of(pool, [user_id]) == []
    await jobs.sync_sweep(pool, settings, now)
    assert [(r["provider"], r["trigger"]) for r in await _runs_of(pool, [user_id])] == [("simulator", "scheduled")]
    await _retire(pool, [user_id])


# --- reports -------------------------------------------------------------------------------------


async def test_the_reports_job_builds_one_report_per_user_and_week_once(
    pool: asyncpg.Pool, worker: dramatiq.Worker
) -> None:
    today = datetime.now(UTC).date()
    slot = datetime.combine(today + timedelta(days=1), time(6), UTC)
    start, end = today - timedelta(days=6), today
    async with pool.acquire() as conn:
        user_id = await _patient(conn, "weekly")
        quiet = await _patient(conn, "weekly-quiet")  # no readings this week: no report
        connection_id = await _connection(conn, user_id, "simulator")
        await _readings(conn, user_id, "simulator", connection_id, [("heart_rate", datetime.now(UTC), 60.0)])
        await conn.executemany(
            "INSERT INTO daily_stats VALUES ($1, 'heart_rate', $2, $3, $4, $5, $6, 0, 0)",
            [
                (user_id, today - timedelta(days=1), 60.0, 55.0, 65.0, 2),
                (user_id, today - timedelta(days=2), 70.0, 70.0, 70.0, 1),
                (user_id, start - timedelta(days=1), 100.0, 100.0, 100.0, 9),  # the week before
            ],
        )
        await conn.executemany(
            "INSERT INTO health_scores (user_id, day, domain, score, contributors) VALUES ($1, $2, $3, $4, '{}')",
            [
                (user_id, today - timedelta(days=2), "cardio", 80.0),
                (user_id, today - timedelta(days=1), "cardio", 70.0),
                (user_id, today - timedelta(days=3), "sleep", 50.0),
                (user_id, today - timedelta(days=10), "sleep", 90.0),
            ],
        )

    await jobs.reports(pool, SETTINGS, slot)

    async def ready() -> asyncpg.Record | None:
        return await pool.fetchrow("SELECT * FROM reports WHERE user_id = $1 AND status = 'ready'", user_id)

    report = await eventually(ready, what="the report")
    assert (report["period_start"], report["period_end"]) == (start, end)
    assert report["content"] == {
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "metrics": {"heart_rate": {"avg": 63.3333, "min": 55.0, "max": 70.0, "readings": 3, "days": 2}},
        "scores": {
            "cardio": {"day": (today - timedelta(days=1)).isoformat(), "score": 70.0},
            "sleep": {"day": (today - timedelta(days=3)).isoformat(), "score": 50.0},
        },
    }

    # Again, and a replayed build: still one report, untouched.
    await jobs.reports(pool, SETTINGS, slot)
    async with pool.acquire() as conn:
        assert await stored_reports.build(conn, report["id"]) is False
    again = await pool.fetch("SELECT * FROM reports WHERE user_id = ANY($1)", [user_id, quiet])
    assert [dict(r) for r in again] == [dict(report)]
