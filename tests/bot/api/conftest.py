"""An API client on the pipeline's database, and keys for two tenants."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import make_app
from db import api_keys, tenants
from pipeline import runtime


@dataclass(frozen=True)
class Tenant:
    id: int
    slug: str
    keys: dict[str, str]  # scope → a key with exactly that scope

    def auth(self, scope: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"}


async def make_tenant(pool: asyncpg.Pool, slug: str) -> Tenant:
    async with pool.acquire() as conn:
        tenant_id = await tenants.ensure_tenant(conn, slug, slug.title())
        keys = {scope: (await api_keys.create(conn, tenant_id, scope, [scope]))[1] for scope in api_keys.SCOPES}
    return Tenant(tenant_id, slug, keys)


@pytest.fixture
async def api(pipeline_runtime: runtime.Runtime, pool: asyncpg.Pool) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(make_app(pool, pipeline_runtime.broker))) as client:
        yield client


@pytest.fixture
async def clinic(pool: asyncpg.Pool, request: pytest.FixtureRequest) -> Tenant:
    return await make_tenant(pool, f"clinic-{request.node.name[-20:].lower().replace('_', '-')}-a")


@pytest.fixture
async def other(pool: asyncpg.Pool, request: pytest.FixtureRequest) -> Tenant:
    return await make_tenant(pool, f"clinic-{request.node.name[-20:].lower().replace('_', '-')}-b")


async def make_user(api: TestClient, tenant: Tenant, external_id: str = "p-1", timezone: str = "UTC") -> int:
    response = await api.post(
        "/v1/users",
        json={"external_id": external_id, "display_name": f"Patient {external_id}", "timezone": timezone},
        headers=tenant.auth("write"),
    )
    assert response.status == 201, await response.text()
    user_id: int = (await response.json())["id"]
    return user_id


async def error_of(response: Any) -> dict[str, Any]:
    """The JSON error body of a 4xx, checked for the house shape."""
    assert response.content_type == "application/json"
    error: dict[str, Any] = (await response.json())["error"]
    assert set(error) == {"code", "message", "details"} and error["message"]
    return error
