"""The scheduled jobs, one function each, and ``schedule``, the table that times them.

A job gets the slot it runs for rather than reading the clock, so a slot's work is the same
whenever it starts, and a test can run any slot.  Jobs only enqueue or run short SQL, except
``aggregate``, which refreshes the few users that analytics has not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from db import analytics, audit, exports, metrics
from db import cleanup as stored_cleanup
from db import reports as stored_reports
from db import schedule as stored_schedule
from pipeline import actors
from pipeline.analytics import aggregates
from pipeline.providers import PROVIDERS
from pipeline.providers.apple_health import AppleHealth
from pipeline.reconciler import reconcile as reconcile_work
from pipeline.scheduler import Job, cron, every, fires_at, previous_fire_time
from pipeline.settings import PipelineSettings
from pipeline.triggers import enqueue, sweep

log = logging.getLogger(__name__)

JobFunc = Callable[[asyncpg.Pool, PipelineSettings, datetime], Awaitable[None]]

RECONCILE_EVERY = timedelta(seconds=30)
# An unclaimed upload younger than this may still be arriving, or about to be recorded.
EXPORT_GRACE = timedelta(days=1)
WHOOP = ("whoop",)
CGM = ("dexcom", "libre")
# Sweeps take this lock, so two at one instant (the CGM sync and the interval sweep at :30)
# cannot both insert a run for the same connection: the second sees the first's open runs.
SWEEPS_LOCK = "sync-sweeps"
# The trailing window a rolling average needs behind the first day it is refreshed for.
ROLLING_DAYS = max(aggregates.ROLLING)


def schedule(pool: asyncpg.Pool, settings: PipelineSettings) -> list[Job]:
    """Every job and its trigger.  Names are the scheduler_slots keys: renaming one re-fires it."""

    def bind(func: JobFunc) -> Callable[[datetime], Awaitable[None]]:
        async def run(slot: datetime) -> None:
            await func(pool, settings, slot)

        return run

    return [
        Job("reconcile", every(RECONCILE_EVERY), bind(reconcile)),
        Job("sync-sweep", every(settings.sync_interval), bind(sync_sweep)),
        Job("daily-sync", cron(settings.daily_sync_cron), bind(daily_sync)),
        Job("whoop-sync", cron(settings.whoop_sync_cron), bind(whoop_sync)),
        Job("cgm-sync", cron(settings.cgm_sync_cron), bind(cgm_sync)),
        Job("aggregate", cron(settings.aggregate_cron), bind(aggregate)),
        Job("cleanup", cron(settings.cleanup_cron), bind(cleanup)),
        Job("reports", cron(settings.reports_cron), bind(reports)),
    ]


async def reconcile(pool: asyncpg.Pool, settings: PipelineSettings, slot: datetime) -> None:
    await reconcile_work(pool, settings)


async def sync_sweep(pool: asyncpg.Pool, settings: PipelineSettings, slot: datetime) -> None:
    """Every connection due by the interval."""
    if fires_at(cron(settings.daily_sync_cron), slot):
        # The daily sync covers every connection at this instant, with its longer lookback; a
        # sweep that won the race would leave those connections without it for a day.
        return
    # Due after half an interval, not a whole one: a run stamps last_synced_at when it runs,
    # after its slot (queue wait, jitter), so against the whole interval it would look not yet
    # due at the next slot and sync only every other one.  The jitter stays under the half.
    async with stored_schedule.exclusive(pool, SWEEPS_LOCK):
        await sweep(
            pool,
            "scheduled",
            slot - settings.sync_interval / 2,
            jitter=min(settings.sync_jitter, settings.sync_interval / 4),
        )


async def daily_sync(pool: asyncpg.Pool, settings: PipelineSettings, slot: datetime) -> None:
    """Every active connection not synced since the slot, re-reading SYNC_LOOKBACK_DAYS
    (the sync window of trigger 'daily'), spread over DAILY_SYNC_JITTER_MINUTES."""
    async with stored_schedule.exclusive(pool, SWEEPS_LOCK):
        await sweep(pool, "daily", slot, jitter=settings.daily_sync_jitter)


async def whoop_sync(pool: asyncpg.Pool, settings: PipelineSettings, slot: datetime) -> None:
    """WHOOP connections (recovery, strain, sleep, workouts), since their last sync.  WHOOP
    scores recovery and sleep when its wearer wakes, which in the Americas is after the 03:00
    UTC daily sync; this second pass picks those scores up the same day."""
    async with stored_schedule.exclusive(pool, SWEEPS_LOCK):
        await sweep(pool, "scheduled", slot, providers=WHOOP, jitter=settings.daily_sync_jitter)


async def cgm_sync(pool: asyncpg.Pool, settings: PipelineSettings, slot: datetime) -> None:
    """Dexcom and Libre connections, since their last sync."""
    async with stored_schedule.exclusive(pool, SWEEPS_LOCK):
        await sweep(pool, "scheduled", slot, providers=CGM, jitter=settings.sync_jitter)


async def aggregate(pool: asyncpg.Pool, settings: PipelineSettings, slot: datetime) -> None:
    """Summarise the day's daily sync, then refresh the daily stats of every user with recent
    readings that no analysis has covered since that sync began."""
    daily_slot = previous_fire_time(cron(settings.daily_sync_cron), slot) or slot - timedelta(days=1)
    async with pool.acquire() as conn:
        summary = await stored_schedule.daily_summary(conn, daily_slot)
        await audit.record(
            conn,
            tenant_id=None,
            actor="clock",
            action="sync.daily_summary",
            subject_type="schedule",
            subject_id=None,
            details={"since": daily_slot.isoformat(), **asdict(summary)},
        )
        users = await stored_schedule.users_to_aggregate(
            conn, slot - timedelta(days=settings.daily_lookback_days), daily_slot
        )
    log.info(
        "daily sync since %s: %d run(s), %d user(s) synced, %d row(s) stored, %d failed, %d skipped, %d unfinished",
        daily_slot.isoformat(), summary.runs, summary.users_synced, summary.rows_written, summary.failed,
        summary.skipped, summary.unfinished,
    )  # fmt: skip
    for user_id, timezone in users:
        await refresh_daily_stats(pool, user_id, timezone, slot, settings.daily_lookback_days)
    if users:
        log.info("aggregate: refreshed daily stats of %d user(s) without a fresh analysis", len(users))


async def refresh_daily_stats(pool: asyncpg.Pool, user_id: int, timezone: str, now: datetime, days: int) -> None:
    """Recompute the user's daily stats for the last ``days`` local days, as analytics does."""
    first_day = now.astimezone(ZoneInfo(timezone)).date() - timedelta(days=days)
    async with pool.acquire() as conn:
        readings = await metrics.latest(conn, user_id, now - timedelta(days=days + ROLLING_DAYS + 1))
    if not readings:
        return
    # numpy work off the event loop: the clock's other jobs keep their times.
    daily = await asyncio.to_thread(aggregates.daily, readings, timezone)
    rows = [(s.metric, s.day, s.avg, s.min, s.max, s.count, s.avg_7d, s.avg_30d) for s in daily.stats_since(first_day)]
    async with pool.acquire() as conn:
        await analytics.upsert_daily_stats(conn, user_id, rows)


async def cleanup(pool: asyncpg.Pool, settings: PipelineSettings, slot: datetime) -> None:
    """Readings older than RETENTION_DAYS, readings of disconnected devices, old slots, and
    uploaded exports no connection reads any more."""
    before = slot - timedelta(days=settings.retention_days)
    async with pool.acquire() as conn:
        old = await stored_cleanup.old_readings(conn, before)
        orphaned = await stored_cleanup.orphaned_readings(conn)
        slots = await stored_cleanup.old_slots(conn, before)
    log.info("cleanup: %d old reading(s), %d orphaned reading(s), %d old slot(s) deleted", old, orphaned, slots)
    files = await forget_exports(pool, slot - EXPORT_GRACE)
    if files:
        log.info("cleanup: %d uploaded export(s) no connection reads deleted", files)


async def forget_exports(pool: asyncpg.Pool, before: datetime) -> int:
    """Delete the upload directory's files, written before ``before``, that no connection
    reads: a revoked connection's export holds health data nobody may use.  Returns how many."""
    provider = PROVIDERS.get(AppleHealth.id)
    if not isinstance(provider, AppleHealth):
        return 0
    async with pool.acquire() as conn:
        named = await exports.named(conn, AppleHealth.id)
    stale = provider.unclaimed(named, before)
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


async def reports(pool: asyncpg.Pool, settings: PipelineSettings, slot: datetime) -> None:
    """A report on the seven days before the slot's (UTC) day, for every user with readings."""
    end = slot.date() - timedelta(days=1)
    async with pool.acquire() as conn:
        created = await stored_reports.create_pending(conn, end - timedelta(days=6), end)
        # Older pending ones too: their message was lost, and nothing else re-sends it.
        waiting = await stored_reports.pending(conn)
    for report_id in waiting:
        enqueue(actors.report, report_id)
    log.info("reports for %s: %d created, %d enqueued", end.isoformat(), len(created), len(waiting))
