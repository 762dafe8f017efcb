"""Alerts: one row per condition, deduplicated by a key the detector derives."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

SEVERITIES = ("info", "warning", "critical")


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
    return alert_id


_SELECT = (
    "SELECT a.id, a.user_id, u.tenant_id, u.display_name AS patient, a.category, a.severity, a.metric,"
    " a.title, a.body, a.observed_value, a.threshold, a.recorded_at, a.created_at"
    " FROM alerts a JOIN users u ON u.id = a.user_id"
)


async def get(conn: asyncpg.Connection, alert_id: int) -> Alert | None:
    row = await conn.fetchrow(_SELECT + " WHERE a.id = $1", alert_id)
    return Alert(**dict(row)) if row else None


async def mark_routed(conn: asyncpg.Connection, alert_id: int) -> None:
    await conn.execute("UPDATE alerts SET routed_at = now() WHERE id = $1 AND routed_at IS NULL", alert_id)


async def unrouted(conn: asyncpg.Connection, older_than: timedelta) -> list[int]:
    """Alerts whose delivery never finished: their message was lost or is still retrying."""
    rows = await conn.fetch(
        "SELECT id FROM alerts WHERE routed_at IS NULL AND created_at < now() - $1::interval ORDER BY id LIMIT 1000",
        older_than,
    )
    return [r["id"] for r in rows]
