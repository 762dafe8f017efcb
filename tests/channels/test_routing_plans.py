"""Routing's batch statements keep to their own rows under plans made once per connection.

Routing's pool plans each statement once (db.pool, ``generic_plans``), so a plan made while the
delivery log was small is the plan for the life of the connection.  A fresh deployment, or the
fan-out bench, makes it exactly then: these tests freeze each plan on an empty log, fill the log
with 10,000 sends (and the cooldown's claims), and count the rows each statement then reads.  The cooldown's read, which
routing also runs per alert, is checked with statistics taken on the empty log, in both plan modes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from db import alerts, delivery_log, notification_channels, notification_rules, tenants
from db import pool as db_pool
from db import routing as db_routing
from db.migrate import migrate
from db.sealing import Keyring

SENDS = 10_000
SEVERITIES = "ARRAY['info', 'warning', 'critical']"


@dataclass
class Log:
    conn: asyncpg.Connection  # from routing's pool: its plan settings
    channel: int
    rule: int
    fresh: list[int]  # alerts with nothing logged yet


async def _clinic(conn: asyncpg.Connection, keyring: Keyring) -> tuple[int, int]:
    """1,000 patients × 10 alerts, one console channel and one rule for them, with statistics
    taken while the delivery log is empty: (channel, rule)."""
    await migrate(conn)
    tenant_id = await tenants.ensure_tenant(conn, "plans", "Plan clinic")
    channel = await notification_channels.create_channel(
        conn, keyring, tenant_id=tenant_id, kind="console", label="c", config={"stdout": False}
    )
    rule = await notification_rules.create_rule(conn, tenant_id=tenant_id, name="all", channel_id=channel)
    await conn.execute(
        "INSERT INTO users (tenant_id, external_id, display_name)"
        " SELECT $1, 'p' || g, 'Patient ' || g FROM generate_series(1, 1000) g",
        tenant_id,
    )
    await conn.execute(
        "INSERT INTO alerts (user_id, category, severity, metric, title, body, dedupe_key)"
        " SELECT u.id, 'vitals', 'warning', 'm' || g, 't', 'b', u.id || '-' || g"
        " FROM users u CROSS JOIN generate_series(1, 10) g WHERE u.tenant_id = $1",
        tenant_id,
    )
    await conn.execute("VACUUM ANALYZE")
    return channel, rule


@pytest.fixture
async def log(fresh_db: str, keyring: Keyring) -> AsyncIterator[Log]:
    """A clinic of 1,000 patients × 10 alerts, analysed while its delivery log was empty."""
    setup = await asyncpg.connect(fresh_db)
    channel, rule = await _clinic(setup, keyring)
    fresh = [r["id"] for r in await setup.fetch("SELECT id FROM alerts ORDER BY id DESC LIMIT 8")]
    pool = await db_pool.create_pool(fresh_db, max_size=1, generic_plans=True)
    try:
        async with pool.acquire() as conn:
            yield Log(conn, channel, rule, fresh)
    finally:
        await pool.close()
        await setup.close()


async def _fill(log: Log) -> None:
    """10,000 sends by the rule, all delivered, none of them to ``log.fresh``, and a claim of the
    rule's cooldown on every alert's patient and key, whose log id is the alert's id; no ANALYZE
    after."""
    await log.conn.execute(
        "INSERT INTO notification_logs (alert_id, channel_id, purpose, rule_id, attempt, status, finished_at)"
        " SELECT id, $1, 'notify', $2, 1, 'delivered', now() - interval '1 minute' FROM alerts"
        " WHERE NOT id = ANY($3::bigint[]) ORDER BY id LIMIT $4",
        log.channel,
        log.rule,
        log.fresh,
        SENDS,
    )
    await log.conn.execute(
        "INSERT INTO cooldown_claims (rule_id, user_id, key, alert_id, severity, log_id)"
        " SELECT $1, user_id, coalesce(metric, category), id, severity, id FROM alerts",
        log.rule,
    )


def _rows_read(plan: dict[str, Any], relation: str) -> int:
    """Rows a plan read from ``relation``: returned and filtered out, over every loop."""
    own = 0
    if plan.get("Relation Name") == relation:
        own = (plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0)) * plan["Actual Loops"]
    return own + sum(_rows_read(child, relation) for child in plan.get("Plans", ()))


async def _rolled_back(conn: asyncpg.Connection, sql: str) -> Any:
    """The first value ``sql`` returns, its writes undone."""
    tr = conn.transaction()
    await tr.start()
    try:
        return await conn.fetchval(sql)
    finally:
        await tr.rollback()


async def _read_after_fill(log: Log, name: str, sql: str, types: str, args: str) -> dict[str, int]:
    """Plan ``sql`` on the empty log (its first run fixes the plan), fill the log, then run that
    plan once more: rows it read per table.  Writes are rolled back."""
    conn = log.conn
    await conn.execute(f"PREPARE {name} ({types}) AS {sql}")
    await _rolled_back(conn, f"EXECUTE {name} ({args})")
    await _fill(log)
    found = await _rolled_back(conn, f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {name} ({args})")
    plan = found[0]["Plan"]  # the pool decodes json
    return {table: _rows_read(plan, table) for table in ("notification_logs", "alerts", "users", "cooldown_claims")}


@pytest.mark.parametrize("cooldowns", [False, True], ids=["without cooldowns", "claiming cooldowns"])
async def test_claiming_a_batch_reads_only_its_alerts_rows_in_the_log(log: Log, cooldowns: bool) -> None:
    ids = ",".join(map(str, log.fresh))
    n = len(log.fresh)
    rules = f"ARRAY[{','.join([str(log.rule)] * n)}]"
    args = f"ARRAY[{ids}], ARRAY[{','.join([str(log.channel)] * n)}], {rules}, 'notify', interval '2 minutes'"
    sql, types = delivery_log._START_EACH, "bigint[], bigint[], bigint[], text, interval"
    if cooldowns:
        # Planned while there was no claim, then run on the claims the fill made, which routing's
        # read would have seen: each alert takes its claim over.
        sql, types = delivery_log._START_CLAIMING, types + ", bigint[], bigint[], bigint[], text[]"
        args += f", ARRAY[{ids}], {rules}, ARRAY[{ids}], {SEVERITIES}"
    read = await _read_after_fill(log, "claim", sql, types, args)
    assert read["notification_logs"] <= 2 * n, read
    assert read["alerts"] <= 2 * n, read
    assert read["cooldown_claims"] <= n, read


async def test_logging_outcomes_reads_only_the_attempts_and_alerts_it_closes(log: Log) -> None:
    n = len(log.fresh)
    ids = ",".join(map(str, log.fresh))
    texts = ",".join(["'delivered'"] * n)
    nulls = ",".join(["NULL"] * n)
    args = (
        f"ARRAY[{ids}], ARRAY[{texts}], ARRAY[{nulls}]::text[], ARRAY[{nulls}]::text[], ARRAY[{nulls}]::int[],"
        f" ARRAY[{nulls}]::int[], ARRAY[{nulls}]::float8[], ARRAY[{ids}], ARRAY[{nulls}]::timestamptz[],"
        f" ARRAY[{nulls}]::timestamptz[]"
    )
    types = "bigint[], text[], text[], text[], int[], int[], float8[], bigint[], timestamptz[], timestamptz[]"
    read = await _read_after_fill(log, "finish", delivery_log._FINISH_EACH, types, args)
    assert read["notification_logs"] <= 2 * n, read
    assert read["alerts"] <= 2 * n, read


async def test_reading_a_batch_for_routing_reads_only_its_patients_rows(log: Log) -> None:
    args = f"ARRAY[{','.join(map(str, log.fresh))}], {SEVERITIES}, now(), interval '1 hour', interval '2 minutes'"
    read = await _read_after_fill(
        log, "load", db_routing._LOAD, "bigint[], text[], timestamptz, interval, interval", args
    )
    # Each alert, its patient's other alerts with its key (none here), its patient and its key's
    # claim: never every user, nor every claim.
    assert read["notification_logs"] <= 2 * len(log.fresh), read
    assert read["alerts"] <= 4 * len(log.fresh), read
    assert read["users"] <= 4 * len(log.fresh), read
    assert read["cooldown_claims"] <= len(log.fresh), read


async def test_the_cooldown_query_stays_on_the_patients_alerts_when_the_log_was_analysed_empty(
    fresh_db: str, keyring: Keyring
) -> None:
    # The bench's trap: statistics taken while the log was empty, then a rule with 10,000 sends.
    conn = await asyncpg.connect(fresh_db)
    try:
        channel, rule = await _clinic(conn, keyring)
        patient, lead = await conn.fetchrow("SELECT user_id, id FROM alerts WHERE metric = 'm1' ORDER BY id LIMIT 1")
        # Every other alert was delivered by the rule in the last minutes.
        await conn.execute(
            "INSERT INTO notification_logs (alert_id, channel_id, purpose, rule_id, attempt, status, finished_at)"
            " SELECT id, $1, 'notify', $2, 1, 'delivered', now() - interval '1 minute' FROM alerts WHERE user_id <> $3",
            channel,
            rule,
            patient,
        )
        alert = await alerts.get(conn, lead)
        assert alert is not None
        sql = delivery_log._LAST_SENT
        args = (rule, "now() - interval '1 hour'", lead, patient, "'m1'", "'vitals'", "'warning'",
                "ARRAY['info', 'warning', 'critical']")  # fmt: skip
        await conn.execute("PREPARE cooldown (bigint, timestamptz, bigint, bigint, text, text, text, text[]) AS " + sql)
        for mode in ("force_custom_plan", "force_generic_plan"):
            await conn.execute(f"SET plan_cache_mode = {mode}")
            found = await conn.fetchval(
                f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE cooldown ({', '.join(map(str, args))})"
            )
            plan = json.loads(found)[0]["Plan"]
            assert _rows_read(plan, "notification_logs") <= 10, (mode, found)
            assert _rows_read(plan, "alerts") <= 20, (mode, found)
        assert await delivery_log.last_sent(conn, rule, alert, datetime.now(UTC) - timedelta(hours=1)) is None

        # A send for the same patient and metric is still found.
        other = await conn.fetchval(
            "INSERT INTO alerts (user_id, category, severity, metric, title, body, dedupe_key)"
            " VALUES ($1, 'vitals', 'critical', 'm1', 't', 'b', 'again') RETURNING id",
            patient,
        )
        await conn.execute(
            "INSERT INTO notification_logs (alert_id, channel_id, purpose, rule_id, attempt, status, finished_at)"
            " VALUES ($1, $2, 'notify', $3, 1, 'delivered', now())",
            other,
            channel,
            rule,
        )
        sent = await delivery_log.last_sent(conn, rule, alert, datetime.now(UTC) - timedelta(hours=1))
        assert sent is not None and sent.alert_id == other
    finally:
        await conn.close()
