"""One attempt of one delivery: claim, sign, POST, log the attempt, decide what comes next.

    2xx                          succeeded; the endpoint's failure streak resets
    410                          failed, and the endpoint is disabled at once (the spec's "gone")
    a destination we refuse      failed: the SSRF guard will refuse it on every retry too
    anything else                retried after schedule[retries] ± 20 %, or Retry-After if longer;
                                 failed when the schedule is spent, which extends the streak
    streak ≥ N or older than T   the endpoint is disabled and its tenant told

The caller (the actor) turns ``Attempted.retry_in`` into ``dramatiq.Retry``: Dramatiq owns the
wait, the row owns the state (including the retries spent), so a lost message is re-sent by the
reconciler and carries on the schedule where it stopped.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from channels.base import Delivery, DeliveryStatus
from channels.http import Reply, Transport, classify
from channels.signing import sign
from db import audit, events, logcontext
from db import webhooks as stored
from db.sealing import Keyring, SealError
from pipeline.metrics import WEBHOOK_ATTEMPTS
from pipeline.webhooks.settings import WebhookSettings

log = logging.getLogger(__name__)

JITTER = 0.2
MAX_RETRY_AFTER = 24 * 3600.0  # a peer cannot park a delivery for longer than a day
USER_AGENT = "CareBeacon-Webhooks/1"


# How long a delivery waits when its endpoint has its fill of attempts in flight.
BUSY_DELAY = timedelta(seconds=2)


@dataclass(frozen=True, slots=True)
class Attempted:
    """``outcome`` is succeeded, failed, retry, busy (the endpoint has its fill of attempts in
    flight: ``resend_in`` says when to look again) or skipped (not ours, not due, or disabled)."""

    outcome: str
    retry_in: float | None = None
    endpoint_disabled: bool = False
    resend_in: float | None = None


async def deliver(
    pool: asyncpg.Pool, keyring: Keyring, settings: WebhookSettings, delivery_id: int, *, lease: timedelta
) -> Attempted:
    """Make one attempt of the delivery, if it is due and nobody else holds it."""
    async with pool.acquire() as conn:
        if await stored.fail_if_disabled(conn, delivery_id):
            log.info("webhook delivery %s not sent: its endpoint is disabled", delivery_id)
            return Attempted("skipped")
        if await stored.postpone_if_saturated(conn, delivery_id, lease, settings.max_in_flight, BUSY_DELAY):
            return Attempted("busy", resend_in=BUSY_DELAY.total_seconds())
        claimed = await stored.claim(conn, delivery_id, lease)
    if claimed is None:
        return Attempted("skipped")
    endpoint = claimed.endpoint
    logcontext.add(webhook_delivery_id=delivery_id, endpoint_id=endpoint.id, attempt=claimed.attempt)
    body = json.dumps(claimed.payload, separators=(",", ":")).encode()
    timestamp = int(time.time())
    try:
        signature = sign(endpoint.signing_secrets(keyring, datetime.now(UTC)), claimed.msg_id, timestamp, body)
    except SealError as exc:
        # A key problem (see `carebeacon doctor`): no retry can fix it, and the message names no secret.
        answer: Reply | Delivery = Delivery(
            DeliveryStatus.PERMANENT, f"webhook: cannot open the signing secret ({exc})"
        )
        return _counted(await _record(pool, settings, claimed, answer, 0))
    headers = {
        "webhook-id": claimed.msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
        "User-Agent": USER_AGENT,
    }
    started = time.monotonic()
    answer = await Transport(settings.policy, settings.timeout).post("webhook", endpoint.url, body, headers)
    latency_ms = round((time.monotonic() - started) * 1000)
    return _counted(await _record(pool, settings, claimed, answer, latency_ms))


def _counted(attempted: Attempted) -> Attempted:
    WEBHOOK_ATTEMPTS.labels(attempted.outcome).inc()
    return attempted


async def _record(
    pool: asyncpg.Pool,
    settings: WebhookSettings,
    claimed: stored.Claimed,
    answer: Reply | Delivery,
    latency_ms: int,
) -> Attempted:
    endpoint = claimed.endpoint
    if isinstance(answer, Reply):
        result = classify("webhook", answer, endpoint.url, gone=frozenset({410}))
        http_status, text = answer.status, answer.body[: stored.BODY_CHARS].decode("utf-8", "replace")
    else:
        result, http_status, text = answer, None, None
    ok = result.status is DeliveryStatus.DELIVERED
    where = f"webhook delivery {claimed.delivery_id} (endpoint {endpoint.id}, attempt {claimed.attempt})"
    async with pool.acquire() as conn, conn.transaction():
        await stored.record_attempt(
            conn,
            claimed.delivery_id,
            claimed.attempt,
            http_status=http_status,
            latency_ms=latency_ms,
            response_body=text,
            error_class=None if ok else result.status.value,
            detail=None if ok else result.detail,
        )
        if ok:
            await stored.succeed(conn, claimed.delivery_id, endpoint.id)
            log.info("%s: HTTP %s in %d ms", where, http_status, latency_ms)
            return Attempted("succeeded")
        error = result.detail or result.status.value
        if result.status is DeliveryStatus.GONE:
            await stored.fail(conn, claimed.delivery_id, endpoint.id, error)
            disabled = await _disable(conn, endpoint, "the endpoint answered HTTP 410 Gone")
            return Attempted("failed", endpoint_disabled=disabled)
        refused = http_status is None and result.status is DeliveryStatus.PERMANENT
        if not refused and claimed.retries < len(settings.schedule):
            delay = _delay(settings.schedule[claimed.retries], result.retry_after)
            await stored.retry_later(conn, claimed.delivery_id, timedelta(seconds=delay), error)
            log.warning("%s failed (%s); retrying in %.1f s", where, error, delay)
            return Attempted("retry", retry_in=delay)
        streak, lasted = await stored.fail(conn, claimed.delivery_id, endpoint.id, error)
        log.warning("%s failed for good (%s); %d failed deliveries in a row", where, error, streak)
        disabled = False
        if streak >= settings.disable_after_failures or lasted >= settings.disable_after:
            reason = f"{streak} deliveries in a row failed, over {_days(lasted)}; the last: {error}"
            disabled = await _disable(conn, endpoint, reason)
        return Attempted("failed", endpoint_disabled=disabled)


def _delay(scheduled: float, retry_after: float | None) -> float:
    """The scheduled delay with ±JITTER, or the peer's Retry-After when that is longer."""
    delay = scheduled * random.uniform(1 - JITTER, 1 + JITTER)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def _days(lasted: timedelta) -> str:
    hours = lasted.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 24 else f"{hours:.1f} hours"


async def _disable(conn: asyncpg.Connection, endpoint: stored.Endpoint, reason: str) -> bool:
    """Disable the endpoint and tell its tenant: an audit event, a log line, and a
    ``webhook.disabled`` event for the tenant's other endpoints.  False if it was already off."""
    disabled = await stored.disable(conn, endpoint.id, reason)
    if disabled is None:
        return False
    details = {"endpoint_id": endpoint.id, "reason": reason, "consecutive_failures": disabled.consecutive_failures}
    await audit.record(
        conn,
        tenant_id=endpoint.tenant_id,
        actor="pipeline",
        action="webhook_endpoint_disabled",
        subject_type="webhook_endpoint",
        subject_id=endpoint.id,
        details=details,
    )
    await events.publish(conn, endpoint.tenant_id, events.WEBHOOK_DISABLED, details)
    log.warning("webhook endpoint %s of tenant %s disabled: %s", endpoint.id, endpoint.tenant_id, reason)
    return True
