"""The aiohttp web application: health and readiness now; chat, webhooks and the API mount here."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web
from dramatiq.brokers.redis import RedisBroker

from bot import admin, api, metrics_http
from bot import chat as chat_pages
from bot import discord as discord_bot
from bot import slack as slack_bot
from bot import web as browser
from bot.api.errors import ApiError
from bot.api.settings import ApiSettings
from bot.chat.proofs import DiscordIdentify
from bot.discord.settings import DiscordSettings
from bot.settings import BotSettings
from bot.slack.settings import SlackSettings
from bot.state import BROKER, POOL
from db.sealing import Keyring
from pipeline import runtime

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors leave as ``{"error": {code, message, details}}``; an unexpected one is logged, never echoed."""
    try:
        return await handler(request)
    except ApiError as exc:
        body = {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}
        return web.json_response(body, status=exc.status, headers=_kept_headers(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # 413 from client_max_size: the same code as the API's own size check.
        code = "too_large" if exc.status == 413 else exc.reason.lower().replace(" ", "_")
        body = {"error": {"code": code, "message": exc.text or exc.reason, "details": None}}
        return web.json_response(body, status=exc.status, headers=_kept_headers(exc))
    except Exception as exc:
        if isinstance(exc, ConnectionResetError) and (request.transport is None or request.transport.is_closing()):
            # The client went away mid-request: nothing is wrong here and there is no one to
            # answer (aiohttp drops the connection quietly).
            log.info("client went away during %s %s", request.method, request.path)
            raise
        log.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response({"error": {"code": "internal", "message": "internal error"}}, status=500)


def _kept_headers(exc: web.HTTPException) -> dict[str, str]:
    # The ones a client acts on: where to authenticate, when to come back, what is allowed.
    return {k: v for k, v in exc.headers.items() if k in ("WWW-Authenticate", "Retry-After", "Allow")}


async def index(request: web.Request) -> web.Response:
    return web.json_response(
        {"service": "carebeacon", "health": "/healthz", "ready": "/readyz", "api": "/v1/openapi.json", "docs": "/docs"}
    )


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 when Postgres and Redis both answer within two seconds, 503 naming what does not."""
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(request.app[POOL].fetchval("SELECT 1"), 2)
        checks["postgres"] = "ok"
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        checks["postgres"] = f"unreachable ({type(exc).__name__})"
    try:
        await asyncio.wait_for(asyncio.to_thread(request.app[BROKER].client.ping), 2)
        checks["redis"] = "ok"
    except Exception as exc:  # redis-py raises its own tree and OSError alike
        checks["redis"] = f"unreachable ({type(exc).__name__})"
    ready = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": checks}, status=200 if ready else 503
    )


def make_app(
    pool: asyncpg.Pool,
    broker: RedisBroker,
    *,
    settings: BotSettings | None = None,
    limits: ApiSettings | None = None,
    keyring: Keyring | None = None,
    slack: SlackSettings | None = None,
    discord: DiscordSettings | None = None,
) -> web.Application:
    """The app.  ``settings`` and ``limits`` default to their defaults (pass the ones read from
    the environment); ``keyring`` to the pipeline runtime's; ``slack`` and ``discord`` to SLACK_* and
    DISCORD_* read now."""
    limits = limits or ApiSettings()
    # client_max_size cuts off a body sent without Content-Length; json_errors renders it as a
    # JSON 413.  (A declared oversized body is refused earlier, by the API's body_size middleware.)
    app = web.Application(middlewares=[json_errors], client_max_size=limits.max_body_bytes)
    app[POOL] = pool
    app[BROKER] = broker
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    metrics_http.setup(app, runtime.current().metrics)
    api.setup(
        app,
        settings=settings or BotSettings(),
        limits=limits,
        keyring=keyring or runtime.current().keyring,
    )
    browser.setup(app)  # /connect/start, /oauth/{provider}/callback, /webhooks/providers/{provider}
    _mount_chat(app, settings or BotSettings(), keyring or runtime.current().keyring, slack, discord)
    admin.setup(app, settings or BotSettings(), keyring or runtime.current().keyring)  # /admin: the console
    return app


def _mount_chat(
    app: web.Application,
    settings: BotSettings,
    keyring: Keyring,
    slack: SlackSettings | None,
    discord: DiscordSettings | None = None,
) -> None:
    """/slack/* and /discord/* (when configured; each logs when off) and /chat/* (linking pages, charts)."""
    # Read at app build, which is boot: `carebeacon up` gets Slack without passing settings.
    slack = slack if slack is not None else SlackSettings.from_env(os.environ)
    slack_bot.setup(app, slack, keyring=keyring, public_url=settings.public_url)
    proofs: dict[str, chat_pages.IdentityProof] = {"slack": chat_pages.SlackOidc(slack)} if slack.oauth else {}
    discord = discord if discord is not None else DiscordSettings.from_env(os.environ)
    discord_bot.setup(app, discord, keyring=keyring, public_url=settings.public_url)
    if discord.oauth:
        proofs["discord"] = DiscordIdentify(discord, app[POOL])
    chat_pages.setup(app, public_url=settings.public_url, proofs=proofs)
