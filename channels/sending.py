"""One send to one channel: claim the attempt rows, build the message, send, log the outcome.

The log row comes first (db/delivery_log.py): an (alert, channel) that is settled is never
sent again, and one whose attempt is in flight elsewhere waits for that attempt's lease.

Ungrouped sends go in batches, across alerts: ``claim`` starts every (alert, channel) of a batch
in one statement, which also claims the cooldowns of their rules (routing holds back the sends
whose cooldown another worker claimed since it read it); ``send_claimed`` sends them all at
once, without holding a pool connection, and logs the outcomes as the sends end, each write with
the ``routed_at`` of the alerts it completes.  A grouped send (``deliver``) runs on the caller's
connection, and claims the cooldown for each key its message carries, in the transaction that
starts its attempts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as Tally
from collections.abc import Sequence
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
from db.routing import Rule, cooldown_claims, group_candidates
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
# How long the first outcome of a batch of sends waits for the others to share its write, again
# each time more came: sends to one peer end in a stream, and a fixed 5 ms caught them all but held
# the worker's threads longer than it saved.
GATHER_OUTCOMES_S = 0.001
# Every send passes through ``deliver``; routing's own outcomes (suppressed, deferred) are not sends.
DELIVERIES = Counter(
    "carebeacon_deliveries", "Sends to notification channels, by channel kind and outcome.", ["kind", "outcome"]
)


@dataclass(frozen=True, slots=True)
class Sent:
    """What happened on one channel.  ``delivery`` None: nothing was sent, because the channel
    already has the alert (``retry_after`` None), another worker is sending it (set), or another
    alert claimed the rule's cooldown since routing read it (``cooldown_taken``)."""

    delivery: Delivery | None = None
    retry_after: float | None = None
    log_ids: tuple[int, ...] = ()
    cooldown_taken: bool = False

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
    claim_seen: int | None = None,
) -> Sent:
    """Send ``alert`` (or ``message`` in its place) to the channel, once.

    With the rule's group wait, the other alerts of the patient that the rule would send now
    ride along in one summary message, each with its own log row sharing the send's id.  Under a
    rule with a cooldown, the send also claims it for each key the message carries, ``alert``'s
    while its claim is still the one routing read (``claim_seen``, as ``Target.claim_seen``);
    when another alert claimed one of them since, nothing is sent and the Sent is
    ``cooldown_taken``.
    """
    # The log lines of this send carry its ids; the next channel's send gets its own.
    with logcontext.bound(alert_id=alert.id, channel_id=channel.id):
        notify = purpose == "notify" and not message
        riders, claims = await _riders(conn, alert, channel, rule, now) if notify else ([], {})
        cooldowns = None
        if notify and rule.cooldown > timedelta(0):
            claims[_key(alert)] = claim_seen
            cooldowns = {(a.id, rule.id): claims[_key(a)] for a in (alert, *riders)}
        attempt = await delivery_log.start_attempts(
            conn, alert.id, channel.id, lease=lease, rule_id=rule.id, purpose=purpose, also=[a.id for a in riders],
            cooldowns=cooldowns,
        )  # fmt: skip
        return await _send(conn, context, alert, channel, attempt, purpose, message, riders)


@dataclass(frozen=True, slots=True)
class Target:
    """An ungrouped send to make: the alert, to the channel, for the rule.  ``claim_seen``: the
    rule's claim of its cooldown that routing read (``Routing.claims``), which the send's claim
    must still find."""

    alert: Alert
    channel: ChannelRow
    rule: Rule
    claim_seen: int | None = None

    @property
    def key(self) -> tuple[int, int]:
        return self.alert.id, self.channel.id


async def claim(
    conn: asyncpg.Connection, targets: Sequence[Target], lease: timedelta
) -> dict[tuple[int, int], Attempt]:
    """Start the attempt of each target, in one statement: (alert id, channel id) → its Attempt.
    A target whose rule has a cooldown also claims that, unless another alert of the patient and
    key claimed it since routing read it: then its Attempt is ``cooldown_taken``."""
    rows = [(t.alert.id, t.channel.id, t.rule.id) for t in targets]
    cooldowns = {(t.alert.id, t.rule.id): t.claim_seen for t in targets if t.rule.cooldown > timedelta(0)}
    return await delivery_log.start_each(conn, rows, lease=lease, cooldowns=cooldowns)


@dataclass
class Claimed:
    """What ``send_claimed`` did: each target's Sent, the alerts it marked routed, and the alerts
    whose send raised (what it raised; their attempts stay in flight until the lease runs out)."""

    sent: dict[tuple[int, int], Sent]
    routed: set[int]
    raised: dict[int, Exception]


async def send_claimed(
    pool: asyncpg.Pool,
    context: SendContext,
    targets: Sequence[Target],
    attempts: dict[tuple[int, int], Attempt],
    routed: dict[int, Routed],
) -> Claimed:
    """Send every claimed target at once and log each outcome as soon as its send ends: the
    outcomes that end no more than GATHER_OUTCOMES_S apart share one write, and a hung peer
    (an SMTP server that never greets) holds up no other.  No pool connection is held while sending.

    An alert in ``routed`` is marked routed in the write of its last outcome, when each of its
    targets was delivered or had nothing to send; not when one is in flight elsewhere."""
    done = Claimed({}, set(), {})
    for t in targets:
        attempt = attempts[t.key]
        if attempt.in_flight_for is not None:
            # Come back when the lease runs out: by then it was delivered, or its worker died.
            done.sent[t.key] = Sent(retry_after=max(attempt.in_flight_for.total_seconds(), 0.0))
            routed.pop(t.alert.id, None)
        elif not attempt.log_ids:
            done.sent[t.key] = Sent()
    ready = [t for t in targets if t.key not in done.sent]
    left = Tally(t.alert.id for t in ready)
    clean = {alert_id: True for alert_id in left}

    async def transmit(t: Target) -> tuple[Delivery, int]:
        with logcontext.bound(alert_id=t.alert.id, channel_id=t.channel.id):
            return await send_once(t.channel, context, t.alert)

    sending = {asyncio.ensure_future(transmit(t)): t for t in ready}
    pending = set(sending)
    while pending:
        ended, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        while pending:
            # Sends to one peer end moments apart: give the others a moment, so that their outcomes
            # share one statement and one commit.  A slow peer still holds up nobody's log row.
            more, pending = await asyncio.wait(pending, timeout=GATHER_OUTCOMES_S)
            if not more:
                break
            ended |= more
        outcomes: list[tuple[Target, Delivery, Outcome]] = []
        for task in ended:
            t = sending[task]
            left[t.alert.id] -= 1
            failure = task.exception()
            if isinstance(failure, Exception):
                done.raised.setdefault(t.alert.id, failure)
                clean[t.alert.id] = False
                continue
            if failure is not None:
                raise failure
            delivery, latency_ms = task.result()
            status, error_class = LOGGED[delivery.status]
            outcome = Outcome(status, error_class, delivery.detail, delivery.http_status, latency_ms,
                              delivery.retry_after)  # fmt: skip
            clean[t.alert.id] = clean[t.alert.id] and delivery.status is DeliveryStatus.DELIVERED
            outcomes.append((t, delivery, outcome))
        finishing = {t.alert.id for t, _, _ in outcomes}
        complete = [routed[a] for a in finishing if not left[a] and clean[a] and a in routed]
        if outcomes:
            async with pool.acquire() as conn:
                finished = [(tuple(attempts[t.key].log_ids.values()), o) for t, _, o in outcomes]
                await delivery_log.finish_each(conn, finished, complete)
                for t, delivery, outcome in outcomes:
                    with logcontext.bound(alert_id=t.alert.id, channel_id=t.channel.id):
                        done.sent[t.key] = await _after(conn, t.alert, t.channel, attempts[t.key], "notify", [t.alert],
                                                        delivery, outcome)  # fmt: skip
        done.routed.update(r.alert_id for r in complete)
    return done


async def _send(
    conn: asyncpg.Connection,
    context: SendContext,
    alert: Alert,
    channel: ChannelRow,
    attempt: Attempt,
    purpose: str,
    message: Alert | None,
    riders: list[Alert],
) -> Sent:
    """Send on a started attempt and log the outcome."""
    if attempt.cooldown_taken:
        return Sent(cooldown_taken=True)
    if attempt.in_flight_for is not None:
        # Come back when the lease runs out: by then it was delivered, or its worker died.
        return Sent(retry_after=max(attempt.in_flight_for.total_seconds(), 0.0))
    if not attempt.log_ids:
        return Sent()
    members = [alert, *(a for a in riders if a.id in attempt.log_ids)]
    logcontext.add(notification_log_id=next(iter(attempt.log_ids.values())))
    delivery, latency_ms = await send_once(channel, context, message or summarise(members))
    status, error_class = LOGGED[delivery.status]
    outcome = Outcome(status, error_class, delivery.detail, delivery.http_status, latency_ms, delivery.retry_after)
    await delivery_log.finish_attempts(conn, tuple(attempt.log_ids.values()), outcome)
    return await _after(conn, alert, channel, attempt, purpose, members, delivery, outcome)


async def _after(
    conn: asyncpg.Connection,
    alert: Alert,
    channel: ChannelRow,
    attempt: Attempt,
    purpose: str,
    members: list[Alert],
    delivery: Delivery,
    outcome: Outcome,
) -> Sent:
    """What follows a logged outcome: a gone destination disables the channel, a refusal for
    good is told to the owners."""
    DELIVERIES.labels(channel.kind, delivery.status.value).inc()
    log_ids = tuple(attempt.log_ids.values())
    logcontext.add(notification_log_id=log_ids[0])
    if delivery.status is DeliveryStatus.GONE:
        # The destination no longer exists (a Web Push subscription, a deleted webhook):
        # retrying cannot help, and every later alert would fail the same way.
        await notification_channels.disable_channel(
            conn, channel.id, f"destination gone: {delivery.detail or outcome.status}"
        )
    elif not delivery.retryable and delivery.status is not DeliveryStatus.DELIVERED:
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
) -> tuple[list[Alert], dict[str, int | None]]:
    """Alerts that join this one's message (none without a group wait), and, under a rule with a
    cooldown, its claims on their keys other than ``alert``'s (key → claim log id, None: none)."""
    if rule.group_wait <= timedelta(0):
        return [], {}
    found = await alerts.get_many(conn, await group_candidates(conn, rule.id, channel.id, alert, now))
    keys = {_key(a) for a in found} - {_key(alert)}
    claims: dict[str, int | None] = dict.fromkeys(keys)
    if keys and rule.cooldown > timedelta(0):
        # Read before the riders' evidence (routing reads the alert's with it): any send that
        # evidence misses then claimed after this read, and the group's claim refuses.
        claims.update(await cooldown_claims(conn, rule.id, alert.user_id, keys))
    riders = []
    for other in found:
        decision = await decide_now(conn, other, rule, now, in_group=True)
        if decision.action is Action.SEND:
            riders.append(other)
    return riders, claims


def _key(alert: Alert) -> str:
    # What a cooldown holds back: the alert's metric, else its category.
    return alert.metric or alert.category
