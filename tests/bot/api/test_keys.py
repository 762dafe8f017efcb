"""API keys: bearer auth, scopes, tenant isolation, expiry and revocation."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from bot.api.auth import KEYS, KeyCache
from bot.app import make_app
from db import api_keys
from db.api_keys import ApiKey
from pipeline import runtime
from tests.bot.api.conftest import Tenant


async def test_no_key_a_malformed_key_and_an_unknown_key_are_401_with_a_json_error(
    api: TestClient, clinic: Tenant
) -> None:
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer cbk_00000000_nope"}):
        response = await api.get("/v1/api-keys", headers=headers)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        error = (await response.json())["error"]
        assert error["code"] == "unauthorized" and error["message"] and "details" in error


async def test_a_key_with_the_right_prefix_but_wrong_secret_is_401(api: TestClient, clinic: Tenant) -> None:
    forged = clinic.keys["admin"][:-4] + "AAAA"
    response = await api.get("/v1/api-keys", headers={"Authorization": f"Bearer {forged}"})
    assert response.status == 401


async def test_scopes_nest_admin_over_write_over_read(api: TestClient, clinic: Tenant) -> None:
    assert (await api.get("/v1/api-keys", headers=clinic.auth("admin"))).status == 200
    for scope in ("read", "write"):
        response = await api.get("/v1/api-keys", headers=clinic.auth(scope))
        assert response.status == 403
        assert "'admin' scope" in (await response.json())["error"]["message"]


async def test_a_created_key_is_shown_once_works_and_lists_without_its_secret(
    api: TestClient, clinic: Tenant, pool: asyncpg.Pool
) -> None:
    response = await api.post(
        "/v1/api-keys", json={"name": "ehr bridge", "scopes": ["read"], "expires_in_days": 30}, headers=clinic.auth()
    )
    assert response.status == 201
    created = await response.json()
    assert created["key"].startswith(f"cbk_{created['prefix']}_") and created["scopes"] == ["read"]
    assert datetime.fromisoformat(created["expires_at"]) > datetime.now(UTC) + timedelta(days=29)

    listed = await (await api.get("/v1/api-keys", headers=clinic.auth())).json()
    assert created["key"] not in str(listed)
    assert created["prefix"] in [k["prefix"] for k in listed["data"]]
    stored = await pool.fetchval("SELECT key_hash FROM api_keys WHERE id = $1", created["id"])
    assert created["key"].encode() not in stored
    assert (await api.get("/v1/api-keys", headers={"Authorization": f"Bearer {created['key']}"})).status == 403


async def test_another_tenant_s_key_is_404_and_a_revoked_key_stops_working(
    api: TestClient, clinic: Tenant, other: Tenant, pool: asyncpg.Pool
) -> None:
    theirs = await pool.fetchval("SELECT id FROM api_keys WHERE tenant_id = $1 AND name = 'read'", other.id)
    assert (await api.delete(f"/v1/api-keys/{theirs}", headers=clinic.auth())).status == 404
    assert (await api.delete("/v1/api-keys/not-a-number", headers=clinic.auth())).status == 404

    assert (await api.delete(f"/v1/api-keys/{theirs}", headers=other.auth())).status == 204
    assert (await api.get("/v1/api-keys", headers=other.auth("read"))).status == 401


async def test_an_expired_key_is_401(api: TestClient, clinic: Tenant, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        _, plain = await api_keys.create(conn, clinic.id, "old", ["admin"], datetime.now(UTC) - timedelta(seconds=1))
    assert (await api.get("/v1/api-keys", headers={"Authorization": f"Bearer {plain}"})).status == 401


async def test_bad_bodies_get_a_clear_4xx(api: TestClient, clinic: Tenant) -> None:
    cases = [
        ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "malformed_json"),
        ({"data": b"[1]", "headers": {"Content-Type": "application/json"}}, 400, "malformed_json"),
        ({"data": b"name=x", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 415, None),
        ({"json": {"scopes": ["root"]}}, 422, "invalid"),
        ({"json": {"scopes": ["read"], "expires_in_days": 0}}, 422, "invalid"),
        ({"json": {"scopes": ["read"], "name": ""}}, 422, "invalid"),
    ]
    for kwargs, status, code in cases:
        headers = clinic.auth() | kwargs.pop("headers", {})  # type: ignore[operator]
        response = await api.post("/v1/api-keys", headers=headers, **kwargs)  # type: ignore[arg-type]
        assert response.status == status, kwargs
        if code:
            assert (await response.json())["error"]["code"] == code


async def test_text_postgres_cannot_store_is_a_422_naming_where_it_is_anywhere_in_the_body(
    api: TestClient, clinic: Tenant
) -> None:
    for raw, field in (
        (b'{"scopes": ["read"], "name": "ok", "note": {"deep": ["a\\u0000b"]}}', "note.deep[0]"),
        (b'{"scopes": ["read"], "name": "\\ud800"}', "name"),
    ):
        response = await api.post(
            "/v1/api-keys", data=raw, headers=clinic.auth() | {"Content-Type": "application/json"}
        )
        assert response.status == 422
        assert (await response.json())["error"]["details"] == {"field": field}


async def test_a_key_revoked_elsewhere_stops_within_the_cache_s_lifetime(
    pipeline_runtime: runtime.Runtime, clinic: Tenant, pool: asyncpg.Pool
) -> None:
    """Revoked by another web process (here: straight in the database), a key verified moments
    ago is still taken from this process's cache, and refused once that entry lapses."""
    app = make_app(pool, pipeline_runtime.broker)
    app[KEYS] = KeyCache(ttl=0.5)
    async with pool.acquire() as conn:
        key, plain = await api_keys.create(conn, clinic.id, "bridge", ["read"])
    auth = {"Authorization": f"Bearer {plain}"}
    async with TestClient(TestServer(app)) as api:
        assert (await api.get("/v1/users", headers=auth)).status == 200
        await pool.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", key.id)
        assert (await api.get("/v1/users", headers=auth)).status == 200
        await asyncio.sleep(0.6)
        assert (await api.get("/v1/users", headers=auth)).status == 401


def test_a_cached_key_is_dropped_when_it_expires_or_lapses() -> None:
    cache = KeyCache(ttl=60)
    soon = ApiKey(1, 1, "k", "abcd1234", ("read",), datetime.now(UTC) + timedelta(milliseconds=50))
    later = ApiKey(2, 1, "k", "abcd5678", ("read",), None)
    cache.put(b"soon", soon)
    cache.put(b"later", later)
    assert cache.get(b"soon") == soon and cache.get(b"later") == later and cache.get(b"unknown") is None
    time.sleep(0.06)
    assert cache.get(b"soon") is None and cache.get(b"later") == later
    lapsed = KeyCache(ttl=0)
    lapsed.put(b"later", later)
    assert lapsed.get(b"later") is None
