"""Routing one alert: rules choose channels and decide (send, wait, defer, suppress); each
channel gets one logged attempt per try; a critical alert nobody acknowledges escalates.

Idempotent: a channel settled for the alert (delivered, suppressed, pruned, failed for good)
is skipped, so a replayed or reconciled message never pages anyone twice.  A channel whose
attempt is still in flight elsewhere is retried once that attempt's lease runs out, never
written off: the other worker may have died mid-send.  The time is a parameter (``now``), so
quiet hours, cooldowns, group waits and escalation can be tested at any hour.

Alerts that one event loop is asked to route at the same time (a worker's threads each taking a
message, or coming back moments apart) are routed together: one statement reads them all, one
claims every send, the sends go out at once, and their outcomes are written as they end.  Each
alert still gets its own report, its own log rows and its own retry; two alerts of one patient
and key are never in one round, so the second sees the first's send (its cooldown's evidence).

Across worker processes the cooldown holds too.  Two workers may read two alerts of one patient
and key at the same moment, each before the other's claim; but a send under a rule with a
cooldown also claims the rule's cooldown for the patient and key, in the same statement, and
only while that claim is as the read found it (db.delivery_log.start_each; a group claims it
for every key its message carries, in the transaction that starts its attempts, or starts
nothing: db.delivery_log.start_attempts).  The worker that
finds it changed sends nothing: the alert waits, as for a send in flight, and is decided again
(IN_FLIGHT_RECHECK later), which suppresses it once the other send is delivered, or sends it if
that send failed; what one worker routing both alerts in turn would have done.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from channels.base import Delivery, DeliveryStatus
from channels.context import NO_KEYS, DeploymentKeys, SendContext
from channels.errors import TransientDeliveryError
from channels.rules import IN_FLIGHT_RECHECK, INHIBIT_WINDOW, Action, by_channel, decide, mute_reason
from channels.sending import Sent, Target, claim, deliver, failed_for_good, send_claimed, send_once
from channels.summary import escalated
from db import alerts, audit, delivery_log, notification_channels
from db.alerts import Alert
from db.delivery_log import Outcome, Routed
from db.notification_channels import ChannelRow
from db.routing import Routing, Rule, load, load_many
from db.sealing import Keyring

log = logging.getLogger(__name__)

# How long an attempt in flight keeps other workers off the same (alert, channel).  Longer
# than any channel's send timeout, so a live attempt is never duplicated.
ATTEMPT_LEASE = timedelta(minutes=2)
# The most alerts one batch takes; the rest wait for the next.
MAX_BATCH = 50
# How long a batch waits for more alerts, again each time more came.  A worker's threads that a
# batch answered come back with their next alerts moments apart; started at once, the next batch
# missed them, and the threads split into two smaller batches taking turns, each paying the
# statements' fixed cost.
GATHER_ALERTS_S = 0.001


@dataclass(frozen=True, slots=True)
class RoutingReport:
    """``deferred_until``: the alert must be routed again then (quiet hours, a group wait).
    ``escalate_at``: when its escalation falls due, unless someone acknowledges it."""

    alert_id: int
    delivered: int = 0
    skipped: int = 0
    failed: int = 0
    retrying: int = 0
    suppressed: int = 0
    deferred_until: datetime | None = None
    escalate_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class EscalationReport:
    alert_id: int
    sent: int = 0
    pending_until: datetime | None = None


async def route_alert(
    pool: asyncpg.Pool,
    keyring: Keyring,
    alert_id: int,
    lease: timedelta = ATTEMPT_LEASE,
    *,
    now: datetime | None = None,
    final: bool = False,
    keys: DeploymentKeys = NO_KEYS,
) -> RoutingReport:
    """Deliver the alert to every channel its tenant's rules choose, as they decide.

    Raises TransientDeliveryError (with the longest Retry-After seen) when a channel should be
    tried again, unless ``final`` (the last retry): then those channels are given up as failed.
    The alert is marked routed once every channel is settled; until then, a deferred or
    grouped alert reports when to come back.

    Routed in a batch with the alerts this event loop is asked for meanwhile, with the same
    arguments: a batch starts once GATHER_ALERTS_S passes with no other alert coming (or it is
    full), and calls that come while it runs join the next.
    """
    loop = asyncio.get_running_loop()
    key = (loop, id(pool), id(keyring), lease, now, final, id(keys))
    queue = _queues.get(key)
    if queue is None:
        queue = _queues[key] = _Queue(pool, keyring, lease, now, final, keys)
    answer: asyncio.Future[RoutingReport] = loop.create_future()
    queue.waiting.append((alert_id, answer))
    if queue.runner is None:
        queue.runner = loop.create_task(_drain(key, queue))
    return await answer


@dataclass
class _Queue:
    """Alerts waiting for the next batch, and the arguments their batch routes them with."""

    pool: asyncpg.Pool
    keyring: Keyring
    lease: timedelta
    now: datetime | None
    final: bool
    keys: DeploymentKeys
    waiting: list[tuple[int, asyncio.Future[RoutingReport]]] = field(default_factory=list)
    runner: asyncio.Task[None] | None = None


# One queue per event loop and set of arguments, while it has alerts; read and written only
# from its loop's thread.
_queues: dict[tuple[object, ...], _Queue] = {}


async def _drain(key: tuple[object, ...], queue: _Queue) -> None:
    batch: list[tuple[int, asyncio.Future[RoutingReport]]] = []
    try:
        while queue.waiting:
            seen = 0
            while seen != len(queue.waiting) < MAX_BATCH:
                seen = len(queue.waiting)
                await asyncio.sleep(GATHER_ALERTS_S)
            batch, queue.waiting = queue.waiting[:MAX_BATCH], queue.waiting[MAX_BATCH:]
            try:
                found = await route_alerts(
                    queue.pool, queue.keyring, [a for a, _ in batch], queue.lease, now=queue.now,
                    final=queue.final, keys=queue.keys,
                )  # fmt: skip
            except Exception as exc:  # the whole batch failed (the database went away): each alert retries
                found = {alert_id: exc for alert_id, _ in batch}
            for alert_id, answer in batch:
                if answer.done():  # its caller gave up (a time limit)
                    continue
                outcome = found[alert_id]
                if isinstance(outcome, RoutingReport):
                    answer.set_result(outcome)
                else:
                    answer.set_exception(outcome)
            batch = []
    finally:
        _queues.pop(key, None)
        for _, answer in [*batch, *queue.waiting]:  # only when this task is cancelled
            answer.cancel()


async def route_alerts(
    pool: asyncpg.Pool,
    keyring: Keyring,
    alert_ids: list[int],
    lease: timedelta = ATTEMPT_LEASE,
    *,
    now: datetime | None = None,
    final: bool = False,
    keys: DeploymentKeys = NO_KEYS,
) -> dict[int, RoutingReport | Exception]:
    """``route_alert`` for each alert, together: alert id → its report, or what routing it
    raised (TransientDeliveryError when a channel is to be tried again)."""
    now = now or datetime.now(UTC)
    context = SendContext(keyring, keys)
    found: dict[int, RoutingReport | Exception] = {}
    todo = list(dict.fromkeys(alert_ids))
    while todo:
        todo = await _route_round(pool, context, todo, lease, now, final, found)
    return found


@dataclass
class _Plan:
    """One alert's routing after its decisions: what waits, what was sent in a group, and the
    ungrouped sends still to make."""

    alert: Alert
    escalate_at: datetime | None
    tally: _Tally
    later: list[datetime]
    plain: list[Target]


async def _route_round(
    pool: asyncpg.Pool,
    context: SendContext,
    alert_ids: list[int],
    lease: timedelta,
    now: datetime,
    final: bool,
    found: dict[int, RoutingReport | Exception],
) -> list[int]:
    """Route the alerts, but at most one per patient and key (metric, else category): returns
    the others, for a round of their own that reads what this one sent."""
    async with pool.acquire() as conn:
        routings = await load_many(conn, alert_ids, now, INHIBIT_WINDOW, lease)
        keys_seen: set[tuple[int, str]] = set()
        now_ids: list[int] = []
        postponed: list[int] = []
        for alert_id in alert_ids:
            routing = routings.get(alert_id)
            if routing is None:
                log.info("alert %s is gone; nothing to route", alert_id)
                found[alert_id] = RoutingReport(alert_id)
                continue
            key = (routing.alert.user_id, routing.alert.metric or routing.alert.category)
            (postponed if key in keys_seen else now_ids).append(alert_id)
            keys_seen.add(key)
        plans = []
        for alert_id in now_ids:
            try:
                plans.append(await _plan(conn, context, routings[alert_id], lease, now))
            except Exception as exc:
                found[alert_id] = exc
        targets = [t for plan in plans for t in plan.plain]
        attempts = await claim(conn, targets, lease) if targets else {}
    for plan in plans:
        if any(attempts[t.key].cooldown_taken for t in plan.plain):
            _wait_for_cooldown(plan, now)
            plan.plain = [t for t in plan.plain if not attempts[t.key].cooldown_taken]
    targets = [t for plan in plans for t in plan.plain]
    # Routing is done with these sends for an alert where nothing waits and nothing retries.
    routed = {p.alert.id: Routed(p.alert.id, now, p.escalate_at) for p in plans if not p.later and not p.tally.retrying}
    claimed = await send_claimed(pool, context, targets, attempts, routed)
    unfinished = []
    for plan in plans:
        for t in plan.plain:
            if t.key in claimed.sent:
                plan.tally.add(t.channel, claimed.sent[t.key])
        if plan.alert.id in claimed.raised:
            found[plan.alert.id] = claimed.raised[plan.alert.id]
        elif plan.alert.id in claimed.routed:
            found[plan.alert.id] = plan.tally.report(plan.alert.id, escalate_at=plan.escalate_at)
        else:
            unfinished.append(plan)
    if unfinished:
        async with pool.acquire() as conn:
            for plan in unfinished:
                try:
                    found[plan.alert.id] = await _settle(conn, plan, now, final)
                except Exception as exc:
                    found[plan.alert.id] = exc
    return postponed


async def _plan(
    conn: asyncpg.Connection, context: SendContext, found: Routing, lease: timedelta, now: datetime
) -> _Plan:
    """Decide each channel of the alert; log what is suppressed or deferred and send what waits
    for a group; leave the ungrouped sends in ``plain``."""
    alert = found.alert
    mute = mute_reason(found.silence_id, found.inhibitor_id)
    decisions = [decide(alert, rule, now, mute, found.cooldowns.get(rule.id)) for rule in found.rules]
    escalate_at = None
    if alert.severity == "critical" and alert.acknowledged_at is None:
        afters = [d.rule.escalate_after for d in decisions if d.action is Action.SEND and _escalates(d.rule)]
        escalate_at = now + min(a for a in afters if a is not None) if afters else None
    plan = _Plan(alert, escalate_at, _Tally(), [], [])
    for channel, decision in by_channel(decisions).values():
        if decision.action is Action.SUPPRESS or decision.action is Action.DEFER:
            status = "suppressed" if decision.action is Action.SUPPRESS else "deferred"
            await delivery_log.record_decision(
                conn, alert.id, channel.id, status, decision.reason or status, rule_id=decision.rule.id,
                due_at=decision.until,
            )  # fmt: skip
        if decision.action is Action.SUPPRESS:
            plan.tally.suppressed += 1
        elif decision.until is not None:
            plan.later.append(decision.until)
        elif decision.rule.group_wait > timedelta(0):
            # A group gathers riders per channel: its own claim, in its own transaction.
            claim_seen = found.claims.get(decision.rule.id)
            sent = await deliver(conn, context, alert, channel, decision.rule, now, lease, claim_seen=claim_seen)
            if sent.cooldown_taken:
                _wait_for_cooldown(plan, now)
            else:
                plan.tally.add(channel, sent)
        else:
            plan.plain.append(Target(alert, channel, decision.rule, found.claims.get(decision.rule.id)))
    return plan


def _wait_for_cooldown(plan: _Plan, now: datetime) -> None:
    # Another worker's alert of the patient and key claimed the cooldown since the load: its
    # send counts as one in flight, so the alert waits and is decided again.
    log.info("alert %s: another alert claimed its cooldown; deciding again later", plan.alert.id)
    plan.later.append(now + IN_FLIGHT_RECHECK)


async def _settle(conn: asyncpg.Connection, plan: _Plan, now: datetime, final: bool) -> RoutingReport:
    """After the sends: raise for a retry, give up on the last one, hold a waiting alert, or
    mark the alert routed (when its sends did not)."""
    alert, tally = plan.alert, plan.tally
    if tally.retrying and not final:
        longest = max(s.retry_after or 0.0 for _, s in tally.retrying)
        raise TransientDeliveryError(f"alert {alert.id}: {len(tally.retrying)} channel(s) to retry", longest)
    if tally.retrying:
        spent, tally.retrying = tally.retrying, []
        await _give_up(conn, alert, spent)
        tally.failed += len(spent)
    if plan.later:
        await alerts.hold_until(conn, alert.id, min(plan.later))
        return tally.report(alert.id, deferred_until=min(plan.later))
    await alerts.mark_routed(conn, alert.id, now, plan.escalate_at)
    return tally.report(alert.id, escalate_at=plan.escalate_at)


async def escalate_alert(
    pool: asyncpg.Pool,
    keyring: Keyring,
    alert_id: int,
    lease: timedelta = ATTEMPT_LEASE,
    *,
    now: datetime | None = None,
    final: bool = False,
    keys: DeploymentKeys = NO_KEYS,
) -> EscalationReport:
    """Send a routed, unacknowledged alert to the escalation channels of each rule whose
    ``escalate_after`` has run out since it was routed.  Does nothing once it is acknowledged,
    resolved or silenced.  Raises TransientDeliveryError like ``route_alert``.
    """
    now = now or datetime.now(UTC)
    async with pool.acquire() as conn:
        return await _escalate(conn, SendContext(keyring, keys), alert_id, lease, now, final)


async def _escalate(
    conn: asyncpg.Connection, context: SendContext, alert_id: int, lease: timedelta, now: datetime, final: bool
) -> EscalationReport:
    found = await load(conn, alert_id, now, INHIBIT_WINDOW)
    alert = found.alert if found is not None else None
    if found is None or alert is None or alert.routed_at is None:
        return EscalationReport(alert_id)
    if alert.acknowledged_at is not None or alert.status != "open" or mute_reason(found.silence_id, found.inhibitor_id):
        log.info("alert %s: acknowledged, resolved or silenced; no escalation", alert.id)
        await alerts.mark_escalated(conn, alert.id, now)
        return EscalationReport(alert.id)
    rules = [r for r in found.rules if _escalates(r)]
    routed_at = alert.routed_at
    due = {r.id: routed_at + r.escalate_after for r in rules if r.escalate_after is not None}
    sent = 0
    retrying: list[tuple[ChannelRow, Sent]] = []
    done: set[int] = set()
    for rule in rules:
        if rule.escalate_after is None or due[rule.id] > now:
            continue
        message = escalated(alert, rule.escalate_after)
        for channel in rule.escalation_channels:
            if channel.id in done:
                continue
            done.add(channel.id)
            outcome = await deliver(
                conn, context, alert, channel, rule, now, lease, purpose="escalate", message=message
            )
            sent += outcome.delivery is not None and outcome.delivery.status is DeliveryStatus.DELIVERED
            if outcome.retrying:
                retrying.append((channel, outcome))
    if retrying and not final:
        longest = max(s.retry_after or 0.0 for _, s in retrying)
        raise TransientDeliveryError(f"alert {alert.id}: {len(retrying)} escalation channel(s) to retry", longest)
    if retrying:
        await _give_up(conn, alert, retrying)
    pending = [at for at in due.values() if at > now]
    if pending:
        await alerts.set_escalate_at(conn, alert.id, min(pending))
        return EscalationReport(alert.id, sent, min(pending))
    await alerts.mark_escalated(conn, alert.id, now)
    return EscalationReport(alert.id, sent)


async def send_test_message(
    pool: asyncpg.Pool, keyring: Keyring, channel_id: int, keys: DeploymentKeys = NO_KEYS
) -> tuple[ChannelRow, Delivery] | None:
    """Send a test message through the channel (enabled or not) and audit the outcome.
    Returns None when there is no such channel.  Nothing goes to the delivery log: it is for alerts."""
    async with pool.acquire() as conn:
        channel = await notification_channels.get_channel(conn, channel_id)
    if channel is None:
        return None
    now = datetime.now(UTC)
    message = Alert(
        id=0, user_id=0, tenant_id=channel.tenant_id, patient="CareBeacon", category="test", severity="info",
        metric=None, title="Test message from CareBeacon", body=f"Channel “{channel.label}” works.",
        observed_value=None, threshold=None, recorded_at=now, created_at=now,
    )  # fmt: skip
    delivery, latency_ms = await send_once(channel, SendContext(keyring, keys), message)
    async with pool.acquire() as conn:
        await audit.record(
            conn,
            tenant_id=channel.tenant_id,
            actor="cli",
            action="channel.tested",
            subject_type="notification_channel",
            subject_id=channel.id,
            details={"status": delivery.status.value, "http_status": delivery.http_status, "latency_ms": latency_ms},
        )
    return channel, delivery


def _escalates(rule: Rule) -> bool:
    return rule.escalate_after is not None and bool(rule.escalation_channels)


@dataclass
class _Tally:
    delivered: int = 0
    skipped: int = 0
    failed: int = 0
    suppressed: int = 0
    retrying: list[tuple[ChannelRow, Sent]] = field(default_factory=list)

    def add(self, channel: ChannelRow, sent: Sent) -> None:
        if sent.retrying:
            self.retrying.append((channel, sent))
        elif sent.delivery is None:
            self.skipped += 1
        elif sent.delivery.status is DeliveryStatus.DELIVERED:
            self.delivered += 1
        else:
            self.failed += 1

    def report(
        self, alert_id: int, *, deferred_until: datetime | None = None, escalate_at: datetime | None = None
    ) -> RoutingReport:
        counts = (self.delivered, self.skipped, self.failed, len(self.retrying), self.suppressed)
        return RoutingReport(alert_id, *counts, deferred_until=deferred_until, escalate_at=escalate_at)


async def _give_up(conn: asyncpg.Connection, alert: Alert, retrying: list[tuple[ChannelRow, Sent]]) -> None:
    """The last retry is spent: the channels still failing are failed for good, and said so."""
    for channel, sent in retrying:
        if sent.log_ids:
            await delivery_log.give_up(conn, sent.log_ids)
        detail = sent.delivery.detail if sent.delivery is not None else "still in flight at the last retry"
        await failed_for_good(conn, alert, channel, Outcome("failed", "transient", f"gave up: {detail}"))
    log.warning("alert %s: gave up on %d channel(s) after the last retry", alert.id, len(retrying))
