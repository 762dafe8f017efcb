"""The account-linking pages: ``/chat/link`` and its OIDC callback; and ``/chat/charts/{token}.png``.

1. ``GET /chat/link?token=…`` (the one-time link /connect gave the chat user) names the chat
   identity and asks for the enrolment code the care team gave the person.
2. ``POST /chat/link`` checks both, starts a flow (state in a ``Secure; HttpOnly;
   SameSite=Lax`` cookie as Bolt does it) and sends the browser to the platform's sign-in.
3. ``GET /chat/link/callback`` requires the cookie to match the state, proves the chat
   identity, and links only when it is the link's own: a forwarded link is refused, and burnt.
"""

from __future__ import annotations

import html
import logging

from aiohttp import web

from bot.chat.proofs import IdentityProof, ProofFailed
from bot.state import POOL
from db import chat

log = logging.getLogger(__name__)
COOKIE = "cb-chat-link"
PROOFS: web.AppKey[dict[str, IdentityProof]] = web.AppKey("chat_proofs", dict)
PUBLIC_URL: web.AppKey[str] = web.AppKey("chat_public_url", str)
PLATFORM_NAMES = {"slack": "Slack", "discord": "Discord"}


def setup(app: web.Application, *, public_url: str, proofs: dict[str, IdentityProof]) -> None:
    app[PROOFS], app[PUBLIC_URL] = proofs, public_url
    app.router.add_get("/chat/link", show)
    app.router.add_post("/chat/link", start)
    app.router.add_get("/chat/link/callback", callback)
    app.router.add_get("/chat/charts/{token}.png", chart)


async def show(request: web.Request) -> web.Response:
    token = request.query.get("token", "")
    async with request.app[POOL].acquire() as conn:
        found = await chat.peek_link_token(conn, token)
    if found is None:
        return _page("Link expired", "This link is used or expired. Type /connect in chat for a new one.", 410)
    platform = PLATFORM_NAMES.get(found.platform, found.platform)
    form = (
        f"<p>Link {platform} user <b>{html.escape(found.chat_user_id)}</b> in workspace"
        f" <b>{html.escape(found.workspace_id)}</b> to your CareBeacon account?</p>"
        '<form method="post" action="/chat/link">'
        f'<input type="hidden" name="token" value="{html.escape(token)}">'
        '<label>Enrolment code from your care team <input name="code" autocomplete="off" required></label>'
        f"<button>Continue: sign in with {platform}</button></form>"
        f"<p>You will sign in to {platform} to prove this is your account.</p>"
    )
    return _page("Link your account", form, 200, raw=True)


async def start(request: web.Request) -> web.Response:
    form = await request.post()
    token, code = str(form.get("token", "")), str(form.get("code", "")).strip()
    async with request.app[POOL].acquire() as conn:
        found = await chat.peek_link_token(conn, token)
        started = await chat.start_flow(conn, token, code) if found is not None else None
    if found is None or started is None:
        return _page("Cannot link", "The link has expired, or the enrolment code is wrong or used.", 400)
    proof = request.app[PROOFS].get(found.platform)
    if proof is None:
        return _page("Cannot link", f"Sign-in with {found.platform} is not configured here.", 503)
    state, nonce = started
    url = proof.authorize_url(
        state=state, nonce=nonce, workspace_id=found.workspace_id, redirect_uri=_redirect(request)
    )
    response = web.HTTPFound(url)
    response.set_cookie(COOKIE, state, max_age=600, path="/chat/link", secure=True, httponly=True, samesite="Lax")
    raise response  # a redirect is raised in aiohttp; json_errors passes 3xx through


async def callback(request: web.Request) -> web.Response:
    state, code = request.query.get("state", ""), request.query.get("code", "")
    # The cookie binds the callback to the browser that started the flow (CSRF).
    if not state or request.cookies.get(COOKIE) != state or not code:
        return _page("Cannot link", "This sign-in did not start in this browser. Start again from chat.", 400)
    async with request.app[POOL].acquire() as conn:
        flow = await chat.take_flow(conn, state)
    if flow is None:
        return _page("Cannot link", "This sign-in expired or was used. Start again from chat with /connect.", 400)
    proof = request.app[PROOFS][flow.token.platform]
    try:
        proven = await proof.prove(code=code, nonce=flow.nonce, redirect_uri=_redirect(request))
    except ProofFailed as exc:
        log.info("chat link sign-in failed: %s", exc)
        return _page("Cannot link", "The sign-in did not prove your chat account. Start again from chat.", 400)
    async with request.app[POOL].acquire() as conn:
        outcome, _ = await chat.bind(
            conn,
            flow,
            proven_workspace=proven.workspace_id,
            proven_user=proven.user_id,
            via=f"{flow.token.platform}-oidc",
        )
    response = _OUTCOMES[outcome]
    page = _page(*response)
    page.del_cookie(COOKIE, path="/chat/link")
    return page


_OUTCOMES = {
    chat.LinkOutcome.LINKED: ("Linked", "Your chat account is linked. Go back to chat and try /score.", 200),
    chat.LinkOutcome.FORWARDED: (
        "Refused",
        "This link was made for another chat account, so it cannot link yours. Type /connect yourself to get your own.",
        403,
    ),
    chat.LinkOutcome.USED: ("Cannot link", "The link or the enrolment code was used meanwhile.", 409),
}


async def chart(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        png = await chat.chart(conn, request.match_info["token"])
    if png is None:
        raise web.HTTPNotFound(text="no such chart, or it expired")
    return web.Response(body=png, content_type="image/png", headers={"Cache-Control": "private, max-age=1800"})


def _redirect(request: web.Request) -> str:
    return f"{request.app[PUBLIC_URL]}/chat/link/callback"


def _page(title: str, body: str, status: int, *, raw: bool = False) -> web.Response:
    text = body if raw else f"<p>{html.escape(body)}</p>"
    document = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)} · CareBeacon</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{text}</body></html>"
    )
    # No referrer: the page's URL carries the link token.
    headers = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
    return web.Response(text=document, status=status, content_type="text/html", headers=headers)
