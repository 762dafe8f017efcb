"""The API's limits, as middleware: body size (413), per-key rate (429), time per request (503).

The rate limit is a fixed one-minute window per API key (or per tenant, for signed ingest)
counted in Redis with INCR, so every web process shares one count.  When Redis does not
answer the request goes through: the limit protects Postgres from a runaway client, and an
outage of the broker should not also take the API down.

The count goes through an asyncio Redis client of the app's own, on the broker's server: the
broker's client blocks, and a thread per request costs more than the count itself.  A
request is one INCR; the window's first also sets the counter's expiry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import redis
import redis.asyncio as aioredis
from aiohttp import web

from bot.api.auth import API_KEY
from bot.api.context import limits
from bot.api.errors import ApiError
from bot.state import BROKER

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
WINDOW = 60
COUNTER: web.AppKey[aioredis.Redis] = web.AppKey("rate_counter", aioredis.Redis)
# The broker's connection settings an asyncio connection takes too (the rest are redis-py's
# own bookkeeping); ssl_* ones are added as they are.
_SETTINGS = ("host", "port", "db", "username", "password", "path", "socket_timeout", "socket_connect_timeout")
_CLASSES: dict[
    type[redis.Connection | redis.UnixDomainSocketConnection],
    type[aioredis.Connection | aioredis.UnixDomainSocketConnection],
] = {
    redis.Connection: aioredis.Connection,
    redis.SSLConnection: aioredis.SSLConnection,
    redis.UnixDomainSocketConnection: aioredis.UnixDomainSocketConnection,
}


def setup_counter(app: web.Application) -> None:
    """The counter's client, opened with the app and closed with it."""

    async def counter(app: web.Application) -> AsyncIterator[None]:
        sync_pool = app[BROKER].client.connection_pool
        kwargs = {k: v for k, v in sync_pool.connection_kwargs.items() if k in _SETTINGS or k.startswith("ssl_")}
        connection_class = _CLASSES.get(sync_pool.connection_class, aioredis.Connection)
        app[COUNTER] = aioredis.Redis(
            connection_pool=aioredis.ConnectionPool(connection_class=connection_class, **kwargs)
        )
        yield
        await app[COUNTER].aclose()

    app.cleanup_ctx.append(counter)


@web.middleware
async def body_size(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a declared oversized body before authenticating or reading it.  A body sent
    without Content-Length is cut off by the app's client_max_size, also as a JSON 413."""
    if request.path.startswith("/v1/") and (request.content_length or 0) > limits(request).max_body_bytes:
        raise too_large(limits(request).max_body_bytes)
    return await handler(request)


def too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "too_large", f"the body is larger than {max_bytes} bytes", {"max_bytes": max_bytes})


@web.middleware
async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counts requests that carry a key; a signed ingest request is counted by its handler,
    once the signature has proved which tenant sent it."""
    key = request.get(API_KEY)
    if key is not None:
        await enforce(request, f"key:{key.prefix}")
    return await handler(request)


async def enforce(request: web.Request, who: str) -> None:
    """Count one request for ``who``; 429 with Retry-After past the limit."""
    per_minute = limits(request).rate_limit_per_minute
    if per_minute:
        window = int(time.time()) // WINDOW
        count = await _count(request, f"carebeacon:ratelimit:{who}:{window}")
        if count is not None and count > per_minute:
            retry_after = WINDOW - int(time.time()) % WINDOW
            raise ApiError(
                429,
                "rate_limited",
                f"more than {per_minute} requests a minute; retry in {retry_after} s",
                {"limit_per_minute": per_minute},
                headers={"Retry-After": str(retry_after)},
            )


async def _count(request: web.Request, counter: str) -> int | None:
    try:
        client = request.app[COUNTER]
        count = int(await client.incr(counter))
        if count == 1:  # the window's first request sets when its count goes: one round trip after
            await client.expire(counter, 2 * WINDOW)
        return count
    except Exception as exc:  # redis-py raises its own tree and OSError alike
        log.warning("rate limit not applied: redis did not answer (%s)", type(exc).__name__)
        return None


@web.middleware
async def time_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/v1/"):
        return await handler(request)
    seconds = limits(request).request_timeout_seconds
    try:
        async with asyncio.timeout(seconds):
            return await handler(request)
    except TimeoutError:
        log.warning("%s %s took over %s s; answered 503", request.method, request.path, seconds)
        raise ApiError(503, "timeout", f"the request took longer than {seconds} s; try again") from None
