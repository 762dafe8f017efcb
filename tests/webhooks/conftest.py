"""A receiver for the whole session, the environment webhook delivery reads per message
(private destinations allowed, because the receiver is on 127.0.0.1, and a fast retry
schedule), and helpers that make an endpoint and send an event to it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import asyncpg
import pytest

from db import events
from db import webhooks as stored
from pipeline import actors, runtime, webhooks
from pipeline.reconciler import reconcile
from tests.bot.api.conftest import Tenant, api, clinic, other  # noqa: F401  (the API tests' fixtures)
from tests.helpers import eventually
from tests.webhooks.receiver import Receiver

FAST = "0.2,0.2,0.2,0.2,0.2"


@pytest.fixture(scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    found = await Receiver().start()
    yield found
    await found.stop()


@pytest.fixture
def webhook_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREBEACON_ALLOW_PRIVATE_DESTINATIONS", "true")
    monkeypatch.setenv("WEBHOOK_RETRY_SCHEDULE", FAST)


async def make_endpoint(
    pool: asyncpg.Pool, tenant: str, url: str, types: list[str] | None = None
) -> tuple[stored.Endpoint, str]:
    """An endpoint of a new tenant (slug ``tenant``) subscribed to ``types``; returns it and its secret."""
    from db import tenants

    async with pool.acquire() as conn:
        tenant_id = await tenants.ensure_tenant(conn, tenant, tenant.title())
        return await stored.create(
            conn, runtime.current().keyring, tenant_id=tenant_id, url=url, events=types or [events.SYNC_COMPLETED],
            description="test",
        )  # fmt: skip


async def send_event(pool: asyncpg.Pool, endpoint: stored.Endpoint, data: dict[str, object] | None = None) -> int:
    """Publish a sync.completed for the endpoint's tenant and dispatch it; returns its delivery id."""
    async with pool.acquire() as conn:
        event_id = await events.publish(conn, endpoint.tenant_id, events.SYNC_COMPLETED, data or {"sync_run_id": 1})
    for delivery_id in await webhooks.dispatch(pool):
        actors.deliver_webhook.send(delivery_id)
    found: int = await pool.fetchval(
        "SELECT id FROM webhook_deliveries WHERE event_id = $1 AND endpoint_id = $2", event_id, endpoint.id
    )
    return found


# Other pytest sessions on this machine consume from the same Redis database and can take one of
# our messages; the reconciler re-sends what they took, as it would after a Redis loss.
BACKSTOP = timedelta(seconds=3)


async def backstop(pool: asyncpg.Pool) -> None:
    """One reconciler pass that treats work overdue by BACKSTOP as lost."""
    settings = replace(runtime.current().settings, reconcile_after=BACKSTOP, stale_after=timedelta(seconds=30))
    await reconcile(pool, settings)


async def finished(pool: asyncpg.Pool, delivery_id: int, timeout: float = 30.0) -> asyncpg.Record:
    last = time.monotonic()

    async def check() -> asyncpg.Record | None:
        nonlocal last
        row: asyncpg.Record | None = await pool.fetchrow(
            "SELECT * FROM webhook_deliveries WHERE id = $1 AND status IN ('succeeded', 'failed')", delivery_id
        )
        if row is None and time.monotonic() - last > BACKSTOP.total_seconds():
            await backstop(pool)
            last = time.monotonic()
        return row

    found: asyncpg.Record = await eventually(check, timeout, f"delivery {delivery_id} to finish")
    return found


async def attempts(pool: asyncpg.Pool, delivery_id: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT * FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt", delivery_id
    )
    return rows
