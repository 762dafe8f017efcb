"""Who gets into the console: password and admin-key logins, refusals, CSRF and tenant scoping."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import make_app
from db import admin_sessions, api_keys
from pipeline import runtime
from tests.bot.admin.conftest import PASSWORD, console_app, login, seed_tenant, session_csrf


async def test_no_session_redirects_every_page_to_the_login_form(console: TestClient) -> None:
    for path in ("/admin", "/admin/queues", "/admin/sync-runs", "/admin/deliveries", "/admin/scheduler"):
        response = await console.get(path, allow_redirects=False)
        assert response.status == 302, path
        assert response.headers["Location"] == "/admin/login"


async def test_the_password_logs_in_with_a_strict_httponly_cookie_for_the_whole_deployment(console: TestClient) -> None:
    response = await login(console, password=PASSWORD)
    assert response.status == 303 and response.headers["Location"] == "/admin/queues"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie
    assert "Secure" not in cookie  # PUBLIC_URL is http here
    page = await console.get("/admin/queues")
    assert page.status == 200
    assert "whole deployment" in await page.text()


async def test_a_wrong_password_is_refused_and_no_session_is_made(console: TestClient) -> None:
    response = await login(console, password="not the password at all")
    assert response.status == 401
    assert "Wrong password." in await response.text()
    assert (await console.get("/admin/queues", allow_redirects=False)).status == 302


async def test_password_login_is_off_without_admin_password(
    pipeline_runtime: runtime.Runtime, pool: asyncpg.Pool
) -> None:
    async with TestClient(TestServer(console_app(pool, pipeline_runtime, None))) as client:
        form = await client.get("/admin/login")
        assert "Password login is off" in await form.text()
        response = await login(client, password="")
        assert response.status == 401
        response = await login(client, password="anything at all, really")
        assert response.status == 401 and "ADMIN_PASSWORD is not set" in await response.text()
        assert (await client.get("/admin/queues", allow_redirects=False)).status == 302


async def test_the_app_mounts_the_console_and_it_redirects_without_a_session(
    pipeline_runtime: runtime.Runtime, pool: asyncpg.Pool
) -> None:
    async with TestClient(TestServer(make_app(pool, pipeline_runtime.broker))) as client:
        response = await client.get("/admin/sync-runs", allow_redirects=False)
        assert response.status == 302 and response.headers["Location"] == "/admin/login"


async def test_an_admin_key_logs_in_and_a_read_key_or_a_wrong_key_is_refused(
    console: TestClient, pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime, tmp_path: Path
) -> None:
    seeded = await seed_tenant(pool, pipeline_runtime.keyring, "admin-keys", tmp_path)
    assert (await login(console, api_key=seeded.read_key)).status == 401
    assert (await login(console, api_key=seeded.admin_key + "x")).status == 401
    assert (await login(console, api_key="cbk_nope_nope")).status == 401
    response = await login(console, api_key=seeded.admin_key)
    assert response.status == 303 and response.headers["Location"] == "/admin/sync-runs"
    page = await console.get("/admin/sync-runs")
    assert f"tenant #{seeded.tenant_id}" in await page.text()


async def test_a_revoked_key_ends_its_console_session(
    console: TestClient, pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime, tmp_path: Path
) -> None:
    seeded = await seed_tenant(pool, pipeline_runtime.keyring, "admin-revoke", tmp_path)
    await login(console, api_key=seeded.admin_key)
    assert (await console.get("/admin/sync-runs", allow_redirects=False)).status == 200
    async with pool.acquire() as conn:
        key = await api_keys.authenticate(conn, seeded.admin_key)
        assert key is not None
        await api_keys.revoke(conn, seeded.tenant_id, key.id)
    assert (await console.get("/admin/sync-runs", allow_redirects=False)).status == 302


@pytest.mark.parametrize("token", [None, "", "forged-token"])
async def test_a_post_without_the_sessions_csrf_token_is_a_403(
    console: TestClient, pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime, tmp_path: Path, token: str | None
) -> None:
    seeded = await seed_tenant(
        pool, pipeline_runtime.keyring, f"admin-csrf-{ {None: 'none', '': 'empty'}.get(token, 'forged') }", tmp_path
    )
    await login(console, password=PASSWORD)
    data = {"run_id": str(seeded.failed_run_id)} | ({"csrf": token} if token is not None else {})
    response = await console.post("/admin/sync-runs/requeue", data=data, allow_redirects=False)
    assert response.status == 403
    assert "CSRF" in await response.text()
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT status FROM sync_runs WHERE id = $1", seeded.failed_run_id) == "failed"


async def test_a_login_post_without_the_forms_token_is_a_403(console: TestClient) -> None:
    response = await console.post("/admin/login", data={"password": PASSWORD, "csrf": "guess"}, allow_redirects=False)
    assert response.status == 403


async def test_logout_ends_the_session(console: TestClient) -> None:
    await login(console, password=PASSWORD)
    token = await session_csrf(console)
    response = await console.post("/admin/logout", data={"csrf": token}, allow_redirects=False)
    assert response.status == 303
    assert (await console.get("/admin/queues", allow_redirects=False)).status == 302


async def test_a_key_session_sees_only_its_tenant_and_not_the_deployment_pages(
    console: TestClient, pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime, tmp_path: Path
) -> None:
    ours = await seed_tenant(pool, pipeline_runtime.keyring, "admin-ours", tmp_path)
    theirs = await seed_tenant(pool, pipeline_runtime.keyring, "admin-theirs", tmp_path)
    await login(console, api_key=ours.admin_key)
    for path in ("/admin/sync-runs", "/admin/deliveries", "/admin/deliveries?kind=webhooks", "/admin/connections"):
        # Even asking for the other tenant by slug shows ours only.
        html = await (await console.get(f"{path}{'&' if '?' in path else '?'}tenant=admin-theirs")).text()
        assert "admin-ours" in html, path
        assert "admin-theirs" not in html, path
    for path in ("/admin/queues", "/admin/scheduler"):
        assert (await console.get(path)).status == 403, path
    token = await session_csrf(console)
    # Their failed run and their webhook delivery are out of reach: nothing changes.
    await console.post("/admin/sync-runs/requeue", data={"csrf": token, "run_id": str(theirs.failed_run_id)})
    await console.post("/admin/deliveries/replay", data={"csrf": token, "delivery_id": str(theirs.delivery_id)})
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT status FROM sync_runs WHERE id = $1", theirs.failed_run_id) == "failed"
        assert await conn.fetchval("SELECT status FROM webhook_deliveries WHERE id = $1", theirs.delivery_id) == (
            "failed"
        )


async def test_sessions_are_stored_hashed(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        plain, session = await admin_sessions.create(conn)
        assert session.deployment_wide
        stored = await conn.fetchval("SELECT count(*) FROM admin_sessions WHERE id_hash = $1::text::bytea", plain)
        assert stored == 0
        assert await admin_sessions.find(conn, plain) == session
        await admin_sessions.delete(conn, plain)
        assert await admin_sessions.find(conn, plain) is None
