"""Routing one alert: rules choose channels, each channel gets one logged attempt.

Idempotent: a channel that already has a delivered attempt for the alert is skipped, so a
replayed or reconciled message never pages anyone twice.  A channel whose attempt is still in
flight elsewhere is retried once that attempt's lease runs out, never written off: the other
worker may have died mid-send.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from channels.base import Delivery, DeliveryStatus
from channels.errors import ConfigError, TransientDeliveryError
from channels.registry import build_channel
from db import alerts, notifications
from db.sealing import Keyring, SealError

log = logging.getLogger(__name__)

# How long an attempt in flight keeps other workers off the same (alert, channel).  Longer
# than any channel's send timeout, so a live attempt is never duplicated.
ATTEMPT_LEASE = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class RoutingReport:
    alert_id: int
    delivered: int = 0
    skipped: int = 0
    failed: int = 0
    retrying: int = 0


async def route_alert(
    pool: asyncpg.Pool, keyring: Keyring, alert_id: int, lease: timedelta = ATTEMPT_LEASE
) -> RoutingReport:
    """Deliver the alert to every channel its tenant's rules choose.

    Raises TransientDeliveryError (with the longest Retry-After seen) when a channel should be
    tried again; the alert is marked routed only once no channel is left to retry.
    """
    async with pool.acquire() as conn:
        alert = await alerts.get(conn, alert_id)
        if alert is None:
            log.info("alert %s is gone; nothing to route", alert_id)
            return RoutingReport(alert_id)
        targets = await notifications.channels_for(conn, alert)

    delivered = skipped = failed = 0
    retry_after: list[float] = []
    for target in targets:
        async with pool.acquire() as conn:
            attempt = await notifications.start_attempt(conn, alert.id, target.id, lease)
        if attempt.in_flight_for is not None:
            # Come back when the lease runs out: by then it was delivered, or its worker died.
            retry_after.append(attempt.in_flight_for.total_seconds())
            continue
        if attempt.log_id is None:
            skipped += 1
            continue
        log_id = attempt.log_id
        try:
            channel = build_channel(target.kind, target.config(keyring))
            outcome = await channel.send(channel.render(alert))
        except (ConfigError, SealError) as exc:
            outcome = Delivery(DeliveryStatus.PERMANENT, str(exc))
        async with pool.acquire() as conn:
            logged = "delivered" if outcome.status is DeliveryStatus.DELIVERED else "failed"
            await notifications.finish_attempt(conn, log_id, logged, outcome.detail)
        log.info("alert %s channel %s attempt log %s: %s", alert.id, target.id, log_id, outcome.status.value)
        if outcome.status is DeliveryStatus.DELIVERED:
            delivered += 1
        elif outcome.retryable:
            retry_after.append(outcome.retry_after or 0.0)
        else:
            failed += 1

    if retry_after:
        raise TransientDeliveryError(f"alert {alert.id}: {len(retry_after)} channel(s) to retry", max(retry_after))
    async with pool.acquire() as conn:
        await alerts.mark_routed(conn, alert.id)
    return RoutingReport(alert.id, delivered, skipped, failed)
