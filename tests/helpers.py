"""Small shared test helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from db import connections, notification_channels, notification_rules, tenants
from db.sealing import Keyring
from pipeline.providers.simulator import issue_tokens

# Where simulator patients live.  The simulator sends each day's summary at 07:00 UTC, which is
# midnight at UTC−7 (POSIX writes it "Etc/GMT+7"): a patient's local day then starts with its
# summary, so what "today" holds does not depend on the hour the tests run at.
SIMULATOR_ZONE = "Etc/GMT+7"

# Two connections to one database and a user on it: (first, second, tenant id, user id).
Two = tuple[asyncpg.Connection, asyncpg.Connection, int, int]


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def make_patient(
    pool: asyncpg.Pool,
    keyring: Keyring,
    *,
    tenant: str,
    alert_file: Path,
    anomalies: list[dict[str, Any]] | None = None,
    provider: str = "simulator",
    tokens: dict[str, Any] | None = None,
    min_severity: str = "warning",
) -> tuple[int, int, int, int]:
    """A tenant with one patient, a connection and a console channel with one rule.  On the
    simulator the patient's ordinary days are steady, so only ``anomalies`` raise alerts, on any date.

    Returns (tenant_id, user_id, connection_id, channel_id).
    """
    async with pool.acquire() as conn:
        tenant_id = await tenants.ensure_tenant(conn, tenant, tenant.title())
        user_id = await tenants.ensure_user(conn, tenant_id, "p1", "Pat One", SIMULATOR_ZONE)
        connection_id = await connections.upsert(
            conn,
            keyring,
            user_id=user_id,
            provider=provider,
            tokens=tokens if tokens is not None else issue_tokens(),
            settings={"seed": tenant, "anomalies": anomalies or [], "steady": True},
        )
        channel_id = await notification_channels.create_channel(
            conn,
            keyring,
            tenant_id=tenant_id,
            kind="console",
            label="file",
            config={"path": str(alert_file), "stdout": False},
        )
        await notification_rules.create_rule(
            conn, tenant_id=tenant_id, channel_id=channel_id, name="all", min_severity=min_severity
        )
    return tenant_id, user_id, connection_id, channel_id
