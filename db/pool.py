"""The asyncpg pool: JSON codecs installed once per connection, and no reset statement.

``generic_plans``: the server plans each prepared statement once per connection and reuses the
plan (``plan_cache_mode = force_generic_plan``).  Left to choose, PostgreSQL re-plans a statement
for every call whenever the values make that plan look cheaper, and for routing's one-statement
read of an alert, its rules and its cooldown evidence, planning cost three times the execution
(0.9 ms against 0.3 ms).  Only for code whose statements look rows up by key, where a plan made
without the values is as good; routing's cooldown plan is tested in both modes.

Such a pool also plans with ``enable_seqscan = off``.  A plan kept for the connection's life is
made with the table sizes of its first call: on a fresh deployment, or in the fan-out bench, the
delivery log is empty then, a scan of all of it looks cheapest, and it stays the plan while the
log grows to thousands of rows (with 10,000 sends logged, routing's claim of 8 alerts read 90,000
log rows, and its read of a batch scanned every user twice).  Key lookups need no scan of a whole
table; a statement with no index to use still gets its scan.
"""

from __future__ import annotations

import json

import asyncpg


async def init_connection(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to undo on release.  asyncpg's default reset sends ``pg_advisory_unlock_all();
    CLOSE ALL; UNLISTEN *; RESET ALL`` on every release, a round trip per acquire, for session
    state this code never leaves: no SET, LISTEN, cursor WITH HOLD or session advisory lock (only
    transaction-scoped ones).  asyncpg still rolls back a transaction left open, and drops any
    listeners, before it calls this."""


async def create_pool(database_url: str, *, max_size: int = 10, generic_plans: bool = False) -> asyncpg.Pool:
    settings = {"plan_cache_mode": "force_generic_plan", "enable_seqscan": "off"} if generic_plans else {}
    pool = await asyncpg.create_pool(
        database_url, min_size=1, max_size=max_size, init=init_connection, reset=keep_session,
        server_settings=settings,
    )  # fmt: skip
    assert pool is not None
    return pool


async def connect(database_url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(database_url)
    await init_connection(conn)
    return conn
