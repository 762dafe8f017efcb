"""The Slack front end: Bolt (HTTP mode) mounted in the aiohttp app.

Routes: ``POST /slack/events`` (slash commands, interactivity and events: one Request URL,
signature checked by Bolt before anything is parsed), and with OAuth credentials
``GET /slack/install`` and ``GET /slack/oauth_redirect``.  With SLACK_SOCKET_MODE=true the same
app also (or, without a signing secret, only) takes them over Socket Mode, connected while the
web app runs (``bot.slack.socket``).  Without SLACK_SIGNING_SECRET (or Socket Mode) and a token
or OAuth credentials the front end is off, and ``setup`` logs why.
"""

from __future__ import annotations

__all__ = ["SLACK_APP", "SlackSettings", "render", "setup"]

import logging

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp

from bot.slack import render
from bot.slack.app import build
from bot.slack.settings import SlackSettings
from bot.slack.socket import lifecycle
from bot.state import POOL
from db.sealing import Keyring

log = logging.getLogger(__name__)
SLACK_APP: web.AppKey[AsyncApp] = web.AppKey("slack_app", AsyncApp)


def setup(app: web.Application, settings: SlackSettings, *, keyring: Keyring, public_url: str) -> bool:
    """Mount the Slack routes on ``app`` (which holds the pool); False, logged, when Slack is off."""
    if settings.off_reason is not None:
        log.info("Slack front end is off: %s", settings.off_reason)
        return False
    bolt, listeners = build(settings, app[POOL], keyring, public_url)
    app[SLACK_APP] = bolt

    async def close_listeners(_: web.Application) -> None:
        await listeners.close()

    app.on_cleanup.append(close_listeners)
    if settings.socket_mode:
        assert settings.app_token is not None
        app.cleanup_ctx.append(lifecycle(bolt, settings.app_token))
    # Never without a signing secret: Bolt would check signatures against an empty key.
    if settings.signing_secret is not None:
        app.router.add_post("/slack/events", _events)
    if bolt.oauth_flow is not None:
        app.router.add_get("/slack/install", _install)
        app.router.add_get("/slack/oauth_redirect", _oauth_redirect)
    mode = "OAuth install" if bolt.oauth_flow is not None else "single workspace (SLACK_BOT_TOKEN)"
    where = ["/slack/events"] if settings.signing_secret is not None else []
    where += ["Socket Mode"] if settings.socket_mode else []
    log.info("Slack front end is on (%s), %s", " and ".join(where), mode)
    return True


async def _events(request: web.Request) -> web.Response:
    # Bolt verifies X-Slack-Signature over the raw body (a 401 when it fails) before parsing.
    response = await request.app[SLACK_APP].async_dispatch(await to_bolt_request(request))
    return await to_aiohttp_response(response)


async def _install(request: web.Request) -> web.Response:
    flow = request.app[SLACK_APP].oauth_flow
    assert flow is not None
    return await to_aiohttp_response(await flow.handle_installation(await to_bolt_request(request)))


async def _oauth_redirect(request: web.Request) -> web.Response:
    flow = request.app[SLACK_APP].oauth_flow
    assert flow is not None
    return await to_aiohttp_response(await flow.handle_callback(await to_bolt_request(request)))
