"""Notification channels over the API: create (validated, sealed), read (secrets masked),
change, delete, and send a test message.

A channel's config is write-only where it is secret: every answer shows the fields each kind
marks secret as ``********``, a secret URL as its scheme and host only, and the path of any
other URL (a push endpoint is a capability URL) masked too.  Reads need read, the rest write.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from bot.api.auth import require
from bot.api.body import json_body, string_field, unknown_fields
from bot.api.context import keyring
from bot.api.errors import ApiError, invalid, not_found
from bot.api.openapi import Routes, Schema
from bot.api.params import CURSOR, LIMIT, bigint, cursor, encode_cursor, limit, page_schema, path_id
from bot.state import pool
from channels import CHANNELS, ConfigError, DeploymentKeys, build_channel, send_test_message
from channels.destinations import DestinationError
from channels.http import default_transport
from db import notification_channels
from db.api_keys import ApiKey
from db.notification_channels import ChannelRow
from pipeline import runtime

MASK = "********"
# Writes to a file on the server: for local runs and the demo (the CLI), never over the API.
LOCAL_ONLY = frozenset({"console"})
KINDS = sorted(set(CHANNELS) - LOCAL_ONLY)
# Links people open, not destinations or capabilities: shown whole.
PUBLIC_URLS = frozenset({"link_base"})

CHANNEL: Schema = {
    "type": "object",
    "required": ["id", "kind", "label", "enabled", "disabled_reason", "config"],
    "properties": {
        "id": {"type": "integer"},
        "kind": {"type": "string"},
        "label": {"type": "string"},
        "enabled": {"type": "boolean"},
        "disabled_reason": {"type": ["string", "null"]},
        "config": {"type": "object", "description": "The config, secret fields masked."},
    },
}
NEW_CHANNEL: Schema = {
    "type": "object",
    "required": ["kind", "label", "config"],
    "properties": {
        "kind": {"enum": KINDS},
        "label": {"type": "string", "minLength": 1, "maxLength": 200},
        "config": {"type": "object", "description": "The kind's config; see docs/channels.md."},
    },
}
CHANGES: Schema = {
    "type": "object",
    "properties": {
        "label": NEW_CHANNEL["properties"]["label"],
        "enabled": {"type": "boolean"},
        "config": {"type": "object", "description": "A whole new config (replaces the old one), validated again."},
    },
}
OUTCOME: Schema = {
    "type": "object",
    "required": ["status", "detail", "http_status", "retry_after"],
    "properties": {
        "status": {"enum": ["delivered", "transient", "rate_limited", "permanent", "auth", "gone"]},
        "detail": {"type": ["string", "null"]},
        "http_status": {"type": ["integer", "null"]},
        "retry_after": {"type": ["number", "null"]},
    },
}


def masked(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` fit to show: see the module docstring."""
    secret = set(getattr(CHANNELS.get(kind), "secret_fields", ()))
    return {name: _masked(f"{name}", value, secret) for name, value in config.items()}


def _masked(path: str, value: Any, secret: set[str]) -> Any:
    if isinstance(value, dict):
        return {name: _masked(f"{path}.{name}", inner, secret) for name, inner in value.items()}
    url = urlsplit(value) if isinstance(value, str) and value.startswith(("http://", "https://")) else None
    if path in secret:
        return f"{url.scheme}://{url.netloc}/{MASK}" if url is not None and url.netloc else MASK
    if url is not None and path not in PUBLIC_URLS and (url.path.strip("/") or url.query):
        return f"{url.scheme}://{url.netloc}/{MASK}"
    return value


def public(channel: ChannelRow, config: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": channel.id,
        "kind": channel.kind,
        "label": channel.label,
        "enabled": channel.enabled,
        "disabled_reason": channel.disabled_reason,
        "config": masked(channel.kind, config),
    }


async def _validated_config(kind: str, config: Any) -> dict[str, Any]:
    """``config`` when the kind accepts it and every URL in it resolves to an address we may
    send to (the check runs again at each send: DNS can change); 422 otherwise."""
    if kind in LOCAL_ONLY:
        raise invalid(f"{kind} channels are for local runs: add them with the CLI", {"field": "kind"})
    if not isinstance(config, dict):
        raise invalid("config must be a JSON object", {"field": "config"})
    try:
        build_channel(kind, config)
        policy = default_transport().policy
        for name, value in config.items():
            if name not in PUBLIC_URLS and isinstance(value, str) and value.startswith(("http://", "https://")):
                await policy.check(value)
    except DestinationError as exc:
        raise invalid(f"{kind}: {exc}", {"field": "config"}) from None
    except ConfigError as exc:
        raise invalid(str(exc), {"field": "config"}) from None
    return config


def _kind(body: dict[str, Any]) -> str:
    kind = body.get("kind")
    if not isinstance(kind, str) or kind not in CHANNELS:
        raise invalid(f"kind must be one of {', '.join(KINDS)}", {"field": "kind"})
    return kind


async def _owned(conn: Any, key: ApiKey, channel_id: int) -> ChannelRow:
    channel = await notification_channels.get_channel(conn, channel_id)
    if channel is None or channel.tenant_id != key.tenant_id:
        raise not_found("channel")
    return channel


def _actor(key: ApiKey) -> str:
    return f"api_key:{key.prefix}"


async def create_channel(request: web.Request) -> web.Response:
    key = require(request, "write")
    body = await json_body(request)
    unknown_fields(body, {"kind", "label", "config"})
    kind = _kind(body)
    label = string_field(body, "label", required=True)
    assert label is not None
    config = await _validated_config(kind, body.get("config"))
    async with pool(request).acquire() as conn:
        channel_id = await notification_channels.create_channel(
            conn, keyring(request), tenant_id=key.tenant_id, kind=kind, label=label, config=config
        )
        channel = await _owned(conn, key, channel_id)
    return web.json_response(public(channel, config), status=201)


async def list_channels(request: web.Request) -> web.Response:
    key = require(request, "read")
    size, after = limit(request), cursor(request, bigint)
    async with pool(request).acquire() as conn:
        found = await notification_channels.channel_page(conn, key.tenant_id, after[0] if after else 0, size + 1)
    more, found = len(found) > size, found[:size]
    data = [public(c, c.config(keyring(request))) for c in found]
    return web.json_response({"data": data, "next_cursor": encode_cursor([found[-1].id]) if more else None})


async def get_channel(request: web.Request) -> web.Response:
    key = require(request, "read")
    channel_id = path_id(request, "channel_id", "channel")
    async with pool(request).acquire() as conn:
        channel = await _owned(conn, key, channel_id)
    return web.json_response(public(channel, channel.config(keyring(request))))


async def update_channel(request: web.Request) -> web.Response:
    key = require(request, "write")
    channel_id = path_id(request, "channel_id", "channel")
    body = await json_body(request)
    unknown_fields(body, {"label", "enabled", "config"})
    label = string_field(body, "label", required=False)
    enabled = body.get("enabled")
    if "enabled" in body and not isinstance(enabled, bool):
        raise invalid("enabled must be true or false", {"field": "enabled"})
    async with pool(request).acquire() as conn:
        channel = await _owned(conn, key, channel_id)
        config = await _validated_config(channel.kind, body["config"]) if "config" in body else None
        changed = await notification_channels.update_channel(
            conn, keyring(request), channel.id, label=label, enabled=enabled, config=config, actor=_actor(key)
        )
    if changed is None:
        raise not_found("channel")
    return web.json_response(public(changed, changed.config(keyring(request))))


async def delete_channel(request: web.Request) -> web.Response:
    key = require(request, "write")
    channel_id = path_id(request, "channel_id", "channel")
    async with pool(request).acquire() as conn, conn.transaction():
        channel = await _owned(conn, key, channel_id)
        # Deleting would cascade to the rules' channel lists and to the delivery log.
        reason = await notification_channels.channel_in_use(conn, channel.id)
        if reason is not None:
            raise ApiError(409, "conflict", f"the channel cannot be deleted: {reason}; disable it instead")
        await notification_channels.delete_channel(conn, channel.id)
    return web.Response(status=204)


async def test_channel(request: web.Request) -> web.Response:
    key = require(request, "write")
    channel_id = path_id(request, "channel_id", "channel")
    async with pool(request).acquire() as conn:
        channel = await _owned(conn, key, channel_id)
    # Only Web Push needs the deployment's keys; loading them opens the database once per process.
    keys = await runtime.deployment_keys() if channel.kind == "webpush" else DeploymentKeys()
    sent = await send_test_message(pool(request), keyring(request), channel.id, keys)
    if sent is None:
        raise not_found("channel")
    _, delivery = sent
    return web.json_response(
        {
            "status": delivery.status.value,
            "detail": delivery.detail,
            "http_status": delivery.http_status,
            "retry_after": delivery.retry_after,
        }
    )


def add_routes(routes: Routes) -> None:
    tag, one = "channels", "/v1/channels/{channel_id}"
    add = routes.add
    add("POST", "/v1/channels", create_channel, scope="write", tag=tag, body=NEW_CHANNEL, responses={201: CHANNEL},
        summary="Create a channel (config validated, its destination checked, sealed at rest)")  # fmt: skip
    add("GET", "/v1/channels", list_channels, scope="read", tag=tag, query=(LIMIT, CURSOR),
        responses={200: page_schema(CHANNEL)}, summary="The tenant's channels, by page (secrets masked)")  # fmt: skip
    add("GET", one, get_channel, scope="read", tag=tag, responses={200: CHANNEL}, summary="One channel")
    add("PATCH", one, update_channel, scope="write", tag=tag, body=CHANGES, responses={200: CHANNEL},
        summary="Change a channel's label, pause or resume it, or replace its config")  # fmt: skip
    add("DELETE", one, delete_channel, scope="write", tag=tag, responses={204: None}, errors=(409,),
        summary="Delete a channel no rule uses and no delivery names (else 409: disable it)")  # fmt: skip
    add("POST", one + "/test", test_channel, scope="write", tag=tag, responses={200: OUTCOME},
        summary="Send a test message now and return how it went")  # fmt: skip
