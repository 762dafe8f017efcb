"""The app with its browser pages and provider webhooks, on the pipeline's database."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import make_app
from bot.web import WebSettings
from bot.web.provider_hooks import WEB_SETTINGS
from pipeline import runtime
from pipeline.providers import PROVIDERS
from pipeline.providers.whoop import Whoop
from tests.bot.api.conftest import Tenant, make_tenant
from tests.fakes.whoop import FakeWhoop

SETTINGS = WebSettings(
    oura_verification_token="oura-handshake-token",
    withings_notify_token="withings-notify-token",
    push_tolerance=timedelta(minutes=5),
)


@pytest.fixture
async def client(pipeline_runtime: runtime.Runtime, pool: asyncpg.Pool) -> AsyncIterator[TestClient]:
    app = make_app(pool, pipeline_runtime.broker)
    app[WEB_SETTINGS] = SETTINGS
    async with TestClient(TestServer(app)) as found:
        yield found


@pytest.fixture
async def clinic(pool: asyncpg.Pool) -> Tenant:
    return await make_tenant(pool, f"web-{secrets.token_hex(4)}-a")


@pytest.fixture
async def other(pool: asyncpg.Pool) -> Tenant:
    return await make_tenant(pool, f"web-{secrets.token_hex(4)}-b")


@pytest.fixture(scope="module")
def fake_whoop() -> Iterator[FakeWhoop]:
    server = FakeWhoop().start()
    yield server
    server.stop()


@pytest.fixture
def whoop(fake_whoop: FakeWhoop, monkeypatch: pytest.MonkeyPatch) -> Whoop:
    """WHOOP, pointed at the local fake, for this test only."""
    provider = Whoop.from_env(fake_whoop.env() | {"PROVIDER_TIMEOUT_SECONDS": "5"})
    monkeypatch.setitem(PROVIDERS, "whoop", provider)
    return provider
