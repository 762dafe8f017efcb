"""Re-enqueue work whose message was lost: Postgres rows are the truth, Redis only transport.

Every actor is idempotent, so re-sending a message that was merely slow costs a no-op claim.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from db import alerts, reports, sync_runs
from db import webhooks as webhook_rows
from pipeline import actors, webhooks
from pipeline.settings import PipelineSettings
from pipeline.triggers import enqueue

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reconciled:
    syncs: int
    analyses: int
    notifications: int
    reports: int = 0
    webhooks: int = 0
    escalations: int = 0


async def reconcile(pool: asyncpg.Pool, settings: PipelineSettings) -> Reconciled:
    async with pool.acquire() as conn:
        # Snoozes that ran out: open (or acknowledged) again, and escalation re-armed, due now.
        await alerts.wake_snoozed(conn, datetime.now(UTC))
        runs = await sync_runs.needing_enqueue(conn, settings.reconcile_after, settings.stale_after)
        unanalysed = await sync_runs.unanalysed(conn, settings.reconcile_after)
        unrouted = await alerts.unrouted(conn, settings.reconcile_after)
        unbuilt = await reports.unbuilt(conn, settings.reconcile_after)
        # Escalation timers whose delayed message was lost.  (Deferred and grouped alerts are
        # among ``unrouted`` once their route_after has passed.)
        escalations = await alerts.escalations_due(conn, settings.reconcile_after)
    for run_id in runs:
        enqueue(actors.sync, run_id)
    for first in range(0, len(unanalysed), actors.ANALYSE_BATCH):
        enqueue(actors.analyse_many, unanalysed[first : first + actors.ANALYSE_BATCH])
    for alert_id in unrouted:
        enqueue(actors.notify, alert_id)
    for report_id in unbuilt:
        enqueue(actors.report, report_id)
    for alert_id in escalations:
        enqueue(actors.escalate, alert_id)
    deliveries = await reconcile_webhooks(pool, settings)
    found = Reconciled(len(runs), len(unanalysed), len(unrouted), len(unbuilt), len(deliveries), len(escalations))
    if runs or unanalysed or unrouted or unbuilt or deliveries or escalations:
        log.info("reconciler re-enqueued %s", found)
    return found


async def reconcile_webhooks(pool: asyncpg.Pool, settings: PipelineSettings) -> list[int]:
    """Dispatch every undispatched event now (an event has no message of its own to wait for),
    and re-send deliveries whose message is overdue or whose worker died mid-attempt.  Returns
    the delivery ids enqueued."""
    fresh = await webhooks.dispatch(pool)
    async with pool.acquire() as conn:
        lost = await webhook_rows.lost(conn, settings.reconcile_after, settings.delivery_lease)
    for delivery_id in [*fresh, *lost]:
        enqueue(actors.deliver_webhook, delivery_id)
    return [*fresh, *lost]
