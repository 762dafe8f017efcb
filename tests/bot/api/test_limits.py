"""Per-key rate limits (429 with Retry-After), and the per-request time limit (503)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.api.settings import ApiSettings
from bot.app import make_app
from pipeline import runtime
from tests.bot.api.conftest import Tenant, error_of


@pytest.fixture
async def strict_api(pipeline_runtime: runtime.Runtime, pool: asyncpg.Pool) -> AsyncIterator[TestClient]:
    app = make_app(
        pool, pipeline_runtime.broker, limits=ApiSettings(rate_limit_per_minute=3, request_timeout_seconds=1)
    )

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.json_response({})

    app.router.add_get("/v1/slow", slow)  # only on this app: the spec test reads the real one
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_a_key_over_its_rate_gets_429_with_retry_after_and_others_do_not(
    strict_api: TestClient, clinic: Tenant
) -> None:
    statuses = [(await strict_api.get("/v1/users", headers=clinic.auth("read"))).status for _ in range(4)]
    limited = await strict_api.get("/v1/users", headers=clinic.auth("read"))
    assert statuses[:3] == [200, 200, 200] and limited.status == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert (await error_of(limited))["code"] == "rate_limited"
    # The count is per key: the tenant's admin key has its own.
    assert (await strict_api.get("/v1/users", headers=clinic.auth("admin"))).status in (200, 429)


async def test_a_request_over_the_time_limit_is_a_json_503(strict_api: TestClient, clinic: Tenant) -> None:
    response = await strict_api.get("/v1/slow", headers=clinic.auth("write"))
    assert response.status == 503
    assert (await error_of(response))["code"] == "timeout"
