"""One alert over the API: read it, acknowledge, snooze or resolve it, and read its delivery log.

The three actions are idempotent: a second call changes nothing and answers like the first
(the first acknowledgement and the first resolution stand; a second snooze moves its end).
Each stops escalation and is audited; acknowledge and resolve publish ``alert.acknowledged``
and ``alert.resolved`` in the transaction that records them.

Snooze: the alert is ``snoozed`` until ``snoozed_until``: it neither escalates nor pages
anyone.  Then it wakes as it was (open, or acknowledged), and an escalation that was due and
never sent is armed again.  Resolved is final: a resolved alert cannot be snoozed (409).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp import web

from bot.api.auth import require
from bot.api.body import json_body, unknown_fields
from bot.api.errors import ApiError, invalid, not_found
from bot.api.openapi import Routes, Schema, listing
from bot.api.params import iso, path_id
from bot.state import pool
from db import alerts, deliveries
from db.alerts import Alert

MAX_SNOOZE_MINUTES = 7 * 24 * 60

_TIME = {"type": ["string", "null"], "format": "date-time"}
_TEXT = {"type": ["string", "null"]}
_NUMBER = {"type": ["number", "null"]}
ALERT: Schema = {
    "type": "object",
    "required": ["id", "user_id", "kind", "category", "severity", "metric", "title", "body", "status", "created_at",
                 "acknowledged_at", "snoozed_until", "resolved_at"],
    "properties": {
        "id": {"type": "integer"}, "user_id": {"type": "integer"}, "kind": {"type": "string"},
        "category": {"type": "string"}, "severity": {"enum": ["info", "warning", "critical"]}, "metric": _TEXT,
        "title": {"type": "string"}, "body": {"type": "string"}, "observed_value": _NUMBER, "threshold": _NUMBER,
        "recorded_at": _TIME, "created_at": {"type": "string", "format": "date-time"},
        "status": {"enum": ["open", "acknowledged", "snoozed", "resolved"]}, "routed_at": _TIME,
        "acknowledged_at": _TIME, "acknowledged_by": _TEXT, "snoozed_until": _TIME, "snoozed_by": _TEXT,
        "resolved_at": _TIME, "resolved_by": _TEXT, "escalate_at": _TIME, "escalated_at": _TIME,
    },
}  # fmt: skip
SNOOZE: Schema = {
    "type": "object",
    "required": ["minutes"],
    "properties": {
        "minutes": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_SNOOZE_MINUTES,
            "description": "60, 240 and 1440 are the usual choices; any from 1 to 10080 (a week).",
        }
    },
}
DELIVERY: Schema = {
    "type": "object",
    "required": ["id", "channel_id", "channel_kind", "channel_label", "purpose", "attempt", "status", "created_at"],
    "properties": {
        "id": {"type": "integer"}, "channel_id": {"type": "integer"}, "channel_kind": {"type": "string"},
        "channel_label": {"type": "string"}, "purpose": {"enum": ["notify", "escalate"]},
        "attempt": {"type": "integer"},
        "status": {"enum": ["sending", "delivered", "failed", "rate_limited", "suppressed", "deferred", "pruned"]},
        "error_class": _TEXT, "http_status": {"type": ["integer", "null"]},
        "latency_ms": {"type": ["integer", "null"]}, "retry_after_s": _NUMBER, "detail": _TEXT,
        "rule_id": {"type": ["integer", "null"]}, "send_id": {"type": ["integer", "null"]}, "due_at": _TIME,
        "created_at": {"type": "string", "format": "date-time"}, "finished_at": _TIME,
    },
}  # fmt: skip


async def _owned(conn: asyncpg.Connection, tenant_id: int, alert_id: int) -> Alert:
    """The tenant's alert (an expired snooze woken first), or 404."""
    await alerts.wake_snoozed(conn, datetime.now(UTC), alert_id)
    found = await alerts.get(conn, alert_id)
    if found is None or found.tenant_id != tenant_id:
        raise not_found("alert")
    return found


async def _answer(conn: asyncpg.Connection, alert_id: int) -> web.Response:
    alert, more = await alerts.get(conn, alert_id), await alerts.lifecycle(conn, alert_id)
    if alert is None or more is None:  # erased meanwhile
        raise not_found("alert")
    found: dict[str, Any] = {
        "id": alert.id, "user_id": alert.user_id, "kind": more.kind, "category": alert.category,
        "severity": alert.severity, "metric": alert.metric, "title": alert.title, "body": alert.body,
        "observed_value": alert.observed_value, "threshold": alert.threshold, "recorded_at": iso(alert.recorded_at),
        "created_at": alert.created_at.isoformat(), "status": alert.status, "routed_at": iso(alert.routed_at),
        "acknowledged_at": iso(alert.acknowledged_at), "acknowledged_by": alert.acknowledged_by,
        "snoozed_until": iso(more.snoozed_until), "snoozed_by": more.snoozed_by, "resolved_at": iso(more.resolved_at),
        "resolved_by": more.resolved_by, "escalate_at": iso(more.escalate_at), "escalated_at": iso(more.escalated_at),
    }  # fmt: skip
    return web.json_response(found)


def _actor(request: web.Request, scope: str) -> tuple[int, str]:
    key = require(request, scope)
    return key.tenant_id, f"api_key:{key.prefix}"


async def get_alert(request: web.Request) -> web.Response:
    tenant_id, _ = _actor(request, "read")
    alert_id = path_id(request, "alert_id", "alert")
    async with pool(request).acquire() as conn:
        await _owned(conn, tenant_id, alert_id)
        return await _answer(conn, alert_id)


async def acknowledge_alert(request: web.Request) -> web.Response:
    tenant_id, actor = _actor(request, "write")
    alert_id = path_id(request, "alert_id", "alert")
    async with pool(request).acquire() as conn:
        await _owned(conn, tenant_id, alert_id)
        # False when it was acknowledged already: the first acknowledgement stands.
        await alerts.acknowledge(conn, alert_id, actor)
        return await _answer(conn, alert_id)


async def snooze_alert(request: web.Request) -> web.Response:
    tenant_id, actor = _actor(request, "write")
    alert_id = path_id(request, "alert_id", "alert")
    body = await json_body(request)
    unknown_fields(body, {"minutes"})
    minutes = body.get("minutes")
    if not isinstance(minutes, int) or isinstance(minutes, bool) or not 1 <= minutes <= MAX_SNOOZE_MINUTES:
        raise invalid(f"minutes must be an integer from 1 to {MAX_SNOOZE_MINUTES}", {"field": "minutes"})
    async with pool(request).acquire() as conn:
        alert = await _owned(conn, tenant_id, alert_id)
        if alert.status == "resolved" or not await alerts.snooze(
            conn, alert_id, datetime.now(UTC) + timedelta(minutes=minutes), actor
        ):
            raise ApiError(409, "conflict", "the alert is resolved; there is nothing to snooze")
        return await _answer(conn, alert_id)


async def resolve_alert(request: web.Request) -> web.Response:
    tenant_id, actor = _actor(request, "write")
    alert_id = path_id(request, "alert_id", "alert")
    async with pool(request).acquire() as conn:
        await _owned(conn, tenant_id, alert_id)
        # False when it was resolved already: the first resolution stands.
        await alerts.resolve(conn, alert_id, actor)
        return await _answer(conn, alert_id)


async def list_deliveries(request: web.Request) -> web.Response:
    tenant_id, _ = _actor(request, "read")
    alert_id = path_id(request, "alert_id", "alert")
    async with pool(request).acquire() as conn:
        await _owned(conn, tenant_id, alert_id)
        rows = await deliveries.deliveries_for_alert(conn, alert_id)
    # The log's detail is written safe (channels.http.redact): no token, no full URL.
    data = [
        {
            name: getattr(r, name)
            for name in DELIVERY["properties"]
            if name not in ("due_at", "created_at", "finished_at")
        }
        | {"due_at": iso(r.due_at), "created_at": r.created_at.isoformat(), "finished_at": iso(r.finished_at)}
        for r in rows
    ]
    return web.json_response({"data": data})


def add_routes(routes: Routes) -> None:
    tag, one = "alerts", "/v1/alerts/{alert_id}"
    add = routes.add
    add("GET", one, get_alert, scope="read", tag=tag, responses={200: ALERT}, summary="One alert, with its state")
    add("POST", one + "/acknowledge", acknowledge_alert, scope="write", tag=tag, responses={200: ALERT},
        summary="Acknowledge an alert (stops escalation; idempotent)")  # fmt: skip
    add("POST", one + "/snooze", snooze_alert, scope="write", tag=tag, body=SNOOZE, responses={200: ALERT},
        errors=(409,), summary="Snooze an alert for some minutes: no escalation or page until then")  # fmt: skip
    add("POST", one + "/resolve", resolve_alert, scope="write", tag=tag, responses={200: ALERT},
        summary="Resolve an alert for good (stops escalation; idempotent)")  # fmt: skip
    add("GET", one + "/deliveries", list_deliveries, scope="read", tag=tag, responses={200: listing(DELIVERY)},
        summary="Every delivery attempt and routing decision for the alert, oldest first")  # fmt: skip
