"""Migrations on real, fresh databases: applied once, serialised, checked, and all-or-nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from db import tenants
from db.migrate import Migration, MigrationError, available, migrate, pending
from db.pool import connect
from db.reseal import SEALED_COLUMNS

TABLES = {
    "tenants",
    "users",
    "connections",
    "metrics",
    "sync_runs",
    "events",
    "api_keys",
    "scheduler_slots",
    "reports",
    "sessions",
    "health_scores",
    "daily_stats",
    "correlations",
    "cgm_summaries",
    "alerts",
    "notification_channels",
    "notification_rules",
    "notification_logs",
    "notification_rule_channels",
    "cooldown_claims",
    "care_teams",
    "care_team_members",
    "care_team_patients",
    "silences",
    "audit_events",
    "deployment_keys",
    "webhook_endpoints",
    "webhook_deliveries",
    "webhook_attempts",
    "oauth_states",
    "ingest_secrets",
    "connect_links",
    "chat_workspaces",
    "chat_identities",
    "chat_link_tokens",
    "chat_enrolment_codes",
    "chat_link_flows",
    "slack_installations",
    "slack_oauth_states",
    "chat_followups",
    "chat_charts",
    "admin_sessions",
    "schema_migrations",
}


@pytest.fixture
async def conn(fresh_db: str) -> AsyncIterator[asyncpg.Connection]:
    found = await connect(fresh_db)
    yield found
    await found.close()


async def _tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
    )
    return {r["table_name"] for r in rows}


async def _recorded(conn: asyncpg.Connection) -> list[str]:
    if not await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
        return []
    return [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")]


async def test_migrating_an_empty_database_applies_the_initial_migration_and_creates_every_table(
    conn: asyncpg.Connection,
) -> None:
    applied = await migrate(conn)

    assert applied == [m.version for m in available()] and applied[:2] == ["0001_initial", "0002_analytics"]
    assert await _tables(conn) == TABLES
    checksum = await conn.fetchval("SELECT checksum FROM schema_migrations WHERE version = '0001_initial'")
    assert checksum == available()[0].checksum


async def test_a_second_migrate_applies_nothing(conn: asyncpg.Connection) -> None:
    await migrate(conn)

    assert await migrate(conn) == []
    assert await _recorded(conn) == [m.version for m in available()]


async def test_pending_lists_the_unapplied_versions_before_and_nothing_after(
    conn: asyncpg.Connection,
) -> None:
    before = await pending(conn)
    await migrate(conn)

    assert before == [m.version for m in available()] and "0001_initial" in before
    assert await pending(conn) == []


async def test_two_connections_migrating_at_once_both_succeed_and_only_one_applies(fresh_db: str) -> None:
    first, second = await connect(fresh_db), await connect(fresh_db)
    try:
        results = await asyncio.gather(migrate(first), migrate(second))
        recorded = await first.fetch("SELECT version, count(*) AS n FROM schema_migrations GROUP BY version")
    finally:
        await first.close()
        await second.close()

    versions = [m.version for m in available()]
    assert sorted(results) == [[], versions]
    assert sorted((r["version"], r["n"]) for r in recorded) == [(v, 1) for v in versions]


async def test_a_migration_edited_after_it_was_applied_stops_the_run(conn: asyncpg.Connection) -> None:
    await migrate(conn)
    initial = available()[0]
    edited = [Migration(initial.version, initial.sql + "\n-- a late edit\n")]

    with pytest.raises(MigrationError, match="0001_initial was edited"):
        await migrate(conn, edited)


async def test_a_failing_migration_rolls_back_the_whole_batch_on_an_empty_database(
    conn: asyncpg.Connection,
) -> None:
    broken = [*available(), Migration("9002_broken", "SELECT * FROM nope")]

    with pytest.raises(MigrationError, match="9002_broken failed") as caught:
        await migrate(conn, broken)

    assert isinstance(caught.value.__cause__, asyncpg.UndefinedTableError)
    assert "9002_broken" not in await _recorded(conn)
    assert await _tables(conn) == set()
    assert await pending(conn) == [m.version for m in available()]


async def test_a_failing_migration_undoes_the_earlier_migrations_of_its_batch(
    conn: asyncpg.Connection,
) -> None:
    await migrate(conn)
    batch = [
        *available(),
        Migration("9002_good", "CREATE TABLE good (id int)"),
        Migration("9003_broken", "SELECT * FROM nope"),
    ]

    with pytest.raises(MigrationError, match="9003_broken"):
        await migrate(conn, batch)

    assert await _recorded(conn) == [m.version for m in available()]
    assert "good" not in await _tables(conn)
    # The connection is usable again and the batch goes through once it is fixed.
    assert await migrate(conn, batch[:-1]) == ["9002_good"]


async def test_the_metrics_primary_key_is_user_provider_metric_and_time(conn: asyncpg.Connection) -> None:
    await migrate(conn)

    columns = await conn.fetch(
        "SELECT a.attname FROM pg_index i"
        " CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position)"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
        " WHERE i.indrelid = 'metrics'::regclass AND i.indisprimary ORDER BY k.position"
    )

    # The seed's identity of a reading; in this order so one user's readings by time are one range.
    assert [r["attname"] for r in columns] == ["user_id", "recorded_at", "metric", "provider"]


async def test_two_alerts_with_the_same_dedupe_key_are_refused(conn: asyncpg.Connection) -> None:
    await migrate(conn)
    tenant_id = await tenants.ensure_tenant(conn, "clinic", "Clinic")
    user_id = await tenants.ensure_user(conn, tenant_id, "p1", "Pat One")
    insert = (
        "INSERT INTO alerts (user_id, category, severity, title, body, dedupe_key)"
        " VALUES ($1, 'vitals', 'warning', 'High resting heart rate', 'body', $2)"
    )
    await conn.execute(insert, user_id, "rhr:p1:2025-06-01")

    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(insert, user_id, "rhr:p1:2025-06-01")
    await conn.execute(insert, user_id, "rhr:p1:2025-06-02")
    assert await conn.fetchval("SELECT count(*) FROM alerts") == 2


async def test_every_sealed_column_is_resealed_by_carebeacon_reseal(conn: asyncpg.Connection) -> None:
    # A sealed column missing from SEALED_COLUMNS would keep its old key forever, and retiring
    # that key would make its values unreadable.
    await migrate(conn)
    columns = await conn.fetch(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = 'public' AND column_name LIKE '%\\_sealed'"
    )
    assert {(c["table_name"], c["column_name"]) for c in columns} == set(SEALED_COLUMNS)
