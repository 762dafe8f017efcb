"""The web app over real HTTP on loopback: health, readiness, and errors as JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from dramatiq.brokers.redis import RedisBroker

from bot.app import make_app
from pipeline import runtime


@pytest.fixture
async def client(pipeline_runtime: runtime.Runtime, pool: asyncpg.Pool) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(make_app(pool, pipeline_runtime.broker))) as found:
        yield found


async def test_health_answers_ok(client: TestClient) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_ready_checks_postgres_and_redis(client: TestClient) -> None:
    response = await client.get("/readyz")
    assert response.status == 200
    assert (await response.json())["checks"] == {"postgres": "ok", "redis": "ok"}


async def test_ready_is_503_and_names_redis_when_redis_is_gone(pool: asyncpg.Pool) -> None:
    dead = RedisBroker(url="redis://127.0.0.1:1/0")
    async with TestClient(TestServer(make_app(pool, dead))) as client:
        response = await client.get("/readyz")
        body = await response.json()
    assert response.status == 503
    assert body["checks"]["postgres"] == "ok" and body["checks"]["redis"].startswith("unreachable")


async def test_an_unknown_route_is_a_json_404(client: TestClient) -> None:
    response = await client.get("/nope")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"


async def test_a_wrong_method_is_a_json_405(client: TestClient) -> None:
    response = await client.post("/healthz", data=b"{")
    assert response.status == 405
    assert (await response.json())["error"]["code"] == "method_not_allowed"
