"""The asyncpg pool: JSON codecs installed once per connection."""

from __future__ import annotations

import json

import asyncpg


async def _init(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(database_url: str, *, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=max_size, init=_init)
    assert pool is not None
    return pool


async def connect(database_url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(database_url)
    await _init(conn)
    return conn
