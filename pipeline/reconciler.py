"""Re-enqueue work whose message was lost: Postgres rows are the truth, Redis only transport.

Every actor is idempotent, so re-sending a message that was merely slow costs a no-op claim.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from db import alerts, reports, sync_runs
from pipeline import actors
from pipeline.settings import PipelineSettings
from pipeline.triggers import enqueue

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reconciled:
    syncs: int
    analyses: int
    notifications: int
    reports: int = 0


async def reconcile(pool: asyncpg.Pool, settings: PipelineSettings) -> Reconciled:
    async with pool.acquire() as conn:
        runs = await sync_runs.needing_enqueue(conn, settings.reconcile_after, settings.stale_after)
        unanalysed = await sync_runs.unanalysed(conn, settings.reconcile_after)
        unrouted = await alerts.unrouted(conn, settings.reconcile_after)
        unbuilt = await reports.unbuilt(conn, settings.reconcile_after)
    for run_id in runs:
        enqueue(actors.sync, run_id)
    for run_id in unanalysed:
        enqueue(actors.analyse, run_id)
    for alert_id in unrouted:
        enqueue(actors.notify, alert_id)
    for report_id in unbuilt:
        enqueue(actors.report, report_id)
    found = Reconciled(len(runs), len(unanalysed), len(unrouted), len(unbuilt))
    if runs or unanalysed or unrouted or unbuilt:
        log.info("reconciler re-enqueued %s", found)
    return found
