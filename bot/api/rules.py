"""Notification rules over the API: who owns a rule, which alerts it matches, where it sends
them, and how (quiet hours, cooldown, group wait, escalation).  Reads need read, the rest write.

Every id a body names (channels, the owner, the patient, the care team) must be the key's
tenant's: another tenant's id is a 404, exactly like one that does not exist.
"""

from __future__ import annotations

from datetime import time, timedelta
from typing import Any

import asyncpg
from aiohttp import web

from bot.api.auth import require
from bot.api.body import json_body, string_field, unknown_fields
from bot.api.errors import invalid, not_found
from bot.api.openapi import BIGINT_MAX, ID, Routes, Schema
from bot.api.params import CURSOR, LIMIT, bigint, cursor, encode_cursor, limit, page_schema, path_id
from bot.state import pool
from db import care_teams, notification_channels, notification_rules, users
from db.alerts import SEVERITIES
from db.notification_rules import RuleRow
from pipeline.analytics.findings import CATEGORIES
from pipeline.vocabulary import UNITS

# What alerts carry: the analytics categories, and 'connection' (a sync that keeps failing).
ALERT_CATEGORIES = (*CATEGORIES, "connection")
MAX_MINUTES = 7 * 24 * 60
MAX_GROUP_WAIT = 3600

_NULLABLE_ID = {"type": ["integer", "null"], "minimum": 1, "maximum": BIGINT_MAX}
_IDS = {"type": "array", "items": ID, "maxItems": 50}
_CLOCK = {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"}
_PROPERTIES: dict[str, Schema] = {
    "name": {"type": "string", "minLength": 1, "maxLength": 200},
    "enabled": {"type": "boolean", "description": "false pauses the rule."},
    "owner_user_id": _NULLABLE_ID | {"description": "The rule covers this user's own alerts, in their timezone."},
    "care_team_id": _NULLABLE_ID | {"description": "The team owns the rule; its timezone times quiet hours."},
    "patient_id": _NULLABLE_ID | {"description": "Only this patient's alerts."},
    "categories": {"type": ["array", "null"], "items": {"enum": list(ALERT_CATEGORIES)}, "minItems": 1},
    "metrics": {"type": ["array", "null"], "items": {"enum": sorted(UNITS)}, "minItems": 1},
    "min_severity": {"enum": list(SEVERITIES)},
    "channel_ids": _IDS | {"minItems": 1},
    "escalation_channel_ids": _IDS,
    "quiet_hours": {
        "type": ["object", "null"],
        "required": ["start", "end"],
        "properties": {"start": _CLOCK, "end": _CLOCK},
        "description": "Local HH:MM; start after end spans midnight. Critical alerts bypass them.",
    },
    "cooldown_minutes": {"type": "integer", "minimum": 0, "maximum": MAX_MINUTES},
    "group_wait_seconds": {"type": "integer", "minimum": 0, "maximum": MAX_GROUP_WAIT},
    "escalate_after_minutes": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_MINUTES},
}
NEW_RULE: Schema = {"type": "object", "required": ["name", "channel_ids"], "properties": _PROPERTIES}
CHANGES: Schema = {"type": "object", "properties": _PROPERTIES}
RULE: Schema = {
    "type": "object",
    "required": ["id", *_PROPERTIES, "created_at"],
    "properties": {"id": {"type": "integer"}, **_PROPERTIES, "created_at": {"type": "string", "format": "date-time"}},
}


def public(rule: RuleRow) -> dict[str, Any]:
    quiet = None
    if rule.quiet_start is not None and rule.quiet_end is not None:
        quiet = {"start": rule.quiet_start.strftime("%H:%M"), "end": rule.quiet_end.strftime("%H:%M")}
    return {
        "id": rule.id,
        "name": rule.name,
        "enabled": rule.enabled,
        "owner_user_id": rule.owner_user_id,
        "care_team_id": rule.care_team_id,
        "patient_id": rule.patient_id,
        "categories": rule.categories,
        "metrics": rule.metrics,
        "min_severity": rule.min_severity,
        "channel_ids": rule.channel_ids,
        "escalation_channel_ids": rule.escalation_channel_ids,
        "quiet_hours": quiet,
        "cooldown_minutes": int(rule.cooldown.total_seconds() // 60),
        "group_wait_seconds": int(rule.group_wait.total_seconds()),
        "escalate_after_minutes": None
        if rule.escalate_after is None
        else int(rule.escalate_after.total_seconds() // 60),
        "created_at": rule.created_at.isoformat(),
    }


def _integer(body: dict[str, Any], name: str, low: int, high: int, *, nullable: bool = False) -> int | None:
    value = body[name]
    if value is None and nullable:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise invalid(
            f"{name} must be an integer from {low} to {high}" + (" or null" if nullable else ""), {"field": name}
        )
    return value


def _ids(body: dict[str, Any], name: str, *, at_least: int) -> list[int]:
    value = body[name]
    if (
        not isinstance(value, list)
        or not at_least <= len(value) <= 50
        or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= BIGINT_MAX for v in value)
    ):
        raise invalid(f"{name} must be a list of {at_least} to 50 ids", {"field": name})
    return sorted(set(value))


def _choices(body: dict[str, Any], name: str, allowed: list[str]) -> list[str] | None:
    value = body[name]
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v in allowed for v in value):
        raise invalid(f"{name} must be null or a non-empty list of {', '.join(allowed)}", {"field": name})
    return sorted(set(value))


def _clock(value: Any) -> time:
    if not isinstance(value, str) or len(value) != 5 or value[2] != ":":
        raise ValueError(value)
    return time.fromisoformat(value)


def _quiet(body: dict[str, Any]) -> tuple[time | None, time | None]:
    value = body["quiet_hours"]
    if value is None:
        return None, None
    try:
        if not isinstance(value, dict) or set(value) != {"start", "end"}:
            raise ValueError(value)
        start, end = _clock(value["start"]), _clock(value["end"])
    except ValueError:
        raise invalid(
            'quiet_hours must be null or {"start": "HH:MM", "end": "HH:MM"}', {"field": "quiet_hours"}
        ) from None
    if start == end:
        raise invalid("quiet_hours must not start and end at the same time", {"field": "quiet_hours"})
    return start, end


def _parsed(body: dict[str, Any]) -> tuple[dict[str, Any], list[int] | None, list[int] | None]:
    """The rule columns ``body`` sets, and its channel lists (None when absent); 422 naming the
    first bad field."""
    unknown_fields(body, set(_PROPERTIES))
    columns: dict[str, Any] = {}
    if "name" in body:
        columns["name"] = string_field(body, "name", required=True)
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise invalid("enabled must be true or false", {"field": "enabled"})
        columns["enabled"] = body["enabled"]
    for name in ("owner_user_id", "care_team_id", "patient_id"):
        if name in body:
            columns[name] = _integer(body, name, 1, BIGINT_MAX, nullable=True)
    if "categories" in body:
        columns["categories"] = _choices(body, "categories", list(ALERT_CATEGORIES))
    if "metrics" in body:
        columns["metrics"] = _choices(body, "metrics", sorted(UNITS))
    if "min_severity" in body:
        if body["min_severity"] not in SEVERITIES:
            raise invalid(f"min_severity must be one of {', '.join(SEVERITIES)}", {"field": "min_severity"})
        columns["min_severity"] = body["min_severity"]
    if "quiet_hours" in body:
        columns["quiet_start"], columns["quiet_end"] = _quiet(body)
    if "cooldown_minutes" in body:
        columns["cooldown"] = timedelta(minutes=_integer(body, "cooldown_minutes", 0, MAX_MINUTES) or 0)
    if "group_wait_seconds" in body:
        columns["group_wait"] = timedelta(seconds=_integer(body, "group_wait_seconds", 0, MAX_GROUP_WAIT) or 0)
    if "escalate_after_minutes" in body:
        minutes = _integer(body, "escalate_after_minutes", 1, MAX_MINUTES, nullable=True)
        columns["escalate_after"] = None if minutes is None else timedelta(minutes=minutes)
    notify = _ids(body, "channel_ids", at_least=1) if "channel_ids" in body else None
    escalate = _ids(body, "escalation_channel_ids", at_least=0) if "escalation_channel_ids" in body else None
    return columns, notify, escalate


async def _check_references(
    conn: asyncpg.Connection, tenant_id: int, merged: dict[str, Any], channel_lists: list[list[int] | None]
) -> None:
    """404 for an id of another tenant (or none), 422 for two owners at once."""
    if merged.get("owner_user_id") is not None and merged.get("care_team_id") is not None:
        raise invalid("a rule has one owner: owner_user_id or care_team_id, not both", {"field": "care_team_id"})
    for name in ("owner_user_id", "patient_id"):
        if merged.get(name) is not None and await users.get(conn, tenant_id, merged[name]) is None:
            raise not_found(f"user ({name})")
    if merged.get("care_team_id") is not None and await care_teams.get(conn, tenant_id, merged["care_team_id"]) is None:
        raise not_found("care team (care_team_id)")
    for ids in channel_lists:
        if ids and await notification_channels.tenant_channels(conn, tenant_id, ids) != set(ids):
            raise not_found("channel")


async def create_rule(request: web.Request) -> web.Response:
    key = require(request, "write")
    body = await json_body(request)
    columns, notify, escalate = _parsed(body)
    if "name" not in columns:
        raise invalid("name is required", {"field": "name"})
    if notify is None:
        raise invalid("channel_ids is required", {"field": "channel_ids"})
    async with pool(request).acquire() as conn, conn.transaction():
        await _check_references(conn, key.tenant_id, columns, [notify, escalate])
        rule_id = await notification_rules.create_rule(
            conn, tenant_id=key.tenant_id, name=columns.pop("name"), channel_ids=notify,
            escalation_channel_ids=escalate or (),
        )  # fmt: skip
        await notification_rules.update_rule(conn, key.tenant_id, rule_id, columns)
        rule = await notification_rules.get_rule(conn, key.tenant_id, rule_id)
    assert rule is not None
    return web.json_response(public(rule), status=201)


async def list_rules(request: web.Request) -> web.Response:
    key = require(request, "read")
    size, after = limit(request), cursor(request, bigint)
    async with pool(request).acquire() as conn:
        found = await notification_rules.rule_page(conn, key.tenant_id, after[0] if after else 0, size + 1)
    more, found = len(found) > size, found[:size]
    return web.json_response(
        {"data": [public(r) for r in found], "next_cursor": encode_cursor([found[-1].id]) if more else None}
    )


async def _rule(conn: asyncpg.Connection, tenant_id: int, request: web.Request) -> RuleRow:
    found = await notification_rules.get_rule(conn, tenant_id, path_id(request, "rule_id", "rule"))
    if found is None:
        raise not_found("rule")
    return found


async def get_rule(request: web.Request) -> web.Response:
    key = require(request, "read")
    async with pool(request).acquire() as conn:
        return web.json_response(public(await _rule(conn, key.tenant_id, request)))


async def update_rule(request: web.Request) -> web.Response:
    key = require(request, "write")
    path_id(request, "rule_id", "rule")
    columns, notify, escalate = _parsed(await json_body(request))
    async with pool(request).acquire() as conn, conn.transaction():
        rule = await _rule(conn, key.tenant_id, request)
        merged = {"owner_user_id": rule.owner_user_id, "care_team_id": rule.care_team_id} | columns
        await _check_references(conn, key.tenant_id, merged, [notify, escalate])
        await notification_rules.update_rule(
            conn, key.tenant_id, rule.id, columns, channel_ids=notify, escalation_channel_ids=escalate
        )
        changed = await notification_rules.get_rule(conn, key.tenant_id, rule.id)
    assert changed is not None
    return web.json_response(public(changed))


async def delete_rule(request: web.Request) -> web.Response:
    key = require(request, "write")
    rule_id = path_id(request, "rule_id", "rule")
    async with pool(request).acquire() as conn:
        if not await notification_rules.delete_rule(conn, key.tenant_id, rule_id):
            raise not_found("rule")
    return web.Response(status=204)


def add_routes(routes: Routes) -> None:
    tag, one = "rules", "/v1/rules/{rule_id}"
    add = routes.add
    add("POST", "/v1/rules", create_rule, scope="write", tag=tag, body=NEW_RULE, responses={201: RULE},
        errors=(404,), summary="Create a rule (404: an id in the body is not the tenant's)")  # fmt: skip
    add("GET", "/v1/rules", list_rules, scope="read", tag=tag, query=(LIMIT, CURSOR),
        responses={200: page_schema(RULE)}, summary="The tenant's rules, by page")  # fmt: skip
    add("GET", one, get_rule, scope="read", tag=tag, responses={200: RULE}, summary="One rule")
    add("PATCH", one, update_rule, scope="write", tag=tag, body=CHANGES, responses={200: RULE},
        summary="Change a rule's fields; a channel list given replaces the old one")  # fmt: skip
    add("DELETE", one, delete_rule, scope="write", tag=tag, responses={204: None}, summary="Delete a rule")
