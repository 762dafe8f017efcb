"""Alerts: one row per condition, deduplicated by a key the detector derives; acknowledgement;
the routing and escalation timers the reconciler reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any

import asyncpg
from prometheus_client import Counter

from db import audit, events

SEVERITIES = ("info", "warning", "critical")
# Counted where every alert is inserted, so a scrape never counts the alerts table.
RAISED = Counter("carebeacon_alerts_raised", "Alerts raised (a deduplicated repeat is not), by severity.", ["severity"])
# A sync that fails this many runs in a row tells the user once (per streak).
FAILING_STREAK = 3


@dataclass(frozen=True, slots=True)
class NewAlert:
    user_id: int
    category: str
    severity: str
    metric: str | None
    title: str
    body: str
    observed_value: float | None
    threshold: float | None
    recorded_at: datetime | None
    dedupe_key: str
    kind: str = "clinical"
    rule: str | None = None
    rule_version: int | None = None


# A NewAlert's fields in declaration order, as insert_many's columns are; unlike astuple, no deep
# copy of each value.
_new_alert_values = attrgetter(*(f.name for f in fields(NewAlert)))


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    user_id: int
    tenant_id: int
    patient: str
    category: str
    severity: str
    metric: str | None
    title: str
    body: str
    observed_value: float | None
    threshold: float | None
    recorded_at: datetime | None
    created_at: datetime
    status: str = "open"
    routed_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


async def insert(conn: asyncpg.Connection, alert: NewAlert) -> int | None:
    """The new alert's id, or None when an alert with the same dedupe key exists."""
    alert_id: int | None = await conn.fetchval(
        "INSERT INTO alerts (user_id, category, severity, metric, title, body, observed_value, threshold,"
        " recorded_at, dedupe_key, kind, rule, rule_version)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        " ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
        alert.user_id,
        alert.category,
        alert.severity,
        alert.metric,
        alert.title,
        alert.body,
        alert.observed_value,
        alert.threshold,
        alert.recorded_at,
        alert.dedupe_key,
        alert.kind,
        alert.rule,
        alert.rule_version,
    )
    if alert_id is not None:
        # Here, not in each caller: every new alert is an integrator event, whoever raised it.
        await _publish(conn, events.ALERT_CREATED, alert_id, alert)
        RAISED.labels(alert.severity).inc()  # counted before the commit: a rolled-back alert still counts
    return alert_id


async def insert_many(conn: asyncpg.Connection, found: Sequence[NewAlert]) -> list[int | None]:
    """``insert`` for many alerts in three statements: each one's new id, in order, or None when
    its dedupe key exists (or an earlier alert in ``found`` has it)."""
    if not found:
        return []
    rows = await conn.fetch(
        "INSERT INTO alerts (user_id, category, severity, metric, title, body, observed_value, threshold,"
        " recorded_at, dedupe_key, kind, rule, rule_version)"
        " SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
        " $7::float8[], $8::float8[], $9::timestamptz[], $10::text[], $11::text[], $12::text[], $13::int[])"
        " ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, dedupe_key",
        *[list(column) for column in zip(*map(_new_alert_values, found), strict=True)],
    )
    new = {row["dedupe_key"]: row["id"] for row in rows}
    ids = [new.pop(alert.dedupe_key, None) for alert in found]  # pop: a repeated key is new only once
    created = [(alert_id, alert) for alert_id, alert in zip(ids, found, strict=True) if alert_id is not None]
    if created:
        tenants = dict(
            await conn.fetch(
                "SELECT id, tenant_id FROM users WHERE id = ANY($1::bigint[])", list({a.user_id for _, a in created})
            )
        )
        await events.publish_many(
            conn,
            [(tenants[alert.user_id], events.ALERT_CREATED, _event(alert_id, alert)) for alert_id, alert in created],
        )
        for _, alert in created:
            RAISED.labels(alert.severity).inc()
    return ids


async def _publish(conn: asyncpg.Connection, event_type: str, alert_id: int, alert: NewAlert) -> None:
    """The alert's event: ids and a summary, never the reading itself or the message body."""
    tenant_id: int = await conn.fetchval("SELECT tenant_id FROM users WHERE id = $1", alert.user_id)
    await events.publish(conn, tenant_id, event_type, _event(alert_id, alert))


def _event(alert_id: int, alert: NewAlert) -> dict[str, Any]:
    return {"alert_id": alert_id, "user_id": alert.user_id, "kind": alert.kind, "category": alert.category,
            "severity": alert.severity, "metric": alert.metric, "rule": alert.rule, "title": alert.title}  # fmt: skip


# An Alert's columns; db/routing.py's load query reads alerts through it too.
SELECT_ALERT = (
    "SELECT a.id, a.user_id, u.tenant_id, u.display_name AS patient, a.category, a.severity, a.metric,"
    " a.title, a.body, a.observed_value, a.threshold, a.recorded_at, a.created_at, a.status, a.routed_at,"
    " a.acknowledged_at, a.acknowledged_by"
    " FROM alerts a JOIN users u ON u.id = a.user_id"
)


async def get(conn: asyncpg.Connection, alert_id: int) -> Alert | None:
    row = await conn.fetchrow(SELECT_ALERT + " WHERE a.id = $1", alert_id)
    return Alert(**dict(row)) if row else None


async def get_many(conn: asyncpg.Connection, alert_ids: list[int]) -> list[Alert]:
    """The alerts that exist among ``alert_ids``, in id order."""
    rows = await conn.fetch(SELECT_ALERT + " WHERE a.id = ANY($1::bigint[]) ORDER BY a.id", alert_ids)
    return [Alert(**dict(r)) for r in rows]


async def mark_routed(
    conn: asyncpg.Connection, alert_id: int, at: datetime | None = None, escalate_at: datetime | None = None
) -> None:
    """Routing is done: every channel is settled.  ``escalate_at`` arms the escalation timer."""
    await conn.execute(
        "UPDATE alerts SET routed_at = coalesce($2, now()), route_after = NULL, escalate_at = $3"
        " WHERE id = $1 AND routed_at IS NULL",
        alert_id,
        at,
        escalate_at,
    )


async def hold_until(conn: asyncpg.Connection, alert_id: int, due: datetime) -> None:
    """A deferred or grouped alert: the reconciler leaves it to its delayed message until ``due``."""
    await conn.execute("UPDATE alerts SET route_after = $2 WHERE id = $1 AND routed_at IS NULL", alert_id, due)


async def unrouted(conn: asyncpg.Connection, older_than: timedelta) -> list[int]:
    """Alerts whose delivery never finished: their message was lost or is still retrying.

    A deferred alert counts from when it falls due (``route_after``).  Each alert returned is
    stamped due again now, so it is re-sent once per ``older_than``, not on every pass.
    """
    rows = await conn.fetch(
        "UPDATE alerts SET route_after = now() WHERE id IN ("
        "  SELECT id FROM alerts WHERE routed_at IS NULL AND created_at < now() - $1::interval"
        "   AND coalesce(route_after, created_at) < now() - $1::interval"
        "  ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED)"
        " RETURNING id",
        older_than,
    )
    return sorted(r["id"] for r in rows)


async def set_escalate_at(conn: asyncpg.Connection, alert_id: int, due: datetime) -> None:
    await conn.execute("UPDATE alerts SET escalate_at = $2 WHERE id = $1 AND escalated_at IS NULL", alert_id, due)


async def mark_escalated(conn: asyncpg.Connection, alert_id: int, at: datetime | None = None) -> None:
    await conn.execute(
        "UPDATE alerts SET escalated_at = coalesce($2, now()) WHERE id = $1 AND escalated_at IS NULL", alert_id, at
    )


async def escalations_due(conn: asyncpg.Connection, older_than: timedelta) -> list[int]:
    """Unacknowledged alerts whose escalation fell due more than ``older_than`` ago and has not
    run: its delayed message was lost.  Stamped due again now, like ``unrouted``."""
    rows = await conn.fetch(
        "UPDATE alerts SET escalate_at = now() WHERE id IN ("
        "  SELECT id FROM alerts WHERE escalate_at < now() - $1::interval"
        "   AND escalated_at IS NULL AND acknowledged_at IS NULL AND status = 'open'"
        "  ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED)"
        " RETURNING id",
        older_than,
    )
    return sorted(r["id"] for r in rows)


async def acknowledge(conn: asyncpg.Connection, alert_id: int, by: str) -> bool:
    """Record that ``by`` (a chat user, an API key) has seen the alert; stops its escalation.

    Returns False when the alert does not exist or was acknowledged already (the first
    acknowledgement stands).  Audited.
    """
    async with conn.transaction():
        row = await conn.fetchrow(
            "UPDATE alerts a SET acknowledged_at = now(), acknowledged_by = $2,"
            " status = CASE WHEN a.status = 'open' THEN 'acknowledged' ELSE a.status END"
            " FROM users u WHERE a.id = $1 AND u.id = a.user_id AND a.acknowledged_at IS NULL"
            " RETURNING u.tenant_id, a.user_id",
            alert_id,
            by,
        )
        if row is None:
            return False
        tenant_id = row["tenant_id"]
        await audit.record(
            conn, tenant_id=tenant_id, actor=by, action="alert.acknowledged", subject_type="alert", subject_id=alert_id
        )
        # user_id too: erasing the user finds and removes the events that name them.
        data = {"alert_id": alert_id, "user_id": row["user_id"]}
        await events.publish(conn, tenant_id, events.ALERT_ACKNOWLEDGED, data)
    return True


async def raise_sync_failing(conn: asyncpg.Connection, connection_id: int, provider_name: str) -> int | None:
    """After a failed run: when the connection's last ``FAILING_STREAK`` finished runs all
    failed, raise one connection alert for the streak.  Returns its id, or None when there is
    no streak or this streak was already told (the dedupe key names the streak's first run).
    """
    statuses = await conn.fetch(
        "SELECT status FROM sync_runs WHERE connection_id = $1 AND status IN ('completed', 'failed', 'skipped')"
        " ORDER BY id DESC LIMIT $2",
        connection_id,
        FAILING_STREAK,
    )
    if len(statuses) < FAILING_STREAK or any(r["status"] != "failed" for r in statuses):
        return None
    found = await conn.fetchrow(
        "SELECT c.user_id, (SELECT min(r.id) FROM sync_runs r WHERE r.connection_id = c.id AND r.status = 'failed'"
        "   AND r.id > coalesce((SELECT max(ok.id) FROM sync_runs ok WHERE ok.connection_id = c.id"
        "                        AND ok.status IN ('completed', 'skipped')), 0)) AS first_failed"
        " FROM connections c WHERE c.id = $1",
        connection_id,
    )
    if found is None:
        return None
    return await insert(
        conn,
        NewAlert(
            user_id=found["user_id"],
            category="connection",
            severity="warning",
            metric=None,
            title=f"{provider_name} sync keeps failing",
            body=f"The last {FAILING_STREAK} syncs from {provider_name} failed, so no new readings are arriving."
            " CareBeacon keeps trying; if it goes on, check the device or use /connect to link it again.",
            observed_value=None,
            threshold=None,
            recorded_at=None,
            dedupe_key=f"sync-failing:{connection_id}:{found['first_failed']}",
            kind="connection",
        ),
    )


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """What the API shows of an alert beyond ``Alert``: its snooze, resolution and escalation."""

    kind: str
    snoozed_until: datetime | None
    snoozed_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    escalate_at: datetime | None
    escalated_at: datetime | None


async def lifecycle(conn: asyncpg.Connection, alert_id: int) -> Lifecycle | None:
    row = await conn.fetchrow(
        "SELECT kind, snoozed_until, snoozed_by, resolved_at, resolved_by, escalate_at, escalated_at"
        " FROM alerts WHERE id = $1",
        alert_id,
    )
    return Lifecycle(**dict(row)) if row else None


async def snooze(conn: asyncpg.Connection, alert_id: int, until: datetime, by: str) -> bool:
    """Snooze an open or acknowledged alert until ``until``: no escalation and no page until
    then (escalation sees a status other than open and stands down).  Snoozing a snoozed
    alert moves its end.  False when the alert does not exist or is resolved.  Audited.
    """
    async with conn.transaction():
        tenant_id = await conn.fetchval(
            "UPDATE alerts a SET status = 'snoozed', snoozed_until = $2, snoozed_by = $3"
            " FROM users u WHERE a.id = $1 AND u.id = a.user_id AND a.status <> 'resolved'"
            " RETURNING u.tenant_id",
            alert_id,
            until,
            by,
        )
        if tenant_id is None:
            return False
        await audit.record(
            conn, tenant_id=tenant_id, actor=by, action="alert.snoozed", subject_type="alert", subject_id=alert_id,
            details={"until": until.isoformat()},
        )  # fmt: skip
    return True


async def wake_snoozed(conn: asyncpg.Connection, now: datetime, alert_id: int | None = None) -> list[int]:
    """Wake the snoozes that ended by ``now`` (only ``alert_id``'s, when given); returns the ids.

    A woken alert is acknowledged again if it was before, else open.  An open critical alert
    whose escalation was armed and never paged (the timer ran during the snooze, saw a status
    other than open and stood down) is armed again, due now: ``escalations_due`` finds it.
    """
    rows = await conn.fetch(
        "UPDATE alerts a SET status = CASE WHEN a.acknowledged_at IS NULL THEN 'open' ELSE 'acknowledged' END,"
        " snoozed_until = NULL,"
        " escalated_at = CASE WHEN rearm THEN NULL ELSE a.escalated_at END,"
        " escalate_at = CASE WHEN rearm THEN $1 ELSE a.escalate_at END"
        " FROM (SELECT s.id, s.acknowledged_at IS NULL AND s.escalate_at IS NOT NULL AND NOT EXISTS ("
        "         SELECT 1 FROM notification_logs l WHERE l.alert_id = s.id AND l.purpose = 'escalate') AS rearm"
        "       FROM alerts s WHERE s.status = 'snoozed' AND s.snoozed_until <= $1"
        "        AND ($2::bigint IS NULL OR s.id = $2) FOR UPDATE) w"
        " WHERE a.id = w.id RETURNING a.id",
        now,
        alert_id,
    )
    return sorted(r["id"] for r in rows)


async def resolve(conn: asyncpg.Connection, alert_id: int, by: str) -> bool:
    """Resolve the alert for good: it stops escalating and no longer inhibits lesser alerts.

    False when it does not exist or was resolved already (the first resolution stands).
    Audited, and published as ``alert.resolved`` in the same transaction.
    """
    async with conn.transaction():
        row = await conn.fetchrow(
            "UPDATE alerts a SET status = 'resolved', resolved_at = now(), resolved_by = $2, snoozed_until = NULL"
            " FROM users u WHERE a.id = $1 AND u.id = a.user_id AND a.status <> 'resolved'"
            " RETURNING u.tenant_id, a.user_id",
            alert_id,
            by,
        )
        if row is None:
            return False
        tenant_id = row["tenant_id"]
        await audit.record(
            conn, tenant_id=tenant_id, actor=by, action="alert.resolved", subject_type="alert", subject_id=alert_id
        )
        # user_id too, so erasing the patient (db.users.erase) takes the event with them.
        data = {"alert_id": alert_id, "user_id": row["user_id"]}
        await events.publish(conn, tenant_id, events.ALERT_RESOLVED, data)
    return True
