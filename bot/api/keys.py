"""API keys over the API (admin scope): create, list, revoke.  A key is shown once, at creation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from bot.api.auth import require
from bot.api.body import json_body
from bot.api.errors import invalid, not_found
from bot.state import pool
from db import api_keys


def _public(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "prefix": row["prefix"],
        "scopes": list(row["scopes"]),
        "expires_at": row["expires_at"].isoformat() if row["expires_at"] else None,
        "revoked_at": row["revoked_at"].isoformat() if row["revoked_at"] else None,
        "last_used_at": row["last_used_at"].isoformat() if row["last_used_at"] else None,
        "created_at": row["created_at"].isoformat(),
    }


async def create_key(request: web.Request) -> web.Response:
    key = require(request, "admin")
    body = await json_body(request)
    name, scopes, days = body.get("name", "api key"), body.get("scopes"), body.get("expires_in_days")
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        raise invalid("name must be a string of 1 to 100 characters", {"field": "name"})
    if not isinstance(scopes, list) or not scopes or not set(scopes) <= set(api_keys.SCOPES):
        raise invalid(f"scopes must be a non-empty list of {', '.join(api_keys.SCOPES)}", {"field": "scopes"})
    if days is not None and (not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 3650):
        raise invalid("expires_in_days must be an integer from 1 to 3650", {"field": "expires_in_days"})
    expires_at = datetime.now(UTC) + timedelta(days=days) if days else None
    async with pool(request).acquire() as conn:
        created, plain = await api_keys.create(conn, key.tenant_id, name, scopes, expires_at)
        row = await conn.fetchrow("SELECT * FROM api_keys WHERE id = $1", created.id)
    return web.json_response(_public(row) | {"key": plain}, status=201)


async def list_keys(request: web.Request) -> web.Response:
    key = require(request, "admin")
    rows = await pool(request).fetch(
        "SELECT * FROM api_keys WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT 500", key.tenant_id
    )
    return web.json_response({"data": [_public(r) for r in rows]})


async def revoke_key(request: web.Request) -> web.Response:
    key = require(request, "admin")
    try:
        key_id = int(request.match_info["key_id"])
    except ValueError:
        raise not_found("API key") from None
    async with pool(request).acquire() as conn:
        if not await api_keys.revoke(conn, key.tenant_id, key_id):
            raise not_found("API key")
    return web.Response(status=204)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/api-keys", create_key)
    router.add_get("/v1/api-keys", list_keys)
    router.add_delete("/v1/api-keys/{key_id}", revoke_key)
