"""The web app over real HTTP on loopback: health, readiness, and errors as JSON."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from aiohttp import web
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


async def test_a_client_gone_mid_body_is_logged_briefly_and_a_reset_upstream_is_a_500(
    pipeline_runtime: runtime.Runtime, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(pool, pipeline_runtime.broker)
    read = asyncio.Event()

    async def takes_a_body(request: web.Request) -> web.Response:
        try:
            return web.json_response({"bytes": len(await request.read())})
        finally:
            read.set()

    async def upstream_resets(request: web.Request) -> web.Response:
        raise ConnectionResetError("the peer we called reset the connection")

    app.router.add_post("/body", takes_a_body)
    app.router.add_get("/upstream", upstream_resets)
    # Served as the web process serves it (TestServer cancels a handler whose client left).
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        with caplog.at_level(logging.INFO, logger="bot.app"):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10)
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.close()
            await asyncio.wait_for(read.wait(), 5)
            await asyncio.sleep(0.05)
            gone = [r for r in caplog.records if r.name == "bot.app"]
            assert [(r.levelno, r.exc_info) for r in gone] == [(logging.INFO, None)]
            assert "client went away during POST /body" in gone[0].getMessage()

            caplog.clear()
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/upstream") as response:
                assert response.status == 500 and (await response.json())["error"]["code"] == "internal"
            assert [r.levelno for r in caplog.records if r.name == "bot.app"] == [logging.ERROR]
    finally:
        await runner.cleanup()
