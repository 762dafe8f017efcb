"""``POST /v1/ingest``: an integrator pushes a batch of readings for one user.

Authenticated by an API key with the write scope, or by a Standard Webhooks signature
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature``) made with one of the tenant's
inbound secrets, the tenant named by the ``tenant`` query parameter (its slug: a sender can
put it in the URL it is configured with).  The signature is checked over the raw body before
anything is parsed; a timestamp more than 5 minutes away is refused, so a captured request
cannot be replayed later (and a replay within the window writes nothing: the upsert is
idempotent).

Every reading is validated; the invalid ones come back by index with the reason and the
valid ones are stored with provider ``ingest`` under the user's ingest connection.  The batch
is then recorded as a completed sync run and handed to analytics, as a sync is.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from bot.api.auth import API_KEY, require, unauthorized
from bot.api.body import json_body, string_field, unknown_fields
from bot.api.context import keyring, limits
from bot.api.errors import ApiError, invalid, not_found
from bot.api.limits import enforce
from bot.api.openapi import ID, Param, Routes, Schema, listing
from bot.api.params import iso, path_id
from bot.api.users import owned
from bot.state import pool
from channels.signing import TOLERANCE, SecretError, verify
from db import ingest, metrics
from db.metrics import Reading
from pipeline import triggers
from pipeline.vocabulary import problem

ANALYSES: web.AppKey[triggers.Analyses] = web.AppKey("analyses", triggers.Analyses)
HISTORY = timedelta(days=400)
CLOCK_SKEW = timedelta(minutes=10)
OUTSIDE = "recorded_at must lie within the last 400 days and at most 10 minutes ahead"

READING_IN: Schema = {
    "type": "object",
    "required": ["metric", "recorded_at", "value", "unit"],
    "properties": {
        "metric": {"type": "string"},
        "recorded_at": {"type": "string", "format": "date-time"},
        "value": {"type": "number"},
        "unit": {"type": "string"},
    },
}
BATCH: Schema = {
    "type": "object",
    "required": ["user_id", "readings"],
    "properties": {"user_id": ID, "readings": {"type": "array", "items": READING_IN}},
}
RESULT: Schema = {
    "type": "object",
    "required": ["sync_run_id", "received", "accepted", "written", "unchanged", "invalid"],
    "properties": {
        "sync_run_id": {"type": ["integer", "null"]},
        "received": {"type": "integer"},
        "accepted": {"type": "integer"},
        "written": {"type": "integer"},
        "unchanged": {"type": "integer"},
        "invalid": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "reason"],
                "properties": {"index": {"type": "integer"}, "reason": {"type": "string"}},
            },
        },
    },
}
SECRET: Schema = {
    "type": "object",
    "required": ["id", "name", "created_at", "revoked_at"],
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "revoked_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
CREATED_SECRET: Schema = {
    "allOf": [SECRET, {"type": "object", "required": ["secret"], "properties": {"secret": {"type": "string"}}}]
}


async def _signed_tenant(request: web.Request) -> int:
    """The tenant whose live secret signed this request; 401 otherwise."""
    slug = request.query.get("tenant")
    msg_id, stamp = request.headers.get("webhook-id", ""), request.headers.get("webhook-timestamp", "")
    signature = request.headers.get("webhook-signature", "")
    if not slug or not msg_id or not stamp:
        raise unauthorized("a signed request needs ?tenant=<slug> and the webhook-id and webhook-timestamp headers")
    if not stamp.isdigit() or len(stamp) > 12 or abs(int(stamp) - time.time()) > TOLERANCE:
        raise unauthorized(f"webhook-timestamp must be Unix seconds within {TOLERANCE} s of now")
    body = await request.read()
    async with pool(request).acquire() as conn:
        found = await ingest.live_secrets(conn, keyring(request), slug)
    for secret in found[1] if found else []:
        try:
            if verify(secret, msg_id, stamp, body, signature):
                assert found is not None
                return found[0]
        except SecretError:
            continue
    # Unknown tenant, no secret, or a bad signature: one answer, so the slug cannot be probed.
    raise unauthorized("the webhook-signature does not verify with any inbound secret of the tenant")


def _reading(raw: Any) -> Reading | str:
    """The reading, or why it cannot be read at all."""
    if not isinstance(raw, dict):
        return "a reading must be an object with metric, recorded_at, value and unit"
    metric, recorded_at, value, unit = (raw.get(k) for k in ("metric", "recorded_at", "value", "unit"))
    if not isinstance(metric, str) or not isinstance(unit, str):
        return "metric and unit must be strings"
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return f"{metric} value must be a finite number"
    if not isinstance(recorded_at, str):
        return "recorded_at must be an RFC 3339 time with a zone"
    try:
        when = datetime.fromisoformat(recorded_at)
    except ValueError:
        return "recorded_at must be an RFC 3339 time with a zone"
    return Reading(metric, when, float(value), unit)


def validate(raw: list[Any], now: datetime) -> tuple[list[Reading], list[dict[str, Any]]]:
    """The valid readings, and ``{index, reason}`` for each invalid one."""
    start, end = now - HISTORY, now + CLOCK_SKEW
    valid: list[Reading] = []
    rejected: list[dict[str, Any]] = []
    for index, item in enumerate(raw):
        reading = _reading(item)
        reason = reading if isinstance(reading, str) else problem(reading, start, end)
        if reason is not None and reason.endswith("outside the sync window"):
            reason = OUTSIDE
        if reason is None and isinstance(reading, Reading):
            valid.append(reading)
        else:
            rejected.append({"index": index, "reason": reason})
    return valid, rejected


async def ingest_readings(request: web.Request) -> web.Response:
    started = datetime.now(UTC)
    if API_KEY in request:
        tenant_id = require(request, "write").tenant_id
    else:
        tenant_id = await _signed_tenant(request)
        await enforce(request, f"tenant:{tenant_id}")
    body = await json_body(request)
    unknown_fields(body, {"user_id", "readings"})
    user_id, raw = body.get("user_id"), body.get("readings")
    if not isinstance(user_id, int) or isinstance(user_id, bool) or not 1 <= user_id <= 2**63 - 1:
        raise invalid("user_id must be the id of one of your users", {"field": "user_id"})
    if not isinstance(raw, list):
        raise invalid("readings must be a list", {"field": "readings"})
    most = limits(request).max_readings
    if len(raw) > most:
        raise ApiError(413, "too_many_readings", f"at most {most} readings per batch", {"max_readings": most})
    valid, rejected = validate(raw, started)
    run_id, counts = None, metrics.UpsertCounts()
    async with pool(request).acquire() as conn:
        if not valid:
            await owned(conn, tenant_id, user_id)
        else:
            async with conn.transaction():
                connection_id = await ingest.connection_of(conn, tenant_id, user_id)
                if connection_id is None:
                    raise not_found("user")
                try:
                    counts = await metrics.upsert(conn, user_id, ingest.PROVIDER, connection_id, valid)
                except metrics.OwnerGone:
                    # Erased between the ownership check and the write: nothing was stored.
                    raise not_found("user") from None
                times = [r.recorded_at for r in valid]
                batch = ingest.Batch(
                    tenant_id, user_id, connection_id, (min(times), max(times)), len(raw), counts.written,
                    counts.unchanged, len(rejected), started,
                )  # fmt: skip
                run_id = await ingest.record_run(conn, batch)
    if run_id is not None:
        request.app[ANALYSES].add(run_id)
    return web.json_response(
        {
            "sync_run_id": run_id,
            "received": len(raw),
            "accepted": len(valid),
            "written": counts.written,
            "unchanged": counts.unchanged,
            "invalid": rejected,
        }
    )


async def create_secret(request: web.Request) -> web.Response:
    key = require(request, "admin")
    body = await json_body(request)
    unknown_fields(body, {"name"})
    name = string_field(body, "name", required=False, max_length=100) or "inbound secret"
    async with pool(request).acquire() as conn:
        secret_id, secret = await ingest.create_secret(conn, keyring(request), key.tenant_id, name)
        created = next(s for s in await ingest.list_secrets(conn, key.tenant_id) if s.id == secret_id)
    return web.json_response(_public(created) | {"secret": secret}, status=201)


def _public(secret: ingest.IngestSecret) -> dict[str, Any]:
    return {
        "id": secret.id,
        "name": secret.name,
        "created_at": secret.created_at.isoformat(),
        "revoked_at": iso(secret.revoked_at),
    }


async def list_secrets(request: web.Request) -> web.Response:
    key = require(request, "admin")
    async with pool(request).acquire() as conn:
        found = await ingest.list_secrets(conn, key.tenant_id)
    return web.json_response({"data": [_public(s) for s in found]})


async def revoke_secret(request: web.Request) -> web.Response:
    key = require(request, "admin")
    secret_id = path_id(request, "secret_id", "inbound secret")
    async with pool(request).acquire() as conn:
        if not await ingest.revoke_secret(conn, key.tenant_id, secret_id):
            raise not_found("inbound secret")
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    """The stored batches' analyses, sent a few times a second (and the last ones at shutdown)."""

    async def analyses(app: web.Application) -> AsyncIterator[None]:
        app[ANALYSES] = triggers.Analyses()
        yield
        await app[ANALYSES].close()

    app.cleanup_ctx.append(analyses)


def add_routes(routes: Routes) -> None:
    tag = "ingest"
    routes.add(
        "POST",
        "/v1/ingest",
        ingest_readings,
        scope="write",
        tag=tag,
        summary="Push a batch of readings for one user; invalid ones are reported by index",
        description="Authenticate with an API key (write scope), or sign the request with a Standard Webhooks"
        " inbound secret and name the tenant in `?tenant=<slug>`. A timestamp more than 5 minutes off is 401.",
        body=BATCH,
        query=(Param("tenant", {"type": "string"}, "The tenant's slug, for a signed request."),),
        responses={200: RESULT},
        errors=(404,),
        security=("bearer", "standardWebhooks"),
    )
    routes.add(
        "POST",
        "/v1/ingest/secrets",
        create_secret,
        scope="admin",
        tag=tag,
        summary="Create an inbound signing secret (shown in this response only)",
        body={"type": "object", "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 100}}},
        responses={201: CREATED_SECRET},
    )
    routes.add(
        "GET",
        "/v1/ingest/secrets",
        list_secrets,
        scope="admin",
        tag=tag,
        summary="Inbound secrets",
        responses={200: listing(SECRET)},
    )
    routes.add(
        "DELETE",
        "/v1/ingest/secrets/{secret_id}",
        revoke_secret,
        scope="admin",
        tag=tag,
        summary="Revoke an inbound secret",
        responses={204: None},
    )
