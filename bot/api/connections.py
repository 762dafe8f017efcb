"""A user's wearable connections: list (never tokens), connect, disconnect.

``POST`` with ``{"provider": "simulator", "scenario": …}`` connects the simulator at once and
starts the initial sync; with an OAuth provider (``{"provider": "oura"}``) it returns the URL to
send the user to, carrying a state bound to this user that expires in 15 minutes.  Junction and
Libre (read through Junction) connect at once, as the simulator does: ``{"provider": "junction",
"junction_user_id": …, "timezone": …}`` enrols a person Junction already knows; without
``junction_user_id`` the person gets a Junction user (``client_user_id`` ``cb-u<user id>``) and
the answer carries ``link_url``, the Junction Link page where they connect their devices.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from bot.api.auth import require
from bot.api.body import json_body, string_field, unknown_fields
from bot.api.context import keyring, public_url
from bot.api.errors import ApiError, invalid, not_found
from bot.api.openapi import Routes, Schema, listing
from bot.api.params import iso, path_id
from bot.api.users import _timezone, owned
from bot.state import pool
from db import connections, events, ingest, oauth_states
from pipeline import triggers
from pipeline.errors import PermanentSyncError, TransientSyncError
from pipeline.providers import PROVIDERS
from pipeline.providers.junction import Junction
from pipeline.providers.simulator import SCENARIOS, issue_tokens

DISCONNECTED = "connection.disconnected"
_TIME = {"type": ["string", "null"], "format": "date-time"}
CONNECTION: Schema = {
    "type": "object",
    "required": ["id", "user_id", "provider", "status", "status_reason", "settings", "last_synced_at", "created_at"],
    "properties": {
        "id": {"type": "integer"},
        "user_id": {"type": "integer"},
        "provider": {"type": "string"},
        "status": {"enum": ["active", "inactive", "revoked", "error"]},
        "status_reason": {"type": ["string", "null"]},
        "settings": {"type": "object"},
        "last_synced_at": _TIME,
        "created_at": {"type": "string", "format": "date-time"},
    },
}
NEW_CONNECTION: Schema = {
    "type": "object",
    "required": ["provider"],
    "properties": {
        "provider": {"type": "string", "description": "simulator, or an OAuth provider such as oura"},
        "scenario": {"enum": sorted(SCENARIOS), "description": "Simulator only: an injected condition."},
        "junction_user_id": {
            "type": "string",
            "description": "Junction and libre only (required): the person's Junction user id.",
        },
        "timezone": {
            "type": "string",
            "description": "Junction and libre only: the IANA zone LibreView's wall-clock times are read in.",
        },
    },
}
CONNECTED: Schema = {
    "type": "object",
    "required": ["connection", "sync_run_id"],
    "properties": {
        "connection": CONNECTION,
        "sync_run_id": {"type": "integer"},
        "link_url": {"type": "string", "description": "Junction only: where the person connects their devices."},
    },
}
AUTHORIZE: Schema = {
    "type": "object",
    "required": ["authorize_url", "expires_at"],
    "properties": {"authorize_url": {"type": "string"}, "expires_at": {"type": "string", "format": "date-time"}},
}
_SELECT = "SELECT id, user_id, provider, status, status_reason, settings, last_synced_at, created_at FROM connections"


def public(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "user_id": row["user_id"],
        "provider": row["provider"],
        "status": row["status"],
        "status_reason": row["status_reason"],
        "settings": row["settings"],
        "last_synced_at": iso(row["last_synced_at"]),
        "created_at": row["created_at"].isoformat(),
    }


async def list_connections(request: web.Request) -> web.Response:
    key = require(request, "read")
    user_id = path_id(request, "user_id", "user")
    async with pool(request).acquire() as conn:
        await owned(conn, key.tenant_id, user_id)
        rows = await conn.fetch(_SELECT + " WHERE user_id = $1 ORDER BY id", user_id)
    return web.json_response({"data": [public(r) for r in rows]})


async def create_connection(request: web.Request) -> web.Response:
    key = require(request, "write")
    user_id = path_id(request, "user_id", "user")
    body = await json_body(request)
    unknown_fields(body, {"provider", "scenario", "junction_user_id", "timezone"})
    provider_id = string_field(body, "provider", required=True)
    scenario = body.get("scenario")
    async with pool(request).acquire() as conn:
        await owned(conn, key.tenant_id, user_id)
    provider = PROVIDERS.get(provider_id or "")
    if provider is None or provider_id == ingest.PROVIDER:
        known = ", ".join(sorted(PROVIDERS))
        raise invalid(f"unknown provider; this server connects {known}", {"field": "provider"})
    if scenario is not None and (provider_id != "simulator" or scenario not in SCENARIOS):
        raise invalid(f"scenario is for the simulator: one of {', '.join(sorted(SCENARIOS))}", {"field": "scenario"})
    if not isinstance(provider, Junction) and ("junction_user_id" in body or "timezone" in body):
        raise invalid("junction_user_id and timezone are for junction and libre", {"field": "provider"})
    if provider_id == "simulator":
        return await _connect_simulator(request, user_id, scenario)
    if isinstance(provider, Junction):
        return await _enrol_junction(request, user_id, provider, body)
    authorize_url = getattr(provider, "authorize_url", None)
    if authorize_url is None:
        raise invalid(f"{provider_id} cannot be connected through the API", {"field": "provider"})
    if not provider.available:
        raise ApiError(409, "provider_unavailable", f"{provider_id} is not configured on this server")
    redirect_uri = f"{public_url(request)}/oauth/{provider_id}/callback"
    async with pool(request).acquire() as conn:
        state, expires_at = await oauth_states.create(conn, user_id, provider.id, redirect_uri)
    return web.json_response(
        {"authorize_url": authorize_url(redirect_uri, state), "expires_at": expires_at.isoformat()}
    )


async def _enrol_junction(request: web.Request, user_id: int, provider: Junction, body: dict[str, Any]) -> web.Response:
    """Connect a person through Junction: the one named by ``junction_user_id``, else a Junction
    user made (or found) for ours, with a Link URL.  The id goes in the settings, and in
    ``provider_user_id`` so Junction's pushes find the connection."""
    account = string_field(body, "junction_user_id", required=False, max_length=128)
    timezone = _timezone(body)
    if not provider.available:
        raise ApiError(409, "provider_unavailable", f"{provider.id} is not configured on this server")
    link_url = None
    if account is None:
        try:
            link = await provider.link(f"cb-u{user_id}")
        except TransientSyncError as exc:
            raise ApiError(503, "provider_unreachable", str(exc), headers={"Retry-After": "30"}) from None
        except PermanentSyncError as exc:
            raise ApiError(502, "provider_refused", str(exc)) from None
        account, link_url = link.user_id, link.url
    settings: dict[str, Any] = {"user_id": account.strip()} | ({"timezone": timezone} if timezone else {})
    return await _connect_now(request, user_id, provider.id, settings, {}, account.strip(), link_url)


async def _connect_simulator(request: web.Request, user_id: int, scenario: str | None) -> web.Response:
    settings: dict[str, Any] = {"seed": f"user-{user_id}"} | ({"scenarios": [scenario]} if scenario else {})
    return await _connect_now(request, user_id, "simulator", settings, issue_tokens(), None)


async def _connect_now(
    request: web.Request,
    user_id: int,
    provider_id: str,
    settings: dict[str, Any],
    tokens: dict[str, Any],
    provider_user_id: str | None,
    link_url: str | None = None,
) -> web.Response:
    """Create (or re-activate) the connection, publish connection.created and start the initial
    sync: 201 with the connection and the run (and ``link_url`` when given)."""
    async with pool(request).acquire() as conn, conn.transaction():
        connection_id = await connections.upsert(
            conn, keyring(request), user_id=user_id, provider=provider_id, tokens=tokens, settings=settings
        )
        if provider_user_id is not None:
            await conn.execute(
                "UPDATE connections SET provider_user_id = $2 WHERE id = $1", connection_id, provider_user_id
            )
        tenant_id = await conn.fetchval("SELECT tenant_id FROM users WHERE id = $1", user_id)
        data = {"connection_id": connection_id, "user_id": user_id, "provider": provider_id}
        await events.publish(conn, tenant_id, events.CONNECTION_CREATED, data)
    run_id = await triggers.request_sync(pool(request), connection_id, "initial")
    async with pool(request).acquire() as conn:
        row = await conn.fetchrow(_SELECT + " WHERE id = $1", connection_id)
    found = {"connection": public(row), "sync_run_id": run_id} | ({"link_url": link_url} if link_url else {})
    return web.json_response(found, status=201)


async def delete_connection(request: web.Request) -> web.Response:
    """Revoke: status 'revoked', tokens wiped, a connection.disconnected event; idempotent."""
    key = require(request, "write")
    user_id = path_id(request, "user_id", "user")
    connection_id = path_id(request, "connection_id", "connection")
    async with pool(request).acquire() as conn, conn.transaction():
        await owned(conn, key.tenant_id, user_id)
        row = await conn.fetchrow(
            "SELECT provider, status FROM connections WHERE id = $1 AND user_id = $2 FOR UPDATE", connection_id, user_id
        )
        if row is None:
            raise not_found("connection")
        if row["status"] != "revoked":
            await conn.execute(
                "UPDATE connections SET status = 'revoked', status_reason = 'disconnected through the API',"
                " tokens_sealed = NULL, updated_at = now() WHERE id = $1",
                connection_id,
            )
            data = {"connection_id": connection_id, "user_id": user_id, "provider": row["provider"]}
            await events.publish(conn, key.tenant_id, DISCONNECTED, data)
    return web.Response(status=204)


def add_routes(routes: Routes) -> None:
    tag, base = "connections", "/v1/users/{user_id}/connections"
    routes.add(
        "GET",
        base,
        list_connections,
        scope="read",
        tag=tag,
        summary="The user's connections",
        responses={200: listing(CONNECTION)},
    )
    routes.add(
        "POST",
        base,
        create_connection,
        scope="write",
        tag=tag,
        summary="Connect the simulator or a Junction user (201, initial sync started), or start an OAuth flow (200)",
        body=NEW_CONNECTION,
        responses={200: AUTHORIZE, 201: CONNECTED},
        errors=(409, 502),
    )
    routes.add(
        "DELETE",
        base + "/{connection_id}",
        delete_connection,
        scope="write",
        tag=tag,
        summary="Disconnect: revoke, wipe the tokens, emit connection.disconnected",
        responses={204: None},
    )
