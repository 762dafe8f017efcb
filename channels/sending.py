"""One send to one channel: claim the attempt rows, build the message, send, log the outcome.

The log row comes first (db/delivery_log.py): an (alert, channel) that is settled is never
sent again, and one whose attempt is in flight elsewhere waits for that attempt's lease.

Everything runs on the one connection routing holds for the alert (a pool acquire costs a
reset round trip).  ``deliver_many`` claims every ungrouped channel of an alert in one
statement, and writes the last send's outcome together with the alert's ``routed_at``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
from prometheus_client import Counter

from channels.base import Delivery, DeliveryStatus
from channels.context import SendContext, open_channel
from channels.errors import ConfigError
from channels.rules import Action, decide_now
from channels.summary import summarise
from db import alerts, audit, delivery_log, logcontext, notification_channels
from db.alerts import Alert
from db.delivery_log import Attempt, Outcome, Routed
from db.notification_channels import ChannelRow
from db.routing import Rule, group_candidates
from db.sealing import SealError

log = logging.getLogger(__name__)

# How the log records each kind of outcome: (status, error class).
LOGGED: dict[DeliveryStatus, tuple[str, str | None]] = {
    DeliveryStatus.DELIVERED: ("delivered", None),
    DeliveryStatus.TRANSIENT: ("failed", "transient"),
    DeliveryStatus.RATE_LIMITED: ("rate_limited", "rate_limited"),
    DeliveryStatus.PERMANENT: ("failed", "permanent"),
    DeliveryStatus.AUTH: ("failed", "auth"),
    DeliveryStatus.GONE: ("pruned", "permanent"),
}
# Every send passes through ``deliver``; routing's own outcomes (suppressed, deferred) are not sends.
DELIVERIES = Counter(
    "carebeacon_deliveries", "Sends to notification channels, by channel kind and outcome.", ["kind", "outcome"]
)


@dataclass(frozen=True, slots=True)
class Sent:
    """What happened on one channel.  ``delivery`` None: nothing was sent, because the channel
    already has the alert (``retry_after`` None) or another worker is sending it (set)."""

    delivery: Delivery | None = None
    retry_after: float | None = None
    log_ids: tuple[int, ...] = ()

    @property
    def retrying(self) -> bool:
        return self.retry_after is not None


async def send_once(channel: ChannelRow, context: SendContext, message: Alert) -> tuple[Delivery, int]:
    """Render and send; returns the outcome and the milliseconds the send took.  Never raises
    for a channel that will not open or build: that is a permanent outcome."""
    started = time.monotonic()
    try:
        built = open_channel(channel, context)
        delivery = await built.send(built.render(message))
    except (ConfigError, SealError) as exc:
        delivery = Delivery(DeliveryStatus.PERMANENT, str(exc))
    return delivery, round((time.monotonic() - started) * 1000)


async def deliver(
    conn: asyncpg.Connection,
    context: SendContext,
    alert: Alert,
    channel: ChannelRow,
    rule: Rule,
    now: datetime,
    lease: timedelta,
    *,
    purpose: str = "notify",
    message: Alert | None = None,
) -> Sent:
    """Send ``alert`` (or ``message`` in its place) to the channel, once.

    With the rule's group wait, the other alerts of the patient that the rule would send now
    ride along in one summary message, each with its own log row sharing the send's id.
    """
    # The log lines of this send carry its ids; the next channel's send gets its own.
    with logcontext.bound(alert_id=alert.id, channel_id=channel.id):
        riders = await _riders(conn, alert, channel, rule, now) if purpose == "notify" and not message else []
        attempt = await delivery_log.start_attempts(
            conn, alert.id, channel.id, lease=lease, rule_id=rule.id, purpose=purpose, also=[a.id for a in riders]
        )
        return await _send(conn, context, alert, channel, attempt, purpose, message, riders)


async def deliver_many(
    conn: asyncpg.Connection,
    context: SendContext,
    alert: Alert,
    targets: list[tuple[ChannelRow, Rule]],
    lease: timedelta,
    *,
    routed: Routed | None = None,
) -> tuple[list[Sent], bool]:
    """``deliver`` to each (channel, rule) without a group wait, with one statement to claim
    them all.  With ``routed``: when every send is delivered (or already was), the last one's
    outcome and the alert's ``routed_at`` are written in one statement.  Returns the outcomes,
    in order, and whether the alert was marked routed."""
    attempts = await delivery_log.start_many(conn, alert.id, [(c.id, r.id) for c, r in targets], lease=lease)
    if any(a.in_flight_for is not None for a in attempts.values()):
        routed = None  # a channel in flight elsewhere is not settled yet
    ready = [i for i, (c, _) in enumerate(targets) if attempts[c.id].log_ids and attempts[c.id].in_flight_for is None]
    if len(ready) > 1:
        return await _deliver_at_once(conn, context, alert, targets, attempts, ready), False
    last = max((i for i, (c, _) in enumerate(targets) if attempts[c.id].log_ids), default=None)
    outcomes: list[Sent] = []
    marked = False
    for i, (channel, _) in enumerate(targets):
        clean = all(o.delivery is None and not o.retrying or _delivered(o) for o in outcomes)
        with logcontext.bound(alert_id=alert.id, channel_id=channel.id):
            sent = await _send(
                conn, context, alert, channel, attempts[channel.id], "notify", None, [],
                routed=routed if i == last and clean else None,
            )  # fmt: skip
        marked = marked or (i == last and clean and routed is not None and _delivered(sent))
        outcomes.append(sent)
    return outcomes, marked


async def _deliver_at_once(
    conn: asyncpg.Connection,
    context: SendContext,
    alert: Alert,
    targets: list[tuple[ChannelRow, Rule]],
    attempts: dict[int, Attempt],
    ready: list[int],
) -> list[Sent]:
    """Send to several channels at once, each logged as soon as its own send ends: a hung peer
    (an SMTP server that never greets) must not hold up the others.  The log writes share one
    connection, so they take turns; the caller marks the alert routed."""
    turn = asyncio.Lock()

    async def one(i: int) -> Sent:
        channel = targets[i][0]
        with logcontext.bound(alert_id=alert.id, channel_id=channel.id):
            transmitted = await send_once(channel, context, alert)
            async with turn:
                return await _send(conn, context, alert, channel, attempts[channel.id], "notify", None, [],
                                   transmitted=transmitted)  # fmt: skip

    sent = dict(zip(ready, await asyncio.gather(*(one(i) for i in ready)), strict=True))
    outcomes: list[Sent] = []
    for i, (channel, _) in enumerate(targets):
        if i not in sent:
            with logcontext.bound(alert_id=alert.id, channel_id=channel.id):
                sent[i] = await _send(conn, context, alert, channel, attempts[channel.id], "notify", None, [])
        outcomes.append(sent[i])
    return outcomes


def _delivered(sent: Sent) -> bool:
    return sent.delivery is not None and sent.delivery.status is DeliveryStatus.DELIVERED


async def _send(
    conn: asyncpg.Connection,
    context: SendContext,
    alert: Alert,
    channel: ChannelRow,
    attempt: Attempt,
    purpose: str,
    message: Alert | None,
    riders: list[Alert],
    *,
    routed: Routed | None = None,
    transmitted: tuple[Delivery, int] | None = None,
) -> Sent:
    """Send on a started attempt (unless ``transmitted`` already holds the outcome and its
    milliseconds) and log the outcome.  ``routed`` is written with a delivered outcome only:
    any other needs its own writes first (a disabled channel, an audit event)."""
    if attempt.in_flight_for is not None:
        # Come back when the lease runs out: by then it was delivered, or its worker died.
        return Sent(retry_after=max(attempt.in_flight_for.total_seconds(), 0.0))
    if not attempt.log_ids:
        return Sent()
    members = [alert, *(a for a in riders if a.id in attempt.log_ids)]
    logcontext.add(notification_log_id=next(iter(attempt.log_ids.values())))
    if transmitted is None:
        transmitted = await send_once(channel, context, message or summarise(members))
    delivery, latency_ms = transmitted
    DELIVERIES.labels(channel.kind, delivery.status.value).inc()
    status, error_class = LOGGED[delivery.status]
    outcome = Outcome(status, error_class, delivery.detail, delivery.http_status, latency_ms, delivery.retry_after)
    log_ids = tuple(attempt.log_ids.values())
    delivered = delivery.status is DeliveryStatus.DELIVERED
    await delivery_log.finish_attempts(conn, log_ids, outcome, routed=routed if delivered else None)
    if delivery.status is DeliveryStatus.GONE:
        # The destination no longer exists (a Web Push subscription, a deleted webhook):
        # retrying cannot help, and every later alert would fail the same way.
        await notification_channels.disable_channel(conn, channel.id, f"destination gone: {delivery.detail or status}")
    elif not delivery.retryable and not delivered:
        await failed_for_good(conn, alert, channel, outcome)
    log.info(
        "alert %s channel %s %s log %s (%d alert(s)): %s",
        alert.id, channel.id, purpose, log_ids[0], len(members), delivery.status.value,
    )  # fmt: skip
    retry_after = (delivery.retry_after or 0.0) if delivery.retryable else None
    return Sent(delivery, retry_after, log_ids)


async def failed_for_good(conn: asyncpg.Connection, alert: Alert, channel: ChannelRow, outcome: Outcome) -> None:
    """Tell the tenant's owners: an audit event they see in the alert's history."""
    await audit.record(
        conn,
        tenant_id=alert.tenant_id,
        actor="pipeline",
        action="alert.delivery_failed",
        subject_type="alert",
        subject_id=alert.id,
        details={"channel_id": channel.id, "error_class": outcome.error_class, "detail": outcome.detail},
    )


async def _riders(
    conn: asyncpg.Connection, alert: Alert, channel: ChannelRow, rule: Rule, now: datetime
) -> list[Alert]:
    """Alerts that join this one's message: none without a group wait."""
    if rule.group_wait <= timedelta(0):
        return []
    found = await alerts.get_many(conn, await group_candidates(conn, rule.id, channel.id, alert, now))
    riders = []
    for other in found:
        decision = await decide_now(conn, other, rule, now, in_group=True)
        if decision.action is Action.SEND:
            riders.append(other)
    return riders
