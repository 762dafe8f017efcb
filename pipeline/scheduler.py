"""Scheduled jobs, on APScheduler: the sync sweep, the daily lookback sync, the reconciler.

Run by ``carebeacon clock`` (one per deployment) or inside ``carebeacon up``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from pipeline import runtime
from pipeline.reconciler import reconcile
from pipeline.triggers import sweep

RECONCILE_EVERY_SECONDS = 30


async def sync_sweep() -> None:
    rt = runtime.current()
    await sweep(await runtime.pool(), "scheduled", datetime.now(UTC) - rt.settings.sync_interval)


async def daily_sync() -> None:
    # Every active connection, whenever it last synced: the lookback re-reads late corrections.
    await sweep(await runtime.pool(), "daily", datetime.now(UTC))


async def reconcile_job() -> None:
    await reconcile(await runtime.pool(), runtime.current().settings)


def build_scheduler() -> AsyncIOScheduler:
    """The jobs, not yet started; start it on a running event loop."""
    settings = runtime.current().settings
    scheduler = AsyncIOScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1})
    # The sweep also runs at start, so connections that fell due while nothing ran sync now.
    scheduler.add_job(
        sync_sweep,
        IntervalTrigger(seconds=settings.sync_interval.total_seconds()),
        id="sync-sweep",
        next_run_time=datetime.now(UTC),
    )
    scheduler.add_job(daily_sync, CronTrigger(hour=3, minute=0, timezone=UTC), id="daily-sync")
    scheduler.add_job(reconcile_job, IntervalTrigger(seconds=RECONCILE_EVERY_SECONDS), id="reconcile")
    return scheduler
