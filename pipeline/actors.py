"""The Dramatiq actors.  Thin: take ids, call one async function, record the outcome.

Actors are declared on ``runtime.DECLARED`` and moved onto the real broker by
``runtime.start()``.  Each actor states its retry policy; the defaults (20 retries over
~35 days) fit none of them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp
import asyncpg
import dramatiq
from dramatiq.errors import BrokerError
from dramatiq.middleware import CurrentMessage

from channels import PermanentDeliveryError, TransientDeliveryError, escalate_alert, route_alert
from db import chat, events, reports
from db.sealing import SealError
from pipeline import runtime, webhooks
from pipeline.analytics import analyse_waiting
from pipeline.errors import PermanentSyncError, RefreshFailedError, TransientSyncError
from pipeline.reports import send_report
from pipeline.sync import disconnect, record_failure, run_sync
from pipeline.webhooks import settings as webhook_settings

log = logging.getLogger(__name__)
Routed = TypeVar("Routed")
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
        message = CurrentMessage.get_current_message()
        claimant = message.message_id if message is not None else None
        outcome = await run_sync(pool, rt.keyring, rt.settings, run_id, claimant)
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
        # Imported here: pipeline.triggers imports this module.
        from pipeline.triggers import analyse_soon

        analyse_soon(run_id)


# Runs a message: what the reconciler hands over, what the syncs and ingest batches of the last
# 50 ms completed, plus the other runs waiting for analysis when they are fewer.  One fetch and
# one transaction for them all; that database work costs well under half as much per run as one
# message each (docs/benchmarks.md, "Analytics recompute").
ANALYSE_BATCH = 100


@dramatiq.actor(broker=_broker, queue_name="analytics", max_retries=3, min_backoff=5_000, max_backoff=120_000)
async def analyse(run_id: int) -> None:
    await _analyse_waiting([run_id])


async def dispatch_pending(pool: asyncpg.Pool) -> None:
    """Wake the webhook dispatcher when an event waits for it.  Most tenants subscribe to few
    events or none (``db.events.NOBODY_SUBSCRIBES``), and a message that finds nothing still costs
    the webhooks worker about a millisecond; the reconciler's pass remains the backstop."""
    if await events.any_pending(pool):
        dispatch_events.send()


@dramatiq.actor(broker=_broker, queue_name="analytics", max_retries=3, min_backoff=5_000, max_backoff=120_000)
async def analyse_many(run_ids: list[int]) -> None:
    await _analyse_waiting(run_ids)


async def _analyse_waiting(run_ids: list[int]) -> None:
    """The runs, with others waiting for analysis up to ANALYSE_BATCH (``analyse_waiting``);
    nothing for a run another message's batch took: that message notifies."""
    pool = await runtime.pool()
    outcomes = await analyse_waiting(pool, run_ids, max(ANALYSE_BATCH, len(run_ids)))
    for outcome in outcomes:
        for alert_id in outcome.new_alert_ids:
            notify.send(alert_id)
    if outcomes:
        await dispatch_pending(pool)  # the syncs' and these analyses' events (webhooks)


# Transient failures and 429s retry with Dramatiq's jittered backoff (2 s to 5 min) or the
# peer's Retry-After; on the last try routing gives the channels up as failed, for good.
NOTIFY_RETRIES = 8


@dramatiq.actor(
    broker=_broker,
    queue_name="notifications",
    max_retries=NOTIFY_RETRIES,
    min_backoff=2_000,
    max_backoff=300_000,
    throws=(PermanentDeliveryError,),
)
async def notify(alert_id: int) -> None:
    routed = await _route(route_alert, alert_id)
    # Quiet hours or a group wait: come back when they end.  The escalation timer: a delayed
    # message.  The reconciler re-sends either if Redis loses it.
    if routed.deferred_until is not None:
        _send_at(notify, alert_id, routed.deferred_until)
    if routed.escalate_at is not None:
        _send_at(escalate, alert_id, routed.escalate_at)


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
    """Build a pending weekly report, then email it; a replayed message finds it ready, emails
    only the recipients it missed (a transient refusal raises: Dramatiq retries), and stops."""
    pool = await runtime.pool()
    async with pool.acquire() as conn:
        built = await reports.build(conn, report_id)
    if built:
        dispatch_events.send()  # report.ready (webhooks)
    await send_report(pool, runtime.current().keyring, report_id)


# -- webhooks ---------------------------------------------------------------------------------
# Events become deliveries here, on the webhooks queue; the reconciler does the same on every
# pass, so an event whose message was lost still goes out.


@dramatiq.actor(broker=_broker, queue_name="webhooks", max_retries=3, min_backoff=1_000, max_backoff=60_000)
async def dispatch_events() -> None:
    for delivery_id in await webhooks.dispatch(await runtime.pool()):
        deliver_webhook.send(delivery_id)


# ``deliver`` spends the schedule (WEBHOOK_RETRY_SCHEDULE, at most 10 retries, counted on the
# row) and says when to retry; this cap only bounds retries after unexpected errors.
@dramatiq.actor(broker=_broker, queue_name="webhooks", max_retries=10, time_limit=60_000)
async def deliver_webhook(delivery_id: int) -> None:
    rt = runtime.current()
    pool = await runtime.pool()
    settings = webhook_settings.current()
    done = await webhooks.deliver(pool, rt.keyring, settings, delivery_id, lease=rt.settings.delivery_lease)
    if done.endpoint_disabled:
        dispatch_events.send()  # the tenant's webhook.disabled event
    if done.retry_in is not None:
        raise dramatiq.Retry(delay=max(1, round(done.retry_in * 1000)))
    if done.resend_in is not None:
        # Not a failure: a fresh message, so waiting for a slow endpoint spends no retries.
        deliver_webhook.send_with_options(args=(delivery_id,), delay=round(done.resend_in * 1000))


# -- routing timers -----------------------------------------------------------------------------


@dramatiq.actor(
    broker=_broker,
    queue_name="notifications",
    max_retries=NOTIFY_RETRIES,
    min_backoff=2_000,
    max_backoff=300_000,
    throws=(PermanentDeliveryError,),
)
async def escalate(alert_id: int) -> None:
    """A critical alert's escalation timer ran out: unless acknowledged, page the escalation channels."""
    done = await _route(escalate_alert, alert_id)
    if done.pending_until is not None:
        _send_at(escalate, alert_id, done.pending_until)


async def _route(route: Callable[..., Awaitable[Routed]], alert_id: int) -> Routed:
    """Run ``route_alert`` or ``escalate_alert`` with the worker's settings and keys, honouring
    a peer's Retry-After when it gave one; otherwise Dramatiq's backoff applies."""
    rt = runtime.current()
    try:
        return await route(
            await runtime.pool(generic_plans=True),
            rt.keyring,
            alert_id,
            rt.settings.delivery_lease,
            keys=await runtime.deployment_keys(),
            final=_last_try(NOTIFY_RETRIES),
        )
    except TransientDeliveryError as exc:
        if exc.retry_after:
            raise dramatiq.Retry(delay=int(exc.retry_after * 1000)) from exc
        raise


def _last_try(declared: int) -> bool:
    message = CurrentMessage.get_current_message()
    if message is None:
        return False
    return _retries() >= int(message.options.get("max_retries", declared))


def _send_at(actor: dramatiq.Actor[[int], Any], alert_id: int, due: datetime) -> None:
    """A delayed message for ``due``; a broker error is logged: the reconciler re-sends it."""
    delay = max(0, int((due - datetime.now(UTC)).total_seconds() * 1000))
    try:
        actor.send_with_options(args=(alert_id,), delay=delay)
    except (BrokerError, OSError, ConnectionError) as exc:
        log.warning("could not schedule %s(%s) for %s (%s); the reconciler will", actor.actor_name, alert_id, due, exc)


# -- chat follow-ups ----------------------------------------------------------------------------
# /sync in chat answers at once (the 3-second rule); this posts the result once the runs end.
# It looks every 2 s by Retry (no sleep holds a worker thread), for up to 30 minutes: the life
# of a Slack response_url (a Discord interaction token lives 15).
FOLLOWUP_POLL_MS = 2_000
FOLLOWUP_TRIES = 900


@dramatiq.actor(
    broker=_broker,
    queue_name="notifications",
    max_retries=FOLLOWUP_TRIES,
    min_backoff=FOLLOWUP_POLL_MS,
    max_backoff=FOLLOWUP_POLL_MS,
)
async def chat_followup(followup_id: int) -> None:
    pool = await runtime.pool()
    async with pool.acquire() as conn:
        found = await chat.pending_followup(conn, runtime.current().keyring, followup_id)
    if found is None:
        return
    if not found.finished:
        raise dramatiq.Retry(delay=FOLLOWUP_POLL_MS)
    # Claimed before posting: a crash in between loses a chat notice, never doubles it.
    async with pool.acquire() as conn:
        if not await chat.mark_followup_posted(conn, followup_id):
            return
    await _post_followup(found)


async def _post_followup(found: chat.Followup) -> None:
    """POST the result to the response URL in the platform's shape (Slack response_url:
    an ephemeral message that leaves the original; Discord interaction webhook: an
    ephemeral follow-up).  A refusal is logged, not retried: the URL is single-purpose."""
    lines = chat.followup_lines(found)
    text = "Sync finished\n" + "\n".join(lines)
    payload: dict[str, Any]
    if found.platform == "slack":
        blocks = [{"type": "header", "text": {"type": "plain_text", "text": "Sync finished"}},
                  {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:3000]}}]  # fmt: skip
        payload = {"response_type": "ephemeral", "replace_original": False, "text": text, "blocks": blocks}
    else:
        payload = {"content": text.replace("*", "**")[:2000], "flags": 64}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
            http.post(found.target, json=payload) as response,
        ):
            if response.status >= 300:
                log.warning("chat follow-up %s refused: HTTP %s", found.id, response.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("chat follow-up %s not delivered: %s", found.id, type(exc).__name__)


runtime.bind_actors()
