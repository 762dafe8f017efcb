"""The admin console on the pipeline's database and broker, a password, and seeded rows to show."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot import admin
from bot.admin import AdminSettings
from bot.settings import BotSettings
from bot.state import BROKER, POOL
from db import api_keys, events, tenants
from db import webhooks as stored_webhooks
from db.sealing import Keyring
from pipeline import runtime
from tests.helpers import make_patient

PASSWORD = "correct horse battery staple"


def console_app(pool: asyncpg.Pool, rt: runtime.Runtime, password: str | None) -> web.Application:
    """A bare app holding the pool and broker, with only the console mounted."""
    app = web.Application()
    app[POOL] = pool
    app[BROKER] = rt.broker
    admin.setup(app, BotSettings(), rt.keyring, settings=AdminSettings(password=password))
    return app


@pytest.fixture
async def console(pipeline_runtime: runtime.Runtime, pool: asyncpg.Pool) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(console_app(pool, pipeline_runtime, PASSWORD))) as client:
        yield client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


async def login(client: TestClient, **fields: str) -> web.StreamResponse:
    """Open the login form, then post ``fields`` (password= or api_key=) with its CSRF token."""
    form = await client.get("/admin/login")
    token = csrf_of(await form.text())
    response: web.StreamResponse = await client.post(
        "/admin/login", data={"csrf": token, **fields}, allow_redirects=False
    )
    return response


async def session_csrf(client: TestClient, path: str = "/admin/sync-runs") -> str:
    response = await client.get(path)
    assert response.status == 200, await response.text()
    return csrf_of(await response.text())


@dataclass(frozen=True)
class Seeded:
    tenant_id: int
    slug: str
    admin_key: str
    read_key: str
    connection_id: int
    failed_run_id: int
    log_id: int
    delivery_id: int
    endpoint_id: int


async def seed_tenant(pool: asyncpg.Pool, keyring: Keyring, slug: str, tmp: Path) -> Seeded:
    """A tenant with a patient, a failed sync run, a delivered notification and a failed webhook."""
    tenant_id, user_id, connection_id, channel_id = await make_patient(
        pool, keyring, tenant=slug, alert_file=tmp / f"{slug}.jsonl"
    )
    async with pool.acquire() as conn:
        admin_key = (await api_keys.create(conn, tenant_id, "ops", ["admin"]))[1]
        read_key = (await api_keys.create(conn, tenant_id, "viewer", ["read"]))[1]
        run_id = await conn.fetchval(
            "INSERT INTO sync_runs (connection_id, trigger, status, attempts, error, started_at, finished_at,"
            " rows_received, rows_written)"
            " VALUES ($1, 'manual', 'failed', 4, $2, now() - interval '3 seconds', now(), 12, 0) RETURNING id",
            connection_id,
            f"ProviderDown: {slug} upstream answered 503",
        )
        alert_id = await conn.fetchval(
            "INSERT INTO alerts (user_id, category, severity, title, body, dedupe_key, kind)"
            " VALUES ($1, 'cardio', 'critical', $2, 'body', $3, 'clinical') RETURNING id",
            user_id,
            f"High resting heart rate for {slug}",
            f"admin-test-{slug}-{secrets.token_hex(4)}",
        )
        log_id = await conn.fetchval(
            "INSERT INTO notification_logs (alert_id, channel_id, attempt, status, detail, finished_at,"
            " error_class, latency_ms, http_status) VALUES ($1, $2, 1, 'failed', 'peer said 500', now(),"
            " 'transient', 87, 500) RETURNING id",
            alert_id,
            channel_id,
        )
        endpoint, _ = await stored_webhooks.create(
            conn,
            keyring,
            tenant_id=tenant_id,
            url=f"https://hooks.{slug}.example/cb?token=sekrit",
            events=["sync.completed"],
            description="",
        )
        event_id = await events.publish(conn, tenant_id, "sync.completed", {"run_id": run_id}, dispatched=True)
        delivery_id = await stored_webhooks.create_delivery(conn, event_id, endpoint.id)
        await stored_webhooks.record_attempt(
            conn,
            delivery_id,
            1,
            http_status=410,
            latency_ms=42,
            response_body="gone",
            error_class="gone",
            detail="receiver answered 410",
        )
        await stored_webhooks.fail(conn, delivery_id, endpoint.id, "receiver answered 410")
    return Seeded(tenant_id, slug, admin_key, read_key, connection_id, run_id, log_id, delivery_id, endpoint.id)


async def make_tenant(pool: asyncpg.Pool, slug: str) -> int:
    async with pool.acquire() as conn:
        return await tenants.ensure_tenant(conn, slug, slug.title())
