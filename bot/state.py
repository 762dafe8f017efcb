"""What the web app holds for its handlers: the database pool and the broker."""

from __future__ import annotations

import asyncpg
from aiohttp import web
from dramatiq.brokers.redis import RedisBroker

POOL: web.AppKey[asyncpg.Pool] = web.AppKey("pool", asyncpg.Pool)
BROKER: web.AppKey[RedisBroker] = web.AppKey("broker", RedisBroker)


def pool(request: web.Request) -> asyncpg.Pool:
    return request.app[POOL]
