"""Silences over the API: mute the alerts that match, until a time (db/silences.py says how
routing applies them).  Reads need read, the rest write.

A silence needs at least one matcher (patient, category or metric): one that matched
everything would mute every alert of the tenant, critical ones included.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp import web

from bot.api.auth import require
from bot.api.body import json_body, storable, unknown_fields
from bot.api.errors import invalid, not_found
from bot.api.openapi import BIGINT_MAX, ID, Routes, Schema
from bot.api.params import CURSOR, LIMIT, bigint, cursor, encode_cursor, iso, limit, page_schema, path_id
from bot.api.rules import ALERT_CATEGORIES
from bot.api.users import owned
from bot.state import pool
from db import audit, silences
from pipeline.vocabulary import UNITS

MAX_LENGTH = timedelta(days=366)
_TIME = {"type": "string", "format": "date-time"}
_FIELDS: dict[str, Schema] = {
    "patient_id": {"anyOf": [ID, {"type": "null"}], "description": "Only this patient's alerts."},
    "category": {"anyOf": [{"enum": list(ALERT_CATEGORIES)}, {"type": "null"}]},
    "metric": {"anyOf": [{"enum": sorted(UNITS)}, {"type": "null"}]},
    "starts_at": _TIME | {"description": "Default: now."},
    "ends_at": _TIME | {"description": "After starts_at and now, at most 366 days ahead."},
    "comment": {"type": "string", "maxLength": 500},
}
NEW_SILENCE: Schema = {"type": "object", "required": ["ends_at"], "properties": _FIELDS}
SILENCE: Schema = {
    "type": "object",
    "required": ["id", "patient_id", "category", "metric", "starts_at", "ends_at", "comment", "created_by",
                 "created_at", "state"],
    "properties": {
        "id": {"type": "integer"},
        "patient_id": {"type": ["integer", "null"]},
        "category": {"type": ["string", "null"]},
        "metric": {"type": ["string", "null"]},
        "starts_at": _TIME,
        "ends_at": _TIME,
        "comment": {"type": "string"},
        "created_by": {"type": "string"},
        "created_at": _TIME,
        "state": {"enum": ["pending", "active", "expired"]},
    },
}  # fmt: skip
_SELECT = "SELECT id, patient_id, category, metric, starts_at, ends_at, comment, created_by, created_at FROM silences"


def public(row: asyncpg.Record, now: datetime) -> dict[str, Any]:
    state = "pending" if row["starts_at"] > now else "active" if row["ends_at"] > now else "expired"
    found: dict[str, Any] = dict(row)
    return found | {key: iso(row[key]) for key in ("starts_at", "ends_at", "created_at")} | {"state": state}


def _time(body: dict[str, Any], name: str) -> datetime | None:
    value = body.get(name)
    if name not in body and name != "ends_at":
        return None
    try:
        found = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        found = None
    if found is None or found.tzinfo is None:
        raise invalid(f"{name} must be a time with a zone (2025-01-31T08:00:00Z)", {"field": name})
    return found


def _matcher(body: dict[str, Any], name: str, allowed: list[str]) -> str | None:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or value not in allowed):
        raise invalid(f"{name} must be null or one of {', '.join(allowed)}", {"field": name})
    return value


async def create_silence(request: web.Request) -> web.Response:
    key = require(request, "write")
    body = await json_body(request)
    unknown_fields(body, set(_FIELDS))
    now = datetime.now(UTC)
    patient_id = body.get("patient_id")
    if patient_id is not None and (
        not isinstance(patient_id, int) or isinstance(patient_id, bool) or not 1 <= patient_id <= BIGINT_MAX
    ):
        raise invalid("patient_id must be null or an id", {"field": "patient_id"})
    category = _matcher(body, "category", list(ALERT_CATEGORIES))
    metric = _matcher(body, "metric", sorted(UNITS))
    if patient_id is None and category is None and metric is None:
        raise invalid("a silence needs at least one of patient_id, category and metric", {"field": "patient_id"})
    starts_at, ends_at = _time(body, "starts_at") or now, _time(body, "ends_at")
    assert ends_at is not None
    if ends_at <= max(starts_at, now) or ends_at - now > MAX_LENGTH:
        raise invalid("ends_at must be after starts_at and now, and at most 366 days ahead", {"field": "ends_at"})
    if starts_at - now > MAX_LENGTH:
        raise invalid("starts_at must be at most 366 days ahead", {"field": "starts_at"})
    comment = body.get("comment", "")
    if not isinstance(comment, str) or len(comment) > 500 or not storable(comment):
        raise invalid("comment must be a string of at most 500 characters", {"field": "comment"})
    async with pool(request).acquire() as conn:
        if patient_id is not None:
            await owned(conn, key.tenant_id, patient_id)
        silence_id = await silences.create(
            conn, tenant_id=key.tenant_id, ends_at=ends_at, created_by=f"api_key:{key.prefix}",
            patient_id=patient_id, category=category, metric=metric, comment=comment, starts_at=starts_at,
        )  # fmt: skip
        row = await conn.fetchrow(_SELECT + " WHERE id = $1", silence_id)
    return web.json_response(public(row, now), status=201)


async def list_silences(request: web.Request) -> web.Response:
    key = require(request, "read")
    size, after = limit(request), cursor(request, bigint)
    async with pool(request).acquire() as conn:
        rows = await conn.fetch(
            _SELECT + " WHERE tenant_id = $1 AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
            key.tenant_id,
            after[0] if after else None,
            size + 1,
        )
    more, rows, now = len(rows) > size, rows[:size], datetime.now(UTC)
    return web.json_response(
        {"data": [public(r, now) for r in rows], "next_cursor": encode_cursor([rows[-1]["id"]]) if more else None}
    )


async def get_silence(request: web.Request) -> web.Response:
    key = require(request, "read")
    silence_id = path_id(request, "silence_id", "silence")
    async with pool(request).acquire() as conn:
        row = await conn.fetchrow(_SELECT + " WHERE id = $1 AND tenant_id = $2", silence_id, key.tenant_id)
    if row is None:
        raise not_found("silence")
    return web.json_response(public(row, datetime.now(UTC)))


async def delete_silence(request: web.Request) -> web.Response:
    """Ends the silence now by deleting it (audited): alerts raised from now on are routed."""
    key = require(request, "write")
    silence_id = path_id(request, "silence_id", "silence")
    async with pool(request).acquire() as conn, conn.transaction():
        found = await conn.fetchval(
            "DELETE FROM silences WHERE id = $1 AND tenant_id = $2 RETURNING id", silence_id, key.tenant_id
        )
        if found is None:
            raise not_found("silence")
        await audit.record(
            conn, tenant_id=key.tenant_id, actor=f"api_key:{key.prefix}", action="silence.deleted",
            subject_type="silence", subject_id=silence_id,
        )  # fmt: skip
    return web.Response(status=204)


def add_routes(routes: Routes) -> None:
    tag, one = "silences", "/v1/silences/{silence_id}"
    add = routes.add
    add("POST", "/v1/silences", create_silence, scope="write", tag=tag, body=NEW_SILENCE, responses={201: SILENCE},
        errors=(404,), summary="Mute the matching alerts until ends_at")  # fmt: skip
    add("GET", "/v1/silences", list_silences, scope="read", tag=tag, query=(LIMIT, CURSOR),
        responses={200: page_schema(SILENCE)}, summary="The tenant's silences, newest first, by page")  # fmt: skip
    add("GET", one, get_silence, scope="read", tag=tag, responses={200: SILENCE}, summary="One silence")
    add("DELETE", one, delete_silence, scope="write", tag=tag, responses={204: None},
        summary="End a silence now")  # fmt: skip
