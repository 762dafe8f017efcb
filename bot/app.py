"""The aiohttp web application: health and readiness now; chat, webhooks and the API mount here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web
from dramatiq.brokers.redis import RedisBroker

from bot import api
from bot.api.errors import ApiError
from bot.state import BROKER, POOL

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
        code = exc.reason.lower().replace(" ", "_")
        body = {"error": {"code": code, "message": exc.text or exc.reason, "details": None}}
        return web.json_response(body, status=exc.status, headers=_kept_headers(exc))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response({"error": {"code": "internal", "message": "internal error"}}, status=500)


def _kept_headers(exc: web.HTTPException) -> dict[str, str]:
    # The ones a client acts on: where to authenticate, when to come back, what is allowed.
    return {k: v for k, v in exc.headers.items() if k in ("WWW-Authenticate", "Retry-After", "Allow")}


async def index(request: web.Request) -> web.Response:
    return web.json_response({"service": "carebeacon", "health": "/healthz", "ready": "/readyz"})


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


def make_app(pool: asyncpg.Pool, broker: RedisBroker) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=1024**2)
    app[POOL] = pool
    app[BROKER] = broker
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    api.setup(app)
    return app
