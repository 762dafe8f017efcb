"""Notification channels (sealed config), the rules that pick them, and the delivery log."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg

from db.alerts import SEVERITIES, Alert
from db.sealing import Keyring

TABLE, CONFIG = "notification_channels", "config_sealed"


@dataclass(frozen=True, slots=True)
class ChannelRow:
    id: int
    tenant_id: int
    kind: str
    label: str
    config_sealed: str = field(repr=False)

    def config(self, keyring: Keyring) -> dict[str, Any]:
        opened: dict[str, Any] = keyring.open_json(self.config_sealed, table=TABLE, column=CONFIG, row_id=self.id)
        return opened


async def create_channel(
    conn: asyncpg.Connection,
    keyring: Keyring,
    *,
    tenant_id: int,
    kind: str,
    label: str,
    config: dict[str, Any],
) -> int:
    # The id comes first because the sealed config is bound to it.
    channel_id: int = await conn.fetchval("SELECT nextval(pg_get_serial_sequence('notification_channels', 'id'))")
    await conn.execute(
        "INSERT INTO notification_channels (id, tenant_id, kind, label, config_sealed) VALUES ($1, $2, $3, $4, $5)",
        channel_id,
        tenant_id,
        kind,
        label,
        keyring.seal_json(config, table=TABLE, column=CONFIG, row_id=channel_id),
    )
    return channel_id


async def create_rule(
    conn: asyncpg.Connection,
    *,
    tenant_id: int,
    channel_id: int,
    name: str,
    min_severity: str = "warning",
    user_id: int | None = None,
    categories: list[str] | None = None,
    metrics: list[str] | None = None,
) -> int:
    rule_id: int = await conn.fetchval(
        "INSERT INTO notification_rules (tenant_id, channel_id, name, min_severity, user_id, categories, metrics)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        tenant_id,
        channel_id,
        name,
        min_severity,
        user_id,
        categories,
        metrics,
    )
    return rule_id


async def channels_for(conn: asyncpg.Connection, alert: Alert) -> list[ChannelRow]:
    """Enabled channels of the alert's tenant chosen by at least one enabled, matching rule."""
    rows = await conn.fetch(
        "SELECT DISTINCT c.id, c.tenant_id, c.kind, c.label, c.config_sealed"
        " FROM notification_rules r JOIN notification_channels c ON c.id = r.channel_id"
        " WHERE r.tenant_id = $1 AND r.enabled AND c.enabled AND c.tenant_id = $1"
        "   AND (r.user_id IS NULL OR r.user_id = $2)"
        "   AND (r.categories IS NULL OR $3 = ANY (r.categories))"
        "   AND (r.metrics IS NULL OR $4 = ANY (r.metrics))"
        "   AND array_position($5::text[], r.min_severity) <= array_position($5::text[], $6)"
        " ORDER BY c.id",
        alert.tenant_id,
        alert.user_id,
        alert.category,
        alert.metric,
        list(SEVERITIES),
        alert.severity,
    )
    return [ChannelRow(**dict(r)) for r in rows]


@dataclass(frozen=True, slots=True)
class Attempt:
    """What ``start_attempt`` found: a new attempt to make, an attempt still in flight (and how
    long its lease runs), or neither because the channel already has the alert."""

    log_id: int | None = None
    in_flight_for: timedelta | None = None


async def start_attempt(conn: asyncpg.Connection, alert_id: int, channel_id: int, lease: timedelta) -> Attempt:
    """Log a new 'sending' attempt, unless the alert already reached this channel or another
    worker's attempt is in flight (younger than ``lease``).

    An older 'sending' row was left by a worker that died mid-send: it is closed as failed,
    and a new attempt takes its place.  The alert row lock makes check and insert atomic.
    """
    async with conn.transaction():
        await conn.execute("SELECT 1 FROM alerts WHERE id = $1 FOR UPDATE", alert_id)
        found = await conn.fetchrow(
            "SELECT bool_or(status = 'delivered') AS delivered,"
            " max(created_at) FILTER (WHERE status = 'sending' AND created_at > now() - $3::interval)"
            "   + $3::interval - now() AS lease_left"
            " FROM notification_logs WHERE alert_id = $1 AND channel_id = $2",
            alert_id,
            channel_id,
            lease,
        )
        if found["delivered"]:
            return Attempt()
        if found["lease_left"] is not None:
            return Attempt(in_flight_for=found["lease_left"])
        await conn.execute(
            "UPDATE notification_logs SET status = 'failed', detail = 'abandoned: the worker stopped mid-send',"
            " finished_at = now() WHERE alert_id = $1 AND channel_id = $2 AND status = 'sending'",
            alert_id,
            channel_id,
        )
        log_id: int = await conn.fetchval(
            "INSERT INTO notification_logs (alert_id, channel_id, attempt, status)"
            " SELECT $1, $2, coalesce(max(attempt), 0) + 1, 'sending' FROM notification_logs"
            " WHERE alert_id = $1 AND channel_id = $2 RETURNING id",
            alert_id,
            channel_id,
        )
        return Attempt(log_id=log_id)


async def finish_attempt(conn: asyncpg.Connection, log_id: int, status: str, detail: str | None) -> None:
    await conn.execute(
        "UPDATE notification_logs SET status = $2, detail = $3, finished_at = now() WHERE id = $1",
        log_id,
        status,
        detail,
    )
