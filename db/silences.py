"""Silences and inhibition (Alertmanager's), kept small.

A silence mutes, until it ends, every alert of its tenant that its matchers match (a NULL
matcher matches anything); it is time-bounded and audited.  Inhibition needs no table: a
critical alert for a patient and metric mutes that patient's lesser alerts on the same metric
raised within a window of it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from db import audit
from db.alerts import Alert


async def create(
    conn: asyncpg.Connection,
    *,
    tenant_id: int,
    ends_at: datetime,
    created_by: str,
    patient_id: int | None = None,
    category: str | None = None,
    metric: str | None = None,
    comment: str = "",
    starts_at: datetime | None = None,
) -> int:
    """A new silence's id; audited.  Raises asyncpg.CheckViolationError when it ends before it starts."""
    async with conn.transaction():
        silence_id: int = await conn.fetchval(
            "INSERT INTO silences (tenant_id, patient_id, category, metric, starts_at, ends_at, created_by, comment)"
            " VALUES ($1, $2, $3, $4, coalesce($5, now()), $6, $7, $8) RETURNING id",
            tenant_id,
            patient_id,
            category,
            metric,
            starts_at,
            ends_at,
            created_by,
            comment,
        )
        await audit.record(
            conn,
            tenant_id=tenant_id,
            actor=created_by,
            action="silence.created",
            subject_type="silence",
            subject_id=silence_id,
            details={"patient_id": patient_id, "category": category, "metric": metric, "ends_at": ends_at.isoformat()},
        )
    return silence_id


async def silencing(conn: asyncpg.Connection, alert: Alert, now: datetime) -> int | None:
    """The id of a silence active at ``now`` that matches the alert, or None."""
    found: int | None = await conn.fetchval(
        "SELECT id FROM silences WHERE tenant_id = $1 AND starts_at <= $5 AND ends_at > $5"
        " AND (patient_id IS NULL OR patient_id = $2) AND (category IS NULL OR category = $3)"
        " AND (metric IS NULL OR metric = $4) ORDER BY id LIMIT 1",
        alert.tenant_id,
        alert.user_id,
        alert.category,
        alert.metric,
        now,
    )
    return found


async def inhibiting(conn: asyncpg.Connection, alert: Alert, window: timedelta) -> int | None:
    """The id of a critical alert, not resolved, for the same patient and metric, raised within
    ``window`` either side of this one; None for a critical alert or one without a metric."""
    if alert.severity == "critical" or alert.metric is None:
        return None
    found: int | None = await conn.fetchval(
        "SELECT id FROM alerts WHERE user_id = $1 AND metric = $2 AND severity = 'critical' AND id <> $3"
        " AND status <> 'resolved' AND created_at BETWEEN $4::timestamptz - $5::interval"
        " AND $4::timestamptz + $5::interval ORDER BY id LIMIT 1",
        alert.user_id,
        alert.metric,
        alert.id,
        alert.created_at,
        window,
    )
    return found
