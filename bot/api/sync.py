"""Sync on demand (202 with the run's id) and the run's status and counts.

A connection with a run already pending or running gets that run back, not a second one: a
client that retries its POST cannot pile up syncs of one account.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from bot.api.auth import require
from bot.api.body import json_body, string_field, unknown_fields
from bot.api.errors import ApiError, not_found
from bot.api.openapi import Routes, Schema
from bot.api.params import iso, path_id
from bot.api.users import owned
from bot.state import pool
from db import ingest
from pipeline import triggers

STARTED: Schema = {"type": "object", "required": ["sync_run_id"], "properties": {"sync_run_id": {"type": "integer"}}}
_COUNT = {"type": "integer", "minimum": 0}
_TIME = {"type": ["string", "null"], "format": "date-time"}
RUN: Schema = {
    "type": "object",
    "required": ["id", "connection_id", "user_id", "provider", "trigger", "status", "rows_received", "rows_written",
                 "rows_unchanged", "rows_invalid", "duration_ms", "error", "created_at", "finished_at"],
    "properties": {
        "id": {"type": "integer"},
        "connection_id": {"type": "integer"},
        "user_id": {"type": "integer"},
        "provider": {"type": "string"},
        "trigger": {"type": "string"},
        "status": {"enum": ["pending", "running", "completed", "failed", "skipped"]},
        "window_start": _TIME,
        "window_end": _TIME,
        "rows_received": _COUNT,
        "rows_written": _COUNT,
        "rows_unchanged": _COUNT,
        "rows_invalid": _COUNT,
        "duration_ms": {"type": ["integer", "null"]},
        "error": {"type": ["string", "null"]},
        "created_at": {"type": "string", "format": "date-time"},
        "finished_at": _TIME,
        "analysed_at": _TIME,
    },
}  # fmt: skip
SOURCE: Schema = {"type": "object", "required": ["source"], "properties": {"source": {"type": "string"}}}


async def _start(request: web.Request, connection: asyncpg.Record) -> web.Response:
    if connection["provider"] == ingest.PROVIDER:
        raise ApiError(409, "not_syncable", "this connection is push-only: send readings to POST /v1/ingest")
    if connection["status"] != "active":
        raise ApiError(409, "connection_inactive", f"the connection is {connection['status']}; connect it again")
    async with pool(request).acquire() as conn:
        open_run = await conn.fetchval(
            "SELECT id FROM sync_runs WHERE connection_id = $1 AND status IN ('pending', 'running')"
            " ORDER BY id DESC LIMIT 1",
            connection["id"],
        )
    run_id = open_run or await triggers.request_sync(pool(request), connection["id"], "manual")
    return web.json_response({"sync_run_id": run_id}, status=202)


async def sync_connection(request: web.Request) -> web.Response:
    key = require(request, "write")
    user_id = path_id(request, "user_id", "user")
    connection_id = path_id(request, "connection_id", "connection")
    async with pool(request).acquire() as conn:
        await owned(conn, key.tenant_id, user_id)
        row = await conn.fetchrow(
            "SELECT id, provider, status FROM connections WHERE id = $1 AND user_id = $2", connection_id, user_id
        )
    if row is None:
        raise not_found("connection")
    return await _start(request, row)


async def sync_source(request: web.Request) -> web.Response:
    key = require(request, "write")
    user_id = path_id(request, "user_id", "user")
    body = await json_body(request)
    unknown_fields(body, {"source"})
    source = string_field(body, "source", required=True)
    async with pool(request).acquire() as conn:
        await owned(conn, key.tenant_id, user_id)
        row = await conn.fetchrow(
            "SELECT id, provider, status FROM connections WHERE user_id = $1 AND provider = $2", user_id, source
        )
    if row is None:
        raise not_found(f"{source} connection")
    return await _start(request, row)


def public(row: asyncpg.Record) -> dict[str, Any]:
    found = dict(row)
    for name in ("window_start", "window_end", "created_at", "finished_at", "analysed_at"):
        found[name] = iso(found[name])
    return found


async def get_run(request: web.Request) -> web.Response:
    key = require(request, "read")
    run_id = path_id(request, "run_id", "sync run")
    row = await pool(request).fetchrow(
        "SELECT r.id, r.connection_id, c.user_id, c.provider, r.trigger, r.status, r.window_start, r.window_end,"
        " r.rows_received, r.rows_written, r.rows_unchanged, r.rows_invalid, r.duration_ms, r.error,"
        " r.created_at, r.finished_at, r.analysed_at"
        " FROM sync_runs r JOIN connections c ON c.id = r.connection_id JOIN users u ON u.id = c.user_id"
        " WHERE r.id = $1 AND u.tenant_id = $2",
        run_id,
        key.tenant_id,
    )
    if row is None:
        raise not_found("sync run")
    return web.json_response(public(row))


def add_routes(routes: Routes) -> None:
    tag = "sync"
    routes.add(
        "POST",
        "/v1/users/{user_id}/connections/{connection_id}/sync",
        sync_connection,
        scope="write",
        tag=tag,
        summary="Sync one connection now (202; an open run is returned, not doubled)",
        responses={202: STARTED},
        errors=(409,),
    )
    routes.add(
        "POST",
        "/v1/users/{user_id}/sync",
        sync_source,
        scope="write",
        tag=tag,
        summary="Sync the user's connection to a provider (source), 404 if none, 409 if not active",
        body=SOURCE,
        responses={202: STARTED},
        errors=(409,),
    )
    routes.add(
        "GET", "/v1/sync-runs/{run_id}", get_run, scope="read", tag=tag, summary="A sync run's status and counts",
        responses={200: RUN},
    )  # fmt: skip
