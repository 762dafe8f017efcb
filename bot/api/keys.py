"""API keys over the API (admin scope): create, list, revoke.  A key is shown once, at creation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from bot.api.auth import KEYS, require
from bot.api.body import json_body, storable
from bot.api.errors import invalid, not_found
from bot.api.openapi import Routes, Schema, listing
from bot.api.params import path_id
from bot.state import pool
from db import api_keys

_TIME = {"type": ["string", "null"], "format": "date-time"}
KEY: Schema = {
    "type": "object",
    "required": ["id", "name", "prefix", "scopes", "expires_at", "revoked_at", "last_used_at", "created_at"],
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "prefix": {"type": "string"},
        "scopes": {"type": "array", "items": {"enum": list(api_keys.SCOPES)}},
        "expires_at": _TIME,
        "revoked_at": _TIME,
        "last_used_at": _TIME,
        "created_at": {"type": "string", "format": "date-time"},
    },
}
NEW_KEY: Schema = {
    "type": "object",
    "required": ["scopes"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 100},
        "scopes": {"type": "array", "minItems": 1, "items": {"enum": list(api_keys.SCOPES)}},
        "expires_in_days": {"type": ["integer", "null"], "minimum": 1, "maximum": 3650},
    },
}
CREATED_KEY: Schema = {
    "allOf": [KEY, {"type": "object", "required": ["key"], "properties": {"key": {"type": "string"}}}]
}


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
    if not isinstance(name, str) or not 1 <= len(name) <= 100 or not storable(name):
        raise invalid("name must be a string of 1 to 100 characters", {"field": "name"})
    # Strings first: a list holding a dict is unhashable, and set() of it would be a 500.
    if (
        not isinstance(scopes, list)
        or not scopes
        or not all(isinstance(s, str) for s in scopes)
        or not set(scopes) <= set(api_keys.SCOPES)
    ):
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
    key_id = path_id(request, "key_id", "API key")
    async with pool(request).acquire() as conn:
        if not await api_keys.revoke(conn, key.tenant_id, key_id):
            raise not_found("API key")
    request.app[KEYS].clear()  # the revoked key stops here now, not KEY_TTL seconds from now
    return web.Response(status=204)


def add_routes(routes: Routes) -> None:
    tag = "api-keys"
    routes.add(
        "POST",
        "/v1/api-keys",
        create_key,
        scope="admin",
        tag=tag,
        summary="Create an API key (the key is in this response only)",
        body=NEW_KEY,
        responses={201: CREATED_KEY},
    )
    routes.add(
        "GET",
        "/v1/api-keys",
        list_keys,
        scope="admin",
        tag=tag,
        summary="The tenant's keys",
        responses={200: listing(KEY)},
    )
    routes.add(
        "DELETE",
        "/v1/api-keys/{key_id}",
        revoke_key,
        scope="admin",
        tag=tag,
        summary="Revoke a key",
        responses={204: None},
    )
