"""A sync run's claim reads its connection, and its completion writes all that goes with it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from db import connections, events, sync_runs, tenants, webhooks
from db.metrics import UpsertCounts
from db.sealing import Keyring
from db.sync_runs import Scope

STALE = timedelta(minutes=10)
SYNCED = datetime(2026, 11, 22, 8, tzinfo=UTC)


async def _connection(conn: asyncpg.Connection, keyring: Keyring) -> tuple[int, int]:
    """(tenant id, connection id) of a patient last synced at ``SYNCED``."""
    tenant_id = await tenants.ensure_tenant(conn, "clinic", "Clinic")
    user_id = await tenants.ensure_user(conn, tenant_id, "p1", "Pat One")
    connection_id = await connections.upsert(
        conn, keyring, user_id=user_id, provider="simulator", tokens={"access_token": "a"}, settings={"seed": "p1"}
    )
    await conn.execute("UPDATE connections SET last_synced_at = $2 WHERE id = $1", connection_id, SYNCED)
    return tenant_id, connection_id


async def test_a_claim_returns_the_run_with_its_connection_and_only_its_claimant_takes_it_back(
    conn: asyncpg.Connection, keyring: Keyring
) -> None:
    _, connection_id = await _connection(conn, keyring)
    run_id = await sync_runs.create(conn, connection_id, "manual", Scope(only=frozenset({"sleep"})))

    claimed = await sync_runs.claim(conn, run_id, STALE, "message-1")

    assert claimed is not None
    assert (claimed.run.id, claimed.run.status, claimed.run.attempts) == (run_id, "running", 1)
    assert claimed.run.scope == Scope(only=frozenset({"sleep"}))
    assert claimed.connection == await connections.load(conn, connection_id)
    assert claimed.connection is not None and claimed.connection.tokens(keyring) == {"access_token": "a"}
    # Held: another message finds it taken; the message that left it running takes it back.
    assert await sync_runs.claim(conn, run_id, STALE, "message-2") is None
    again = await sync_runs.claim(conn, run_id, STALE, "message-1")
    assert again is not None and again.run.attempts == 2


async def test_a_completion_writes_counts_last_sync_audit_and_event_and_a_scoped_one_leaves_the_last_sync(
    conn: asyncpg.Connection, keyring: Keyring
) -> None:
    tenant_id, connection_id = await _connection(conn, keyring)
    await webhooks.create(conn, keyring, tenant_id=tenant_id, url="https://clinic.example/hook",
                          events=[events.SYNC_COMPLETED], description="live")  # fmt: skip
    full, narrow = [await sync_runs.create(conn, connection_id, "manual") for _ in range(2)]
    for run_id, synced_at in ((full, SYNCED + timedelta(hours=2)), (narrow, None)):
        claimed = await sync_runs.claim(conn, run_id, STALE)
        assert claimed is not None and claimed.connection is not None
        summary = {"sync_run_id": run_id, "rows_written": 3}
        await sync_runs.complete(conn, run_id, claimed.connection, synced_at, UpsertCounts(2, 1, 4), 8, 1, summary)

    runs = await conn.fetch(
        "SELECT status, rows_received, rows_written, rows_unchanged, rows_invalid, duration_ms IS NOT NULL AS timed"
        " FROM sync_runs ORDER BY id"
    )
    assert [tuple(r) for r in runs] == [("completed", 8, 3, 4, 1, True)] * 2
    # The narrow run, completed second, left the full run's last sync where it was.
    synced = await conn.fetchval("SELECT last_synced_at FROM connections WHERE id = $1", connection_id)
    assert synced == SYNCED + timedelta(hours=2)
    audited = await conn.fetch(
        "SELECT tenant_id, actor, action, subject_type, subject_id, details FROM audit_events ORDER BY id"
    )
    assert [tuple(r) for r in audited] == [
        (tenant_id, "pipeline", "wearable_sync", "sync_run", run_id, {"sync_run_id": run_id, "rows_written": 3})
        for run_id in (full, narrow)
    ]
    published = await conn.fetch("SELECT tenant_id, type, payload, dispatched_at FROM events ORDER BY id")
    assert [(e["tenant_id"], e["type"], e["payload"]["type"], e["payload"]["data"]) for e in published] == [
        (tenant_id, events.SYNC_COMPLETED, events.SYNC_COMPLETED, {"sync_run_id": run_id, "rows_written": 3})
        for run_id in (full, narrow)
    ]
    # An enabled endpoint subscribes: the events wait for the dispatcher.
    assert [e["dispatched_at"] for e in published] == [None, None]
