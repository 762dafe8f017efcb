"""Webhook endpoints over the API: the tenant's subscriptions, their deliveries, test and replay.

A signing secret is shown twice in its life: in the answer that creates the endpoint and in
the one that rotates it.  Writes need the admin scope, reads the read scope.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.api.auth import require
from bot.api.body import json_body
from bot.api.context import keyring
from bot.api.errors import ApiError, invalid, not_found
from bot.api.openapi import Param, Routes, Schema
from bot.api.params import limit, path_id, text
from bot.state import pool
from channels.destinations import DestinationError
from db import events
from db import webhooks as stored
from db.webhooks import Endpoint
from pipeline import actors, webhooks
from pipeline.triggers import enqueue
from pipeline.webhooks import settings as webhook_settings

_TIME = {"type": ["string", "null"], "format": "date-time"}
ENDPOINT: Schema = {
    "type": "object",
    "required": ["id", "url", "events", "description", "enabled", "disabled_reason", "created_at"],
    "properties": {
        "id": {"type": "integer"},
        "url": {"type": "string"},
        "events": {"type": "array", "items": {"enum": list(events.CATALOGUE)}},
        "description": {"type": "string"},
        "enabled": {"type": "boolean"},
        "disabled_reason": {"type": ["string", "null"]},
        "disabled_at": _TIME,
        "consecutive_failures": {"type": "integer"},
        "previous_secret_expires_at": _TIME,
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}
WITH_SECRET: Schema = {
    "allOf": [ENDPOINT, {"type": "object", "required": ["secret"], "properties": {"secret": {"type": "string"}}}]
}
NEW_ENDPOINT: Schema = {
    "type": "object",
    "required": ["url", "events"],
    "properties": {
        "url": {"type": "string", "format": "uri"},
        "events": {"type": "array", "minItems": 1, "items": {"enum": list(events.CATALOGUE)}},
        "description": {"type": "string", "maxLength": 500},
    },
}
CHANGES: Schema = {
    "type": "object",
    "properties": NEW_ENDPOINT["properties"] | {"enabled": {"type": "boolean"}},
}
ATTEMPT: Schema = {
    "type": "object",
    "properties": {
        "attempt": {"type": "integer"},
        "http_status": {"type": ["integer", "null"]},
        "latency_ms": {"type": "integer"},
        "response_body": {"type": ["string", "null"]},
        "error_class": {"type": ["string", "null"]},
        "detail": {"type": ["string", "null"]},
        "created_at": {"type": "string", "format": "date-time"},
    },
}
DELIVERY: Schema = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "event_id": {"type": "integer"},
        "event_type": {"type": "string"},
        "msg_id": {"type": "string", "description": "The `webhook-id` header: the same on every attempt."},
        "status": {"enum": ["pending", "delivering", "succeeded", "failed"]},
        "attempts": {"type": "integer"},
        "next_attempt_at": _TIME,
        "last_error": {"type": ["string", "null"]},
        "created_at": {"type": "string", "format": "date-time"},
        "finished_at": _TIME,
        "attempt_log": {"type": "array", "items": ATTEMPT},
    },
}
QUEUED: Schema = {
    "type": "object",
    "required": ["delivery_ids"],
    "properties": {"delivery_ids": {"type": "array", "items": {"type": "integer"}}, "event_id": {"type": "integer"}},
}
REPLAY = Param("replay", {"enum": ["failed"]}, "With `enabled: true`: send the endpoint's failed deliveries again.")


def _validated(body: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    """The known fields of ``body``, checked; 422 naming the first bad one."""
    unknown = set(body) - {"url", "events", "description"} - ({"enabled"} if partial else set())
    if unknown:
        raise invalid(f"unknown field(s): {', '.join(sorted(unknown))}")
    found: dict[str, Any] = {}
    if "url" in body or not partial:
        url = body.get("url")
        if not isinstance(url, str) or not url.strip() or len(url) > 2000:
            raise invalid("url must be a URL of at most 2000 characters", {"field": "url"})
        try:
            webhook_settings.current().policy.check_url(url.strip())
        except DestinationError as exc:
            raise invalid(f"url: {exc}", {"field": "url"}) from None
        found["url"] = url.strip()
    if "events" in body or not partial:
        types = body.get("events")
        if (
            not isinstance(types, list)
            or not types
            or not all(isinstance(t, str) for t in types)
            or not set(types) <= set(events.CATALOGUE)
        ):
            raise invalid(f"events must be a non-empty list of {', '.join(events.CATALOGUE)}", {"field": "events"})
        found["events"] = sorted(set(types))
    if "description" in body or not partial:
        description = body.get("description", "")
        if not isinstance(description, str) or len(description) > 500:
            raise invalid("description must be a string of at most 500 characters", {"field": "description"})
        found["description"] = description
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise invalid("enabled must be true or false", {"field": "enabled"})
        found["enabled"] = body["enabled"]
    return found


async def _endpoint(request: web.Request, tenant_id: int) -> Endpoint:
    endpoint_id = path_id(request, "endpoint_id", "webhook endpoint")
    async with pool(request).acquire() as conn:
        found = await stored.get(conn, tenant_id, endpoint_id)
    if found is None:
        raise not_found("webhook endpoint")
    return found


def _send(delivery_ids: list[int]) -> None:
    for delivery_id in delivery_ids:
        enqueue(actors.deliver_webhook, delivery_id)


async def create_webhook(request: web.Request) -> web.Response:
    key = require(request, "admin")
    fields = _validated(await json_body(request), partial=False)
    async with pool(request).acquire() as conn:
        endpoint, secret = await stored.create(conn, keyring(request), tenant_id=key.tenant_id, **fields)
    return web.json_response(endpoint.public() | {"secret": secret}, status=201)


async def list_webhooks(request: web.Request) -> web.Response:
    key = require(request, "read")
    async with pool(request).acquire() as conn:
        found = await stored.list_for(conn, key.tenant_id)
    return web.json_response({"data": [e.public() for e in found]})


async def get_webhook(request: web.Request) -> web.Response:
    key = require(request, "read")
    return web.json_response((await _endpoint(request, key.tenant_id)).public())


async def update_webhook(request: web.Request) -> web.Response:
    key = require(request, "admin")
    endpoint_id = path_id(request, "endpoint_id", "webhook endpoint")
    replay = text(request, "replay", ("failed",))
    fields = _validated(await json_body(request), partial=True)
    if replay and fields.get("enabled") is not True:
        raise invalid("replay=failed goes with enabled: true", {"parameter": "replay"})
    async with pool(request).acquire() as conn:
        endpoint = await stored.update(conn, key.tenant_id, endpoint_id, fields)
    if endpoint is None:
        raise not_found("webhook endpoint")
    answer = endpoint.public()
    if replay:
        replayed = await webhooks.replay(pool(request), endpoint.id)
        _send(replayed)
        answer["replayed"] = replayed
    return web.json_response(answer)


async def delete_webhook(request: web.Request) -> web.Response:
    key = require(request, "admin")
    endpoint_id = path_id(request, "endpoint_id", "webhook endpoint")
    async with pool(request).acquire() as conn:
        if not await stored.delete(conn, key.tenant_id, endpoint_id):
            raise not_found("webhook endpoint")
    return web.Response(status=204)


async def rotate_secret(request: web.Request) -> web.Response:
    key = require(request, "admin")
    endpoint_id = path_id(request, "endpoint_id", "webhook endpoint")
    grace = webhook_settings.current().grace
    async with pool(request).acquire() as conn:
        rotated = await stored.rotate(conn, keyring(request), key.tenant_id, endpoint_id, grace)
    if rotated is None:
        raise not_found("webhook endpoint")
    endpoint, secret = rotated
    return web.json_response(endpoint.public() | {"secret": secret})


async def test_webhook(request: web.Request) -> web.Response:
    key = require(request, "admin")
    endpoint = await _endpoint(request, key.tenant_id)
    if not endpoint.enabled:
        raise ApiError(409, "conflict", "the endpoint is disabled; enable it first")
    event_id, delivery_id = await webhooks.send_test(pool(request), endpoint)
    _send([delivery_id])
    return web.json_response({"event_id": event_id, "delivery_ids": [delivery_id]}, status=202)


async def list_deliveries(request: web.Request) -> web.Response:
    key = require(request, "read")
    endpoint = await _endpoint(request, key.tenant_id)
    async with pool(request).acquire() as conn:
        found = await stored.deliveries(conn, endpoint.id, limit(request, 50))
    return web.json_response({"data": found})


async def replay_delivery(request: web.Request) -> web.Response:
    key = require(request, "admin")
    endpoint = await _endpoint(request, key.tenant_id)
    delivery_id = path_id(request, "delivery_id", "delivery")
    async with pool(request).acquire() as conn:
        if await stored.delivery_endpoint(conn, delivery_id) != endpoint.id:
            raise not_found("delivery")
    if not endpoint.enabled:
        raise ApiError(409, "conflict", "the endpoint is disabled; enable it first")
    replayed = await webhooks.replay(pool(request), endpoint.id, [delivery_id])
    if not replayed:
        raise ApiError(409, "conflict", "the delivery is being attempted right now")
    _send(replayed)
    return web.json_response({"delivery_ids": replayed}, status=202)


def add_routes(routes: Routes) -> None:
    tag, one = "webhooks", "/v1/webhooks/{endpoint_id}"
    page = {"type": "object", "required": ["data"], "properties": {"data": {"type": "array", "items": ENDPOINT}}}
    deliveries = {"type": "object", "required": ["data"], "properties": {"data": {"type": "array", "items": DELIVERY}}}
    add = routes.add
    add("POST", "/v1/webhooks", create_webhook, scope="admin", tag=tag, body=NEW_ENDPOINT, responses={201: WITH_SECRET},
        summary="Subscribe an endpoint (its signing secret is in this response only)")  # fmt: skip
    add("GET", "/v1/webhooks", list_webhooks, scope="read", tag=tag, summary="The tenant's endpoints",
        responses={200: page})  # fmt: skip
    add("GET", one, get_webhook, scope="read", tag=tag, summary="One endpoint", responses={200: ENDPOINT})
    add("PATCH", one, update_webhook, scope="admin", tag=tag, body=CHANGES, query=[REPLAY], responses={200: ENDPOINT},
        summary="Change an endpoint; enabling it may replay what failed")  # fmt: skip
    add("DELETE", one, delete_webhook, scope="admin", tag=tag, summary="Delete an endpoint", responses={204: None})
    add("POST", one + "/rotate-secret", rotate_secret, scope="admin", tag=tag, responses={200: WITH_SECRET},
        summary="A new signing secret (in this response only); the old one signs too for 24 hours")  # fmt: skip
    add("POST", one + "/test", test_webhook, scope="admin", tag=tag, errors=[409], responses={202: QUEUED},
        summary="Send a webhook.test event to the endpoint")  # fmt: skip
    add("GET", one + "/deliveries", list_deliveries, scope="read", tag=tag, responses={200: deliveries},
        query=[Param("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Deliveries (default 50).")],
        summary="The endpoint's latest deliveries, each with its attempts")  # fmt: skip
    add("POST", one + "/deliveries/{delivery_id}/replay", replay_delivery, scope="admin", tag=tag, errors=[409],
        responses={202: QUEUED}, summary="Send a delivery again (same webhook-id)")  # fmt: skip
