"""Chat tenancy over the API (admin scope): bind a Slack workspace or Discord guild to the key's
tenant, list the bound ones, and issue the enrolment code a user gives the linking page.

Binding a workspace another tenant holds is a 409 (moving one is deliberate: unbind there
first).  A user id of another tenant is a 404.  The enrolment code is shown once.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bot.api.auth import require
from bot.api.body import json_body, string_field, unknown_fields
from bot.api.errors import ApiError, invalid, not_found
from bot.api.openapi import BIGINT_MAX, ID, Routes, Schema, listing
from bot.state import pool
from db import chat

PLATFORMS = ("slack", "discord")
_WORKSPACE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_WORKSPACE_ID: Schema = {"type": "string", "pattern": _WORKSPACE.pattern, "description": "Slack team or "
                         "enterprise id (T…/E…), or Discord guild id"}  # fmt: skip
WORKSPACE: Schema = {
    "type": "object",
    "required": ["id", "platform", "workspace_id", "name", "enabled", "created_at"],
    "properties": {
        "id": {"type": "integer"}, "platform": {"enum": list(PLATFORMS)}, "workspace_id": {"type": "string"},
        "name": {"type": "string"}, "enabled": {"type": "boolean"},
        "created_at": {"type": "string", "format": "date-time"},
    },
}  # fmt: skip
NEW_WORKSPACE: Schema = {
    "type": "object",
    "required": ["platform", "workspace_id"],
    "properties": {"platform": {"enum": list(PLATFORMS)}, "workspace_id": _WORKSPACE_ID,
                   "name": {"type": "string", "minLength": 1, "maxLength": 200}},
}  # fmt: skip
NEW_CODE: Schema = {"type": "object", "required": ["user_id"], "properties": {"user_id": ID}}
CODE: Schema = {
    "type": "object",
    "required": ["code", "user_id", "expires_at"],
    "properties": {"code": {"type": "string"}, "user_id": {"type": "integer"},
                   "expires_at": {"type": "string", "format": "date-time"}},
}  # fmt: skip


async def bind_workspace(request: web.Request) -> web.Response:
    key = require(request, "admin")
    body = await json_body(request)
    unknown_fields(body, {"platform", "workspace_id", "name"})
    platform = body.get("platform")
    if platform not in PLATFORMS:
        raise invalid(f"platform must be one of {', '.join(PLATFORMS)}", {"field": "platform"})
    workspace_id = body.get("workspace_id")
    if not isinstance(workspace_id, str) or not _WORKSPACE.match(workspace_id):
        raise invalid(
            "workspace_id must be a Slack team/enterprise id or a Discord guild id", {"field": "workspace_id"}
        )
    name = string_field(body, "name", required=False) or ""
    async with pool(request).acquire() as conn, conn.transaction():
        try:
            row_id = await chat.bind_workspace(conn, str(platform), workspace_id, key.tenant_id, name)
        except ValueError:
            raise ApiError(
                409, "conflict", "this workspace is bound to another tenant", {"field": "workspace_id"}
            ) from None
        row = await conn.fetchrow("SELECT * FROM chat_workspaces WHERE id = $1", row_id)
    return web.json_response(_workspace(dict(row)), status=201)


async def list_workspaces(request: web.Request) -> web.Response:
    key = require(request, "admin")
    async with pool(request).acquire() as conn:
        rows = await conn.fetch("SELECT * FROM chat_workspaces WHERE tenant_id = $1 ORDER BY id", key.tenant_id)
    return web.json_response({"data": [_workspace(dict(r)) for r in rows]})


async def create_enrolment_code(request: web.Request) -> web.Response:
    key = require(request, "admin")
    body = await json_body(request)
    unknown_fields(body, {"user_id"})
    user_id = body.get("user_id")
    if not isinstance(user_id, int) or isinstance(user_id, bool) or not 1 <= user_id <= BIGINT_MAX:
        raise invalid("user_id must be an id (an integer of 1 or more)", {"field": "user_id"})
    async with pool(request).acquire() as conn, conn.transaction():
        try:
            code = await chat.create_enrolment_code(conn, key.tenant_id, user_id, f"api_key:{key.id}")
        except ValueError:
            raise not_found("user") from None
    expires = datetime.now(UTC) + chat.ENROLMENT_LIFETIME
    return web.json_response({"code": code, "user_id": user_id, "expires_at": expires.isoformat()}, status=201)


def _workspace(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "platform": row["platform"], "workspace_id": row["workspace_id"], "name": row["name"],
        "enabled": row["disabled_at"] is None, "created_at": row["created_at"].isoformat(),
    }  # fmt: skip


def add_routes(routes: Routes) -> None:
    tag = "chat"
    routes.add("POST", "/v1/chat/workspaces", bind_workspace, scope="admin", tag=tag, body=NEW_WORKSPACE,
               responses={201: WORKSPACE}, errors=(409,),
               summary="Bind a Slack workspace or Discord guild to this tenant")  # fmt: skip
    routes.add("GET", "/v1/chat/workspaces", list_workspaces, scope="admin", tag=tag,
               responses={200: listing(WORKSPACE)}, summary="The chat workspaces bound to this tenant")  # fmt: skip
    routes.add("POST", "/v1/chat/enrolment-codes", create_enrolment_code, scope="admin", tag=tag, body=NEW_CODE,
               responses={201: CODE}, errors=(404,),
               summary="An enrolment code for a user to link a chat account (shown once, 7 days)")  # fmt: skip
