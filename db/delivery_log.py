"""The delivery log's writes: one notification_logs row per attempt or routing decision.

Every write takes the alert's row lock, so "is this (alert, channel) settled?" and the insert
that follows are one atomic step however many workers route the alert at once.  Settled means
the channel has the alert (delivered), must never get it (suppressed, pruned), or refused it
for good (failed with a permanent or auth error class); only then is nothing left to try.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg

from db.alerts import SEVERITIES, Alert

SETTLED = (
    "(l.status IN ('delivered', 'suppressed', 'pruned')"
    " OR (l.status = 'failed' AND l.error_class IN ('permanent', 'auth')))"
)
# Final statuses routing writes without a send; 'deferred' is not final, it has a due_at.
DECIDED = ("suppressed", "deferred")


@dataclass(frozen=True, slots=True)
class Attempt:
    """What ``start_attempts`` found: new attempts to make (alert id → log row id; the lead
    alert first), an attempt of the lead still in flight (and how long its lease runs), or
    neither because the channel already has the lead alert."""

    log_ids: dict[int, int] = field(default_factory=dict)
    in_flight_for: timedelta | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ended, as the log stores it.  ``detail`` is safe to show: no secrets."""

    status: str
    error_class: str | None = None
    detail: str | None = None
    http_status: int | None = None
    latency_ms: int | None = None
    retry_after_s: float | None = None


async def _lock(conn: asyncpg.Connection, alert_ids: Sequence[int]) -> None:
    # In id order, so two workers locking overlapping groups cannot deadlock.
    await conn.execute("SELECT 1 FROM alerts WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE", list(alert_ids))


async def _state(
    conn: asyncpg.Connection, alert_id: int, channel_id: int, purpose: str, lease: timedelta
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"SELECT coalesce(bool_or({SETTLED}), false) AS settled,"
        " max(l.created_at) FILTER (WHERE l.status = 'sending' AND l.created_at > now() - $4::interval)"
        "   + $4::interval - now() AS lease_left"
        " FROM notification_logs l WHERE l.alert_id = $1 AND l.channel_id = $2 AND l.purpose = $3",
        alert_id,
        channel_id,
        purpose,
        lease,
    )
    return row


async def _insert(
    conn: asyncpg.Connection,
    alert_id: int,
    channel_id: int,
    purpose: str,
    rule_id: int | None,
    status: str,
    *,
    detail: str | None = None,
    send_id: int | None = None,
    due_at: datetime | None = None,
    close_abandoned: bool = True,
) -> int:
    # An older 'sending' row was left by a worker that died mid-send: close it as failed first.
    if close_abandoned:
        await conn.execute(
            "UPDATE notification_logs SET status = 'failed', error_class = 'transient',"
            " detail = 'abandoned: the worker stopped mid-send', finished_at = now()"
            " WHERE alert_id = $1 AND channel_id = $2 AND purpose = $3 AND status = 'sending'",
            alert_id,
            channel_id,
            purpose,
        )
    log_id: int = await conn.fetchval(
        "INSERT INTO notification_logs (alert_id, channel_id, purpose, rule_id, attempt, status, detail, send_id,"
        " due_at, finished_at)"
        " SELECT $1, $2, $3, $4, coalesce(max(attempt), 0) + 1, $5, $6, $7, $8,"
        "   CASE WHEN $5 = 'sending' THEN NULL ELSE now() END"
        " FROM notification_logs WHERE alert_id = $1 AND channel_id = $2 AND purpose = $3 RETURNING id",
        alert_id,
        channel_id,
        purpose,
        rule_id,
        status,
        detail,
        send_id,
        due_at,
    )
    return log_id


async def start_attempts(
    conn: asyncpg.Connection,
    alert_id: int,
    channel_id: int,
    *,
    lease: timedelta,
    rule_id: int | None = None,
    purpose: str = "notify",
    also: Sequence[int] = (),
) -> Attempt:
    """Log a new 'sending' attempt of ``alert_id`` on the channel, unless the channel is
    settled for it or another worker's attempt is in flight (younger than ``lease``).

    ``also`` are alerts to send in the same message (a group): each joins with an attempt of
    its own, sharing the lead row's id as ``send_id``, unless it is settled or in flight.
    """
    async with conn.transaction():
        await _lock(conn, [alert_id, *also])
        lead = await _state(conn, alert_id, channel_id, purpose, lease)
        if lead["settled"]:
            return Attempt()
        if lead["lease_left"] is not None:
            return Attempt(in_flight_for=lead["lease_left"])
        lead_id = await _insert(conn, alert_id, channel_id, purpose, rule_id, "sending")
        await conn.execute("UPDATE notification_logs SET send_id = id WHERE id = $1", lead_id)
        log_ids = {alert_id: lead_id}
        for other in also:
            state = await _state(conn, other, channel_id, purpose, lease)
            if not state["settled"] and state["lease_left"] is None:
                log_ids[other] = await _insert(conn, other, channel_id, purpose, rule_id, "sending", send_id=lead_id)
        return Attempt(log_ids)


async def finish_attempts(conn: asyncpg.Connection, log_ids: Sequence[int], outcome: Outcome) -> None:
    """Close the attempts of one send with its outcome."""
    await conn.execute(
        "UPDATE notification_logs SET status = $2, error_class = $3, detail = $4, http_status = $5,"
        " latency_ms = $6, retry_after_s = $7, finished_at = now() WHERE id = ANY($1::bigint[])",
        list(log_ids),
        outcome.status,
        outcome.error_class,
        outcome.detail,
        outcome.http_status,
        outcome.latency_ms,
        outcome.retry_after_s,
    )


async def finish_attempt(conn: asyncpg.Connection, log_id: int, status: str, detail: str | None) -> None:
    await finish_attempts(conn, [log_id], Outcome(status, detail=detail))


async def record_decision(
    conn: asyncpg.Connection,
    alert_id: int,
    channel_id: int,
    status: str,
    detail: str,
    *,
    rule_id: int | None = None,
    due_at: datetime | None = None,
    purpose: str = "notify",
) -> bool:
    """Log routing's own outcome for the channel: 'suppressed', or 'deferred' until ``due_at``.

    Nothing is written when the channel is settled for the alert, or when the same deferral is
    logged already, so a replayed message adds no rows.  Returns whether a row was written.
    """
    if status not in DECIDED:
        raise ValueError(f"not a routing decision: {status!r}")
    async with conn.transaction():
        await _lock(conn, [alert_id])
        state = await _state(conn, alert_id, channel_id, purpose, timedelta(0))
        if state["settled"]:
            return False
        if status == "deferred" and await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM notification_logs WHERE alert_id = $1 AND channel_id = $2"
            " AND purpose = $3 AND status = 'deferred' AND due_at = $4)",
            alert_id,
            channel_id,
            purpose,
            due_at,
        ):
            return False
        # A send in flight is left alone: its own worker closes it.
        await _insert(
            conn, alert_id, channel_id, purpose, rule_id, status, detail=detail, due_at=due_at, close_abandoned=False
        )
        return True


async def last_sent(conn: asyncpg.Connection, rule_id: int, alert: Alert, since: datetime) -> asyncpg.Record | None:
    """The latest delivery since ``since``, by the rule, of another alert of the same patient and
    metric (the category when there is no metric) at least as severe: the cooldown's evidence."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT a.id AS alert_id, l.finished_at FROM notification_logs l JOIN alerts a ON a.id = l.alert_id"
        " WHERE l.rule_id = $1 AND l.status = 'delivered' AND l.purpose = 'notify' AND l.finished_at > $2"
        "   AND a.user_id = $3 AND a.id <> $4 AND coalesce(a.metric, a.category) = $5"
        "   AND array_position($6::text[], a.severity) >= array_position($6::text[], $7)"
        " ORDER BY l.finished_at DESC LIMIT 1",
        rule_id,
        since,
        alert.user_id,
        alert.id,
        alert.metric or alert.category,
        list(SEVERITIES),
        alert.severity,
    )
    return row


async def give_up(conn: asyncpg.Connection, log_ids: Sequence[int]) -> None:
    """The retries are spent: a rate-limited or transiently failed attempt becomes the final
    'failed' (its error class still says why)."""
    await conn.execute(
        "UPDATE notification_logs SET status = 'failed',"
        " detail = concat_ws('; ', detail, 'no retries left') WHERE id = ANY($1::bigint[])"
        " AND status IN ('failed', 'rate_limited')",
        list(log_ids),
    )
