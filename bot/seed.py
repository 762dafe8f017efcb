"""The demo tenant: one patient on the simulator with an injected anomaly, one console channel."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import asyncpg

from db import connections, notification_channels, notification_rules, tenants
from db.sealing import Keyring
from pipeline.providers.simulator import issue_tokens

DEMO_TENANT = "demo"
DEMO_PATIENT = "patient-001"
# Today's resting heart rate is 118 bpm: above the tachycardia threshold, so one alert.  Its
# ordinary days are steady (the simulator's ``steady``), so that is the only alert on any date.
DEMO_ANOMALIES = [{"metric": "resting_heart_rate", "value": 118, "days_ago": 0}]


@dataclass(frozen=True, slots=True)
class Demo:
    tenant_id: int
    user_id: int
    connection_id: int
    channel_id: int
    alert_file: Path


async def is_empty(conn: asyncpg.Connection) -> bool:
    return not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM tenants)")


async def seed_demo(pool: asyncpg.Pool, keyring: Keyring, data_dir: Path) -> Demo:
    """Create the demo tenant, or return the existing one unchanged."""
    alert_file = data_dir / "alerts.jsonl"
    async with pool.acquire() as conn, conn.transaction():
        tenant_id = await tenants.ensure_tenant(conn, DEMO_TENANT, "Demo clinic")
        user_id = await tenants.ensure_user(conn, tenant_id, DEMO_PATIENT, "Demo Patient", "Europe/London")
        connection_id = await conn.fetchval(
            "SELECT id FROM connections WHERE user_id = $1 AND provider = 'simulator'", user_id
        )
        if connection_id is None:
            connection_id = await connections.upsert(
                conn,
                keyring,
                user_id=user_id,
                provider="simulator",
                tokens=issue_tokens(),
                settings={"seed": DEMO_PATIENT, "anomalies": DEMO_ANOMALIES, "steady": True},
            )
        channel_id = await conn.fetchval(
            "SELECT id FROM notification_channels WHERE tenant_id = $1 AND kind = 'console' ORDER BY id LIMIT 1",
            tenant_id,
        )
        if channel_id is None:
            channel_id = await notification_channels.create_channel(
                conn,
                keyring,
                tenant_id=tenant_id,
                kind="console",
                label="Terminal and alert file",
                config={"path": str(alert_file)},
            )
            await notification_rules.create_rule(
                conn, tenant_id=tenant_id, channel_id=channel_id, name="Care team: warnings and up"
            )
    return Demo(tenant_id, user_id, connection_id, channel_id, alert_file)
