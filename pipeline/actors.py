"""The Dramatiq actors.  Thin: take ids, call one async function, record the outcome.

Actors are declared on ``runtime.DECLARED`` and moved onto the real broker by
``runtime.start()``.  Each actor states its retry policy; the defaults (20 retries over
~35 days) fit none of them.
"""

from __future__ import annotations

import logging

import dramatiq
from dramatiq.middleware import CurrentMessage

from channels import PermanentDeliveryError, TransientDeliveryError, route_alert
from db import sync_runs
from db.sealing import SealError
from pipeline import runtime
from pipeline.analytics import analyse_run
from pipeline.errors import PermanentSyncError, TransientSyncError
from pipeline.sync import run_sync

log = logging.getLogger(__name__)
_broker = runtime.DECLARED

SYNC_RETRIES = 5


@dramatiq.actor(
    broker=_broker,
    queue_name="sync",
    max_retries=SYNC_RETRIES,
    min_backoff=5_000,
    max_backoff=600_000,
    time_limit=15 * 60_000,
    throws=(PermanentSyncError, SealError),
)
async def sync(run_id: int) -> None:
    rt = runtime.current()
    pool = await runtime.pool()
    try:
        outcome = await run_sync(pool, rt.keyring, rt.settings, run_id)
    except (PermanentSyncError, SealError) as exc:
        # A token that will not open is a key problem (see `carebeacon doctor`), not a flaky peer.
        async with pool.acquire() as conn:
            await sync_runs.finish(conn, run_id, "failed", str(exc))
        log.warning("sync run %s failed permanently: %s", run_id, exc)
        raise
    except Exception as exc:
        # Hand the run back as pending so a retry (or the reconciler) can claim it; on the
        # last attempt, record the failure instead.
        last = _retries() >= SYNC_RETRIES
        async with pool.acquire() as conn:
            await sync_runs.finish(conn, run_id, "failed" if last else "pending", f"{type(exc).__name__}: {exc}")
        log.warning("sync run %s attempt failed (%s): %s", run_id, "final" if last else "will retry", exc)
        if isinstance(exc, TransientSyncError) and exc.retry_after and not last:
            raise dramatiq.Retry(delay=int(exc.retry_after * 1000)) from exc
        raise
    if outcome is not None and outcome.status == "completed":
        analyse.send(run_id)


@dramatiq.actor(broker=_broker, queue_name="analytics", max_retries=3, min_backoff=5_000, max_backoff=120_000)
async def analyse(run_id: int) -> None:
    outcome = await analyse_run(await runtime.pool(), run_id)
    for alert_id in outcome.new_alert_ids if outcome else ():
        notify.send(alert_id)


@dramatiq.actor(
    broker=_broker,
    queue_name="notifications",
    max_retries=8,
    min_backoff=2_000,
    max_backoff=300_000,
    throws=(PermanentDeliveryError,),
)
async def notify(alert_id: int) -> None:
    try:
        await route_alert(await runtime.pool(), runtime.current().keyring, alert_id)
    except TransientDeliveryError as exc:
        # Honour the peer's Retry-After when it gave one; otherwise Dramatiq's backoff applies.
        if exc.retry_after:
            raise dramatiq.Retry(delay=int(exc.retry_after * 1000)) from exc
        raise


def _retries() -> int:
    message = CurrentMessage.get_current_message()
    return int(message.options.get("retries", 0)) if message is not None else 0


runtime.bind_actors()
