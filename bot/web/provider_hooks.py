"""``/webhooks/providers/{provider}``: a vendor's push becomes a targeted sync, acknowledged fast.

POST: verify (401 on a bad or stale signature, or a wrong token), parse (400, JSON, never a
500), find the active connections of the account by ``(provider, provider_user_id)`` and
request a ``webhook`` sync of each that has none waiting.  An account we do not know is
acknowledged and logged: a vendor retries anything else, for days.  GET answers Oura's
subscription handshake.  The checks themselves are ``pipeline.providers.push``.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from aiohttp import web

from bot.api.errors import ApiError
from bot.state import pool
from bot.web.settings import WebSettings
from db import connect_links, sync_runs
from pipeline import triggers
from pipeline.providers import PROVIDERS, junction, push
from pipeline.providers.http import RestProvider
from pipeline.providers.push import BadSignature, MalformedPush, PushEvent

log = logging.getLogger(__name__)

WEB_SETTINGS: web.AppKey[WebSettings] = web.AppKey("web_settings", WebSettings)
SIGNED = ("whoop", "oura")
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def settings(request: web.Request) -> WebSettings:
    return request.app[WEB_SETTINGS]


def _client_secret(provider_id: str) -> str | None:
    """The app's client secret, which WHOOP and Oura sign their pushes with."""
    provider = PROVIDERS.get(provider_id)
    oauth = provider.oauth if isinstance(provider, RestProvider) else None
    return oauth.client_secret if oauth is not None else None


async def _verified_event(request: web.Request, provider_id: str) -> PushEvent:
    """The push's event; raises BadSignature or MalformedPush.  Reads the raw body once: a
    signature covers the bytes as sent, not a re-serialised parse."""
    tolerance = settings(request).push_tolerance
    if provider_id == "junction":
        return await _junction_event(request, tolerance)
    if provider_id in SIGNED:
        secret = _client_secret(provider_id)
        if secret is None:
            raise BadSignature(f"{provider_id} has no client secret configured here")
        body, headers = await request.read(), request.headers
        if provider_id == "whoop":
            stamp = headers.get("X-WHOOP-Signature-Timestamp")
            push.verify_whoop(body, headers.get("X-WHOOP-Signature"), stamp, secret, tolerance=tolerance)
            return push.parse_whoop(body)
        push.verify_oura(
            body, headers.get("x-oura-signature"), headers.get("x-oura-timestamp"), secret, tolerance=tolerance
        )
        return push.parse_oura(body)
    token = settings(request).withings_notify_token
    if token is None:
        raise BadSignature("WITHINGS_NOTIFY_TOKEN is not set here")
    form: dict[str, str] = {}
    if request.content_type in FORMS:  # anything else lacks a userid: parse_withings says 400
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    push.verify_token(request.query.get("token") or form.get("token"), token)
    return push.parse_withings(form)


async def _junction_event(request: web.Request, tolerance: timedelta) -> PushEvent:
    """Junction's push, Svix-signed with the endpoint's ``whsec_`` secret (Libre events too:
    Libre is read through Junction)."""
    provider = PROVIDERS.get("junction")
    secret = provider.webhook_secret if isinstance(provider, junction.Junction) else None
    if secret is None:
        raise BadSignature("JUNCTION_WEBHOOK_SECRET is not set here")
    body = await request.read()
    junction.verify_push(body, request.headers, secret, tolerance=tolerance)
    return junction.parse_push(body)


async def receive(request: web.Request) -> web.Response:
    provider_id = request.match_info["provider"]
    if provider_id not in (*SIGNED, "withings", "junction"):
        raise ApiError(404, "not_found", "this server takes no pushes from that provider")
    try:
        event = await _verified_event(request, provider_id)
    except BadSignature as exc:
        log.warning("%s push refused: %s", provider_id, exc)
        raise ApiError(401, "bad_signature", str(exc)) from None
    except MalformedPush as exc:
        raise ApiError(400, "malformed", str(exc)) from None
    requested = await _request_syncs(request, event)
    # Withings counts anything but a 200 as a failed delivery, and drops the subscription
    # after four; the others take any 2xx.
    return web.json_response(
        {"accepted": True, "sync_runs": requested}, status=200 if provider_id == "withings" else 202
    )


async def _request_syncs(request: web.Request, event: PushEvent) -> int:
    """Sync runs requested for ``event``; none when it needs none or a run already waits."""
    async with pool(request).acquire() as conn:
        targets = await connect_links.push_targets(conn, event.provider, event.provider_user_id)
    if not targets:
        log.info("%s push (%s) for an account no active connection has; acknowledged", event.provider, event.kind)
        return 0
    if not event.sync:
        log.debug("%s push (%s) for connection(s) %s: nothing to sync", event.provider, event.kind, _ids(targets))
        return 0
    # The run reads what the event names (its days, its collections) when it names them; a run
    # already waiting is widened to cover the event instead of adding another.
    window = event.window
    scope = sync_runs.Scope(window.start if window else None, window.end if window else None, event.only)
    requested = 0
    for target in targets:
        run_id = await triggers.request_push_sync(pool(request), target.connection_id, target.pending_run, scope)
        requested += run_id is not None
    # Debug: a push is routine, and a vendor sends hundreds a second at peak (the runs are the record).
    log.debug("%s push (%s): %d sync run(s) for connection(s) %s", event.provider, event.kind, requested, _ids(targets))
    return requested


def _ids(targets: list[connect_links.PushTarget]) -> str:
    return ",".join(str(t.connection_id) for t in targets)


async def challenge(request: web.Request) -> web.Response:
    """Oura's subscription handshake: echo ``challenge`` when ``verification_token`` is ours."""
    if request.match_info["provider"] != "oura":
        raise ApiError(405, "method_not_allowed", "only Oura sends a GET handshake", headers={"Allow": "POST"})
    expected = settings(request).oura_verification_token
    try:
        if expected is None:
            raise BadSignature("OURA_WEBHOOK_VERIFICATION_TOKEN is not set here")
        push.verify_token(request.query.get("verification_token"), expected)
    except BadSignature as exc:
        log.warning("oura webhook handshake refused: %s", exc)
        raise ApiError(401, "bad_verification_token", str(exc)) from None
    found = request.query.get("challenge", "")
    if not found or len(found) > 512:
        raise ApiError(400, "malformed", "challenge is required")
    return web.json_response({"challenge": found})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/webhooks/providers/{provider}", receive)
    router.add_get("/webhooks/providers/{provider}", challenge)
