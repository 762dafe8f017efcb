"""The Dramatiq actors.  Thin: take ids, call one async function, record the outcome.

Actors are declared on ``runtime.DECLARED`` and moved onto the real broker by
``runtime.start()``.  Each actor states its retry policy; the defaults (20 retries over
~35 days) fit none of them.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import dramatiq
from dramatiq.middleware import CurrentMessage

from channels import PermanentDeliveryError, TransientDeliveryError, route_alert
from db import reports
from db.sealing import SealError
from pipeline import runtime
from pipeline.analytics import analyse_run
from pipeline.errors import PermanentSyncError, RefreshFailedError, TransientSyncError
from pipeline.sync import disconnect, record_failure, run_sync

log = logging.getLogger(__name__)
_broker = runtime.DECLARED

# The error table: a provider that is down gets 3 more tries, backing off from 5 s; then the
# run is a dead letter and that user waits for a requeue, while the others carry on.
SYNC_RETRIES = 3


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
    except RefreshFailedError as exc:
        alert_id = await disconnect(pool, run_id, str(exc))
        if alert_id is not None:
            notify.send(alert_id)
        raise
    except (PermanentSyncError, SealError) as exc:
        # A token that will not open is a key problem (see `carebeacon doctor`), not a flaky peer.
        await record_failure(pool, run_id, str(exc), final=True)
        log.warning("sync run %s failed permanently: %s", run_id, exc)
        raise
    except Exception as exc:
        # Hand the run back as pending so a retry (or the reconciler) can claim it; on the
        # last attempt, record the failure instead.
        last = _retries() >= _max_retries()
        retry_after = exc.retry_after if isinstance(exc, TransientSyncError) else None
        await record_failure(pool, run_id, f"{type(exc).__name__}: {exc}", final=last, retry_in=_retry_in(retry_after))
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
        rt = runtime.current()
        await route_alert(await runtime.pool(), rt.keyring, alert_id, rt.settings.delivery_lease)
    except TransientDeliveryError as exc:
        # Honour the peer's Retry-After when it gave one; otherwise Dramatiq's backoff applies.
        if exc.retry_after:
            raise dramatiq.Retry(delay=int(exc.retry_after * 1000)) from exc
        raise


def _retries() -> int:
    message = CurrentMessage.get_current_message()
    return int(message.options.get("retries", 0)) if message is not None else 0


def _retry_in(retry_after: float | None) -> timedelta:
    """When the next attempt is due at the latest: the peer's Retry-After, or the top of
    Dramatiq's jittered exponential backoff (it waits between 1 and 2 times the base)."""
    if retry_after:
        return timedelta(seconds=retry_after)
    message = CurrentMessage.get_current_message()
    options = message.options if message is not None else {}
    base = int(options.get("min_backoff", sync.options["min_backoff"])) * 2 ** _retries()
    return timedelta(milliseconds=min(2 * base, int(options.get("max_backoff", sync.options["max_backoff"]))))


def _max_retries() -> int:
    # A message may carry its own budget (Dramatiq's Retries reads it from the options too).
    message = CurrentMessage.get_current_message()
    declared = int(sync.options["max_retries"])
    return int(message.options.get("max_retries", declared)) if message is not None else declared


@dramatiq.actor(broker=_broker, queue_name="reports", max_retries=3, min_backoff=5_000, max_backoff=300_000)
async def report(report_id: int) -> None:
    """Build a pending weekly report; a replayed message finds it ready and does nothing."""
    async with (await runtime.pool()).acquire() as conn:
        await reports.build(conn, report_id)


runtime.bind_actors()
