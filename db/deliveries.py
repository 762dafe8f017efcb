"""The delivery log as the API reads it (``GET /v1/alerts/{id}/deliveries``); its writes are in
db/delivery_log.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One row of the delivery log, as ``GET /v1/alerts/{id}/deliveries`` shows it: the channel
    by kind and label, never its config."""

    id: int
    alert_id: int
    channel_id: int
    channel_kind: str
    channel_label: str
    purpose: str
    attempt: int
    status: str
    error_class: str | None
    http_status: int | None
    latency_ms: int | None
    retry_after_s: float | None
    detail: str | None
    rule_id: int | None
    send_id: int | None
    due_at: datetime | None
    created_at: datetime
    finished_at: datetime | None


async def deliveries_for_alert(conn: asyncpg.Connection, alert_id: int) -> list[DeliveryRow]:
    """Every attempt and decision for the alert, oldest first."""
    rows = await conn.fetch(
        "SELECT l.id, l.alert_id, l.channel_id, c.kind AS channel_kind, c.label AS channel_label, l.purpose,"
        " l.attempt, l.status, l.error_class, l.http_status, l.latency_ms, l.retry_after_s, l.detail, l.rule_id,"
        " l.send_id, l.due_at, l.created_at, l.finished_at"
        " FROM notification_logs l JOIN notification_channels c ON c.id = l.channel_id"
        " WHERE l.alert_id = $1 ORDER BY l.id",
        alert_id,
    )
    return [DeliveryRow(**dict(r)) for r in rows]
