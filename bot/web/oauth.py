"""The browser side of connecting a wearable: ``/connect/start`` and ``/oauth/{provider}/callback``.

1. ``GET /connect/start?token=…`` shows a one-time connect link's confirm page and spends
   nothing: chat apps fetch a posted link to preview it.  Its button POSTs the link token with
   the form token bound to that link (``connect_links.confirmable``); only that POST spends the
   link, starts an OAuth flow bound to the link's user (state, plus a PKCE verifier where
   ``PKCE`` says so) and redirects (303) to the provider's authorize URL.  Junction (and Libre,
   read through it) has no OAuth of ours: the POST finds or makes the person's Junction user,
   stores the connection and answers a page leading on to Junction Link.
2. ``GET /oauth/{provider}/callback?code=…&state=…`` spends the state (unknown, used, expired
   or another provider's: 400), exchanges the code, stores the sealed tokens and the provider's
   id of the user, publishes ``connection.created`` and starts the initial sync.

Every page is HTML from ``bot.web.pages``, which escapes all it shows.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from typing import Any, Protocol, runtime_checkable

from aiohttp import web
from yarl import URL

from bot.api.context import keyring, public_url
from bot.state import pool
from bot.web import pages
from db import connect_links
from pipeline import triggers
from pipeline.errors import PipelineError
from pipeline.providers import PROVIDERS, Provider
from pipeline.providers.junction import Junction

log = logging.getLogger(__name__)

# Providers whose authorize URL gets an RFC 7636 S256 challenge.  None of the three documents
# PKCE, but each runs a standard RFC 6749 authorize and token endpoint, which must ignore a
# parameter it does not know (§3.1, §3.2): harmless where unsupported, enforced where it is.
# Not Withings: its token endpoint is its own ``action=requesttoken``, with a fixed parameter list.
PKCE = frozenset({"oura", "whoop", "dexcom"})
# A link token is 43 characters; anything much longer is not one, and is not looked up.
MAX_TOKEN = 200
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


@runtime_checkable
class OAuthClient(Protocol):
    """A provider the browser can connect: it has an authorize URL and a code exchange."""

    def authorize_url(self, redirect_uri: str, state: str) -> str: ...

    async def exchange_code(self, code: str, redirect_uri: str, code_verifier: str | None = None) -> dict[str, Any]: ...


@runtime_checkable
class NamesUsers(Protocol):
    """A provider whose id of the user takes a call after the exchange (WHOOP's profile,
    Oura's personal_info, Dexcom's dataRange)."""

    async def provider_user_id(self, tokens: dict[str, Any]) -> str: ...


def code_challenge(verifier: str) -> str:
    """RFC 7636 §4.2, S256: unpadded base64url of the verifier's SHA-256."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def redirect_uri(request: web.Request, provider_id: str) -> str:
    return f"{public_url(request)}/oauth/{provider_id}/callback"


async def connect_start(request: web.Request) -> web.StreamResponse:
    """GET: the confirm page of a live link, which spends nothing (chat apps fetch links to
    preview them, and must not use up the user's)."""
    token = request.query.get("token", "")
    if not token or len(token) > MAX_TOKEN:
        return pages.link_invalid()
    async with pool(request).acquire() as conn:
        found = await connect_links.confirmable(conn, token)
    if found is None:
        return pages.link_invalid()
    link, form_token = found
    provider = PROVIDERS.get(link.provider)
    if isinstance(provider, Junction) and provider.available:
        return pages.confirm_connect(provider.display_name, token, form_token, None, pages.JUNCTION_INTRO)
    if provider is None or not isinstance(provider, OAuthClient):
        return pages.unknown_provider()
    if not provider.available:
        return pages.provider_unavailable(provider.display_name)
    origin = _origin(provider, redirect_uri(request, provider.id))
    return pages.confirm_connect(provider.display_name, token, form_token, origin)


async def connect_confirm(request: web.Request) -> web.StreamResponse:
    """POST, from the confirm page: spend the link (once, and only with the form token of its
    page), start an OAuth flow bound to its user and redirect (303) to the authorize URL."""
    form = await request.post() if request.content_type in FORMS else {}
    token, form_token = form.get("token"), form.get("form_token")
    if not isinstance(token, str) or not isinstance(form_token, str) or not token or len(token) > MAX_TOKEN:
        return pages.link_invalid()
    try:
        async with pool(request).acquire() as conn, conn.transaction():
            link = await connect_links.consume_confirmed(conn, token, form_token)
            if link is None:
                return pages.link_invalid()
            provider = PROVIDERS.get(link.provider)
            if provider is None or not isinstance(provider, (OAuthClient, Junction)):
                return pages.unknown_provider()
            if not provider.available:
                return pages.provider_unavailable(provider.display_name)
            if not isinstance(provider, Junction):  # Junction has no OAuth flow of ours
                callback = redirect_uri(request, provider.id)
                flow = await connect_links.start_flow(
                    conn, link.user_id, provider.id, callback, pkce=provider.id in PKCE
                )
    except connect_links.FormTokenMismatch:
        log.warning("connect link confirmed by a form that did not come from its page; refused")
        return pages.form_not_ours()
    if isinstance(provider, Junction):  # after the commit: the link is spent whatever Junction says
        return await _junction_link(request, provider, link.user_id)
    url = URL(provider.authorize_url(callback, flow.state))
    if flow.code_verifier is not None:
        url = url.update_query(code_challenge=code_challenge(flow.code_verifier), code_challenge_method="S256")
    log.info("connect link of user %s: redirected to %s", link.user_id, provider.id)
    raise web.HTTPSeeOther(str(url), headers=pages.HEADERS)


async def _junction_link(request: web.Request, provider: Junction, user_id: int) -> web.Response:
    """Junction: find or make the person's Junction user, store the connection (its id sealed as
    the token, and as ``provider_user_id`` for pushes), start the initial sync, and show the
    Junction Link page to go on to."""
    try:
        link = await provider.link(f"cb-u{user_id}")
    except PipelineError as exc:
        log.warning("%s link for user %s failed: %s", provider.id, user_id, exc)
        return pages.exchange_failed(provider.display_name)
    connection_id = await _store(
        request, provider, user_id, {"user_id": link.user_id, "provider_user_id": link.user_id}
    )
    run_id = await triggers.request_sync(pool(request), connection_id, "initial")
    log.info("%s linked for user %s: connection %s, initial sync run %s", provider.id, user_id, connection_id, run_id)
    return pages.junction_link(provider.display_name, link.url)


def _origin(provider: OAuthClient, callback: str) -> str:
    """Where the provider's authorize page lives, for the confirm page's ``form-action``.  Read
    off a URL made with a stand-in state: no flow exists until the button is pressed."""
    return str(URL(provider.authorize_url(callback, "0" * 43)).origin())


async def callback(request: web.Request) -> web.StreamResponse:
    provider = PROVIDERS.get(request.match_info["provider"])
    if provider is None or not isinstance(provider, OAuthClient):
        return pages.unknown_provider()
    name, query = provider.display_name, request.query
    state, error = query.get("state", ""), query.get("error")
    if error is not None:
        if state:  # the flow is over either way: its state must not be usable later
            async with pool(request).acquire() as conn:
                await connect_links.finish_flow(conn, state, provider.id)
        log.info("%s callback: the provider answered %r", provider.id, error[:40])
        if error == "access_denied":
            return pages.denied(name)
        return pages.provider_error(name, error, query.get("error_description"))
    code = query.get("code", "")
    if not state or not code:
        return pages.state_invalid(name)
    async with pool(request).acquire() as conn:
        flow = await connect_links.finish_flow(conn, state, provider.id)
    if flow is None:
        return pages.state_invalid(name)
    try:
        tokens = await provider.exchange_code(code, flow.redirect_uri, flow.code_verifier)
    except PipelineError as exc:
        # The message is scrubbed of the code and secrets by the provider's error map.
        log.warning("%s code exchange for user %s failed: %s", provider.id, flow.user_id, exc)
        return pages.exchange_failed(name)
    connection_id = await _store(request, provider, flow.user_id, tokens)
    run_id = await triggers.request_sync(pool(request), connection_id, "initial")
    log.info(
        "%s connected for user %s: connection %s, initial sync run %s", provider.id, flow.user_id, connection_id, run_id
    )
    return pages.connected(name)


async def _store(request: web.Request, provider: Provider, user_id: int, tokens: dict[str, Any]) -> int:
    """Seal and store the connection, with the provider's id of the user when we can learn it:
    Withings returns it with the tokens, the others answer one call (``NamesUsers``).  Without it the connection
    still works; only its push webhooks cannot find it (logged)."""
    account = tokens.get("provider_user_id")
    if account is None and isinstance(provider, NamesUsers):
        try:
            account = await provider.provider_user_id(tokens)
        except PipelineError as exc:
            log.warning("%s: no user id for user %s, pushes will not reach it: %s", provider.id, user_id, exc)
    async with pool(request).acquire() as conn:
        return await connect_links.record_connection(
            conn,
            keyring(request),
            user_id=user_id,
            provider=provider.id,
            tokens=tokens,
            provider_user_id=str(account) if account is not None else None,
        )


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/connect/start", connect_start)
    router.add_post("/connect/start", connect_confirm)
    router.add_get("/oauth/{provider}/callback", callback)
