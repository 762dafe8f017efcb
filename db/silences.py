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


# The two checks as correlated subqueries over alias ``a`` (the alert, with ``tenant_id``
# joined from its user): routing's load query (db/routing.py) embeds them, so deciding an
# alert costs one round trip.  ``now`` and ``window`` name the query's parameters.
def silencing_sql(now: str) -> str:
    """The id of a silence active at ``now`` that matches ``a`` (NULL matchers match anything)."""
    return (
        f"(SELECT s.id FROM silences s WHERE s.tenant_id = a.tenant_id AND s.starts_at <= {now}"
        f" AND s.ends_at > {now} AND (s.patient_id IS NULL OR s.patient_id = a.user_id)"
        " AND (s.category IS NULL OR s.category = a.category) AND (s.metric IS NULL OR s.metric = a.metric)"
        " ORDER BY s.id LIMIT 1)"
    )


def inhibiting_sql(window: str) -> str:
    """The id of an unresolved critical alert of ``a``'s patient and metric raised within
    ``window`` of it; NULL for a critical alert or one without a metric."""
    return (
        "(SELECT i.id FROM alerts i WHERE a.severity <> 'critical' AND i.user_id = a.user_id"
        " AND i.metric = a.metric AND i.severity = 'critical' AND i.id <> a.id AND i.status <> 'resolved'"
        f" AND i.created_at BETWEEN a.created_at - {window}::interval AND a.created_at + {window}::interval"
        " ORDER BY i.id LIMIT 1)"
    )


# An alert with its tenant, for the two checks above.
_ALERT = "(SELECT x.*, u.tenant_id FROM alerts x JOIN users u ON u.id = x.user_id WHERE x.id = $1) a"


async def silencing(conn: asyncpg.Connection, alert: Alert, now: datetime) -> int | None:
    """The id of a silence active at ``now`` that matches the alert, or None."""
    found: int | None = await conn.fetchval(f"SELECT {silencing_sql('$2::timestamptz')} FROM {_ALERT}", alert.id, now)
    return found


async def inhibiting(conn: asyncpg.Connection, alert: Alert, window: timedelta) -> int | None:
    """The id of a critical alert, not resolved, for the same patient and metric, raised within
    ``window`` either side of this one; None for a critical alert or one without a metric."""
    if alert.severity == "critical" or alert.metric is None:
        return None
    found: int | None = await conn.fetchval(f"SELECT {inhibiting_sql('$2')} FROM {_ALERT}", alert.id, window)
    return found
