"""Pushed readings: each user's 'ingest' connection, and the tenants' inbound signing secrets."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from db import events
from db.sealing import Keyring

PROVIDER = "ingest"
TABLE, SECRET = "ingest_secrets", "secret_sealed"
# Not 'active': the sync sweeps pull only active connections, and there is nothing to pull.
STATUS, STATUS_REASON = "inactive", "push only: readings arrive through POST /v1/ingest"


async def connection_of(conn: asyncpg.Connection, tenant_id: int, user_id: int) -> int | None:
    """The ingest connection of the tenant's user ``user_id``, created on first use; None when
    the tenant has no such user.  One statement: the ownership check is the insert's source."""
    found: int | None = await conn.fetchval(
        "INSERT INTO connections (user_id, provider, status, status_reason)"
        " SELECT id, $3, $4, $5 FROM users WHERE id = $1 AND tenant_id = $2"
        " ON CONFLICT (user_id, provider) DO UPDATE SET updated_at = now() RETURNING id",
        user_id,
        tenant_id,
        PROVIDER,
        STATUS,
        STATUS_REASON,
    )
    return found


@dataclass(frozen=True, slots=True)
class IngestSecret:
    id: int
    name: str
    created_at: datetime
    revoked_at: datetime | None


async def create_secret(conn: asyncpg.Connection, keyring: Keyring, tenant_id: int, name: str) -> tuple[int, str]:
    """A new ``whsec_`` secret for the tenant, sealed to its row; returns its id and the secret."""
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    async with conn.transaction():
        secret_id: int = await conn.fetchval(
            "INSERT INTO ingest_secrets (tenant_id, name, secret_sealed) VALUES ($1, $2, '') RETURNING id",
            tenant_id,
            name,
        )
        sealed = keyring.seal(secret.encode(), table=TABLE, column=SECRET, row_id=secret_id)
        await conn.execute("UPDATE ingest_secrets SET secret_sealed = $2 WHERE id = $1", secret_id, sealed)
    return secret_id, secret


async def list_secrets(conn: asyncpg.Connection, tenant_id: int) -> list[IngestSecret]:
    rows = await conn.fetch(
        "SELECT id, name, created_at, revoked_at FROM ingest_secrets WHERE tenant_id = $1 ORDER BY id", tenant_id
    )
    return [IngestSecret(**dict(r)) for r in rows]


async def revoke_secret(conn: asyncpg.Connection, tenant_id: int, secret_id: int) -> bool:
    status: str = await conn.execute(
        "UPDATE ingest_secrets SET revoked_at = now() WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL",
        secret_id,
        tenant_id,
    )
    return status.endswith(" 1")


async def live_secrets(conn: asyncpg.Connection, keyring: Keyring, tenant_slug: str) -> tuple[int, list[str]] | None:
    """The tenant's id and its unrevoked secrets, unsealed; None for an unknown tenant."""
    tenant_id = await conn.fetchval("SELECT id FROM tenants WHERE slug = $1", tenant_slug)
    if tenant_id is None:
        return None
    rows = await conn.fetch(
        "SELECT id, secret_sealed FROM ingest_secrets WHERE tenant_id = $1 AND revoked_at IS NULL", tenant_id
    )
    opened = [keyring.open(r["secret_sealed"], table=TABLE, column=SECRET, row_id=r["id"]).decode() for r in rows]
    return int(tenant_id), opened


@dataclass(frozen=True, slots=True)
class Batch:
    """A stored batch, as its run and its event report it."""

    tenant_id: int
    user_id: int
    connection_id: int
    window: tuple[datetime, datetime]
    received: int
    written: int
    unchanged: int
    invalid: int
    started: datetime


async def record_run(conn: asyncpg.Connection, batch: Batch) -> int:
    """A completed 'ingest' run for one stored batch, so analytics (and the reconciler, if its
    message is lost) handle the batch like a sync, and its ``sync.completed`` event, in one
    statement (the event names the run's id, filled in by the database)."""
    data = {
        "sync_run_id": None,
        "connection_id": batch.connection_id,
        "user_id": batch.user_id,
        "provider": PROVIDER,
        "rows_received": batch.received,
        "rows_written": batch.written,
        "rows_unchanged": batch.unchanged,
        "rows_invalid": batch.invalid,
    }
    run_id: int = await conn.fetchval(
        "WITH run AS (INSERT INTO sync_runs (connection_id, trigger, status, window_start, window_end,"
        " rows_received, rows_written, rows_unchanged, rows_invalid, attempts, started_at, finished_at, duration_ms)"
        " VALUES ($1, 'ingest', 'completed', $2, $3, $4, $5, $6, $7, 1, $8, now(),"
        " (extract(epoch FROM clock_timestamp() - $8) * 1000)::integer) RETURNING id),"
        " event AS (INSERT INTO events (tenant_id, type, payload)"
        " SELECT $9, $10, jsonb_set($11::jsonb, '{data,sync_run_id}', to_jsonb(run.id)) FROM run)"
        " SELECT id FROM run",
        batch.connection_id,
        batch.window[0],
        batch.window[1],
        batch.received,
        batch.written,
        batch.unchanged,
        batch.invalid,
        batch.started,
        batch.tenant_id,
        events.SYNC_COMPLETED,
        events.envelope(events.SYNC_COMPLETED, data),
    )
    return run_id
