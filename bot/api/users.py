"""Users (patients): create, list by page, read, change, and erase with everything about them."""

from __future__ import annotations

import functools
import zoneinfo
from typing import Any

from aiohttp import web

from bot.api.auth import require
from bot.api.body import json_body, string_field, unknown_fields
from bot.api.errors import ApiError, invalid, not_found
from bot.api.openapi import Routes, Schema
from bot.api.params import CURSOR, LIMIT, bigint, cursor, encode_cursor, limit, page_schema, path_id
from bot.state import pool
from db import users
from db.users import DuplicateExternalId, User

FIELDS = {"external_id", "display_name", "timezone"}
USER: Schema = {
    "type": "object",
    "required": ["id", "external_id", "display_name", "timezone", "created_at"],
    "properties": {
        "id": {"type": "integer"},
        "external_id": {"type": "string"},
        "display_name": {"type": "string"},
        "timezone": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
    },
}
_PROPERTIES = {
    "external_id": {"type": "string", "minLength": 1, "maxLength": 200, "description": "Your id for the user."},
    "display_name": {"type": "string", "minLength": 1, "maxLength": 200},
    "timezone": {"type": "string", "description": "An IANA zone (Europe/London); default UTC."},
}
NEW_USER: Schema = {"type": "object", "required": ["external_id", "display_name"], "properties": _PROPERTIES}
CHANGE_USER: Schema = {"type": "object", "properties": _PROPERTIES}


def public(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "external_id": user.external_id,
        "display_name": user.display_name,
        "timezone": user.timezone,
        "created_at": user.created_at.isoformat(),
    }


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _timezone(body: dict[str, Any]) -> str | None:
    value = body.get("timezone")
    if "timezone" in body and (not isinstance(value, str) or value not in _zones()):
        raise invalid("timezone must be an IANA time zone name, such as Europe/London", {"field": "timezone"})
    return value


def _conflict(exc: DuplicateExternalId) -> ApiError:
    return ApiError(409, "conflict", "another user of this tenant has this external_id", {"field": "external_id"})


async def create_user(request: web.Request) -> web.Response:
    key = require(request, "write")
    body = await json_body(request)
    unknown_fields(body, FIELDS)
    external_id = string_field(body, "external_id", required=True)
    display_name = string_field(body, "display_name", required=True)
    timezone = _timezone(body) or "UTC"
    assert external_id is not None and display_name is not None
    async with pool(request).acquire() as conn:
        try:
            user = await users.create(conn, key.tenant_id, external_id, display_name, timezone)
        except DuplicateExternalId as exc:
            raise _conflict(exc) from None
    return web.json_response(public(user), status=201)


async def list_users(request: web.Request) -> web.Response:
    key = require(request, "read")
    size, after = limit(request), cursor(request, bigint)
    async with pool(request).acquire() as conn:
        found = await users.page(conn, key.tenant_id, after[0] if after else 0, size + 1)
    more = len(found) > size
    found = found[:size]
    return web.json_response(
        {"data": [public(u) for u in found], "next_cursor": encode_cursor([found[-1].id]) if more else None}
    )


async def get_user(request: web.Request) -> web.Response:
    key = require(request, "read")
    user_id = path_id(request, "user_id", "user")
    async with pool(request).acquire() as conn:
        user = await users.get(conn, key.tenant_id, user_id)
    if user is None:
        raise not_found("user")
    return web.json_response(public(user))


async def update_user(request: web.Request) -> web.Response:
    key = require(request, "write")
    user_id = path_id(request, "user_id", "user")
    body = await json_body(request)
    unknown_fields(body, FIELDS)
    external_id = string_field(body, "external_id", required=False)
    display_name = string_field(body, "display_name", required=False)
    timezone = _timezone(body)
    async with pool(request).acquire() as conn:
        try:
            user = await users.update(
                conn, key.tenant_id, user_id, external_id=external_id, display_name=display_name, timezone=timezone
            )
        except DuplicateExternalId as exc:
            raise _conflict(exc) from None
    if user is None:
        raise not_found("user")
    return web.json_response(public(user))


async def delete_user(request: web.Request) -> web.Response:
    key = require(request, "admin")
    user_id = path_id(request, "user_id", "user")
    async with pool(request).acquire() as conn:
        if not await users.erase(conn, key.tenant_id, user_id, actor=f"api_key:{key.prefix}"):
            raise not_found("user")
    return web.Response(status=204)


def add_routes(routes: Routes) -> None:
    tag = "users"
    routes.add(
        "POST",
        "/v1/users",
        create_user,
        scope="write",
        tag=tag,
        summary="Create a user",
        body=NEW_USER,
        responses={201: USER},
        errors=(409,),
    )
    routes.add(
        "GET",
        "/v1/users",
        list_users,
        scope="read",
        tag=tag,
        summary="The tenant's users, by page",
        query=(LIMIT, CURSOR),
        responses={200: page_schema(USER)},
    )
    routes.add("GET", "/v1/users/{user_id}", get_user, scope="read", tag=tag, summary="One user", responses={200: USER})
    routes.add(
        "PATCH",
        "/v1/users/{user_id}",
        update_user,
        scope="write",
        tag=tag,
        summary="Change a user's fields",
        body=CHANGE_USER,
        responses={200: USER},
        errors=(409,),
    )
    routes.add(
        "DELETE",
        "/v1/users/{user_id}",
        delete_user,
        scope="admin",
        tag=tag,
        summary="Erase a user and all their data (GDPR)",
        description="Removes readings, sessions, scores, daily stats, correlations, CGM summaries, alerts and"
        " their deliveries, connections and sync runs, reports, rules about the user, and the events and audit"
        " rows that name them, in one transaction. One audit row records the erasure, with the bare id.",
        responses={204: None},
    )


async def owned(conn: Any, tenant_id: int, user_id: int) -> User:
    """The tenant's user, or 404 (an id of another tenant reads exactly like a missing one)."""
    user = await users.get(conn, tenant_id, user_id)
    if user is None:
        raise not_found("user")
    return user
