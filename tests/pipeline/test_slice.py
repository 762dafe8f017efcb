"""The first vertical slice, end to end on real Postgres, real Redis and a real Dramatiq worker:
trigger → sync → upsert → analytics → alert → console delivery with a log row."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import dramatiq

from pipeline import runtime
from pipeline.reconciler import reconcile
from pipeline.triggers import request_sync
from tests.helpers import eventually, make_patient

TACHYCARDIA = [{"metric": "resting_heart_rate", "value": 118, "days_ago": 0}]


async def _finished(pool: asyncpg.Pool, run_id: int) -> asyncpg.Record:
    async def check() -> asyncpg.Record | None:
        return await pool.fetchrow(
            "SELECT * FROM sync_runs WHERE id = $1 AND status NOT IN ('pending', 'running') AND"
            " (status <> 'completed' OR analysed_at IS NOT NULL)",
            run_id,
        )

    return await eventually(check, what=f"sync run {run_id}")


async def _routed(pool: asyncpg.Pool, user_id: int) -> None:
    async def check() -> bool:
        return bool(
            await pool.fetchval("SELECT bool_and(routed_at IS NOT NULL) FROM alerts WHERE user_id = $1", user_id)
        )

    await eventually(check, what="alerts routed")


async def test_anomaly_is_synced_scored_alerted_and_delivered_once(
    pool: asyncpg.Pool, worker: dramatiq.Worker, alert_file: Path
) -> None:
    keyring = runtime.current().keyring
    _, user_id, connection_id, channel_id = await make_patient(
        pool, keyring, tenant="slice", alert_file=alert_file, anomalies=TACHYCARDIA
    )

    run = await _finished(pool, await request_sync(pool, connection_id, "manual"))
    await _routed(pool, user_id)

    assert run["status"] == "completed"
    # 8 daily metrics on each of 30 days, plus a night each morning and a workout every other day.
    served = 30 * 8 + 30 + 15
    assert run["rows_received"] == served and run["rows_written"] == served and run["rows_invalid"] == 0
    assert await pool.fetchval("SELECT count(*) FROM metrics WHERE user_id = $1", user_id) == 240
    score = await pool.fetchrow("SELECT * FROM health_scores WHERE user_id = $1 AND domain = 'cardio'", user_id)
    assert score["score"] == 0  # 118 bpm: 100·clip01((100 − 118)/40) = 0
    alert = await pool.fetchrow("SELECT * FROM alerts WHERE user_id = $1", user_id)
    assert (alert["severity"], alert["metric"], alert["observed_value"]) == (
        "warning",
        "resting_heart_rate",
        118,
    )
    logs = await pool.fetch("SELECT * FROM notification_logs WHERE alert_id = $1", alert["id"])
    assert [(r["channel_id"], r["attempt"], r["status"]) for r in logs] == [(channel_id, 1, "delivered")]
    delivered = [json.loads(line) for line in alert_file.read_text().splitlines()]
    assert [d["alert_id"] for d in delivered] == [alert["id"]]
    audit = await pool.fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'wearable_sync' AND subject_id = $1", run["id"]
    )
    assert audit == 1


async def test_syncing_again_adds_no_rows_alerts_or_deliveries(
    pool: asyncpg.Pool, worker: dramatiq.Worker, alert_file: Path
) -> None:
    keyring = runtime.current().keyring
    _, user_id, connection_id, _ = await make_patient(
        pool, keyring, tenant="again", alert_file=alert_file, anomalies=TACHYCARDIA
    )
    await _finished(pool, await request_sync(pool, connection_id, "manual"))
    await _routed(pool, user_id)
    before = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM metrics WHERE user_id = $1) AS metrics,"
        " (SELECT count(*) FROM alerts WHERE user_id = $1) AS alerts,"
        " (SELECT count(*) FROM notification_logs l JOIN alerts a ON a.id = l.alert_id WHERE a.user_id = $1) AS logs",
        user_id,
    )

    # The daily job re-reads a week: every reading is a repeat.
    second = await _finished(pool, await request_sync(pool, connection_id, "daily"))
    await _routed(pool, user_id)

    after = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM metrics WHERE user_id = $1) AS metrics,"
        " (SELECT count(*) FROM alerts WHERE user_id = $1) AS alerts,"
        " (SELECT count(*) FROM notification_logs l JOIN alerts a ON a.id = l.alert_id WHERE a.user_id = $1) AS logs",
        user_id,
    )
    assert dict(after) == dict(before) == {"metrics": 240, "alerts": 1, "logs": 1}
    assert second["rows_received"] >= 7 * 8
    assert len(alert_file.read_text().splitlines()) == 1


async def test_a_run_whose_message_was_lost_is_finished_by_the_reconciler(
    pool: asyncpg.Pool, worker: dramatiq.Worker, alert_file: Path
) -> None:
    rt = runtime.current()
    _, user_id, connection_id, _ = await make_patient(
        pool, rt.keyring, tenant="lost", alert_file=alert_file, anomalies=TACHYCARDIA
    )
    # The row exists but no message was ever sent: as if Redis was flushed after the trigger.
    run_id = await pool.fetchval(
        "INSERT INTO sync_runs (connection_id, trigger, created_at) VALUES ($1, 'manual', now() - interval '1 hour')"
        " RETURNING id",
        connection_id,
    )
    found = await reconcile(pool, rt.settings)
    assert found.syncs >= 1

    assert (await _finished(pool, run_id))["status"] == "completed"
    await _routed(pool, user_id)
    assert await pool.fetchval("SELECT count(*) FROM alerts WHERE user_id = $1", user_id) == 1


async def test_a_rule_above_the_alert_severity_sends_nothing(
    pool: asyncpg.Pool, worker: dramatiq.Worker, alert_file: Path
) -> None:
    keyring = runtime.current().keyring
    _, user_id, connection_id, _ = await make_patient(
        pool, keyring, tenant="quiet", alert_file=alert_file, anomalies=TACHYCARDIA, min_severity="critical"
    )
    await _finished(pool, await request_sync(pool, connection_id, "manual"))
    await _routed(pool, user_id)

    assert await pool.fetchval("SELECT count(*) FROM alerts WHERE user_id = $1", user_id) == 1
    logs = await pool.fetchval(
        "SELECT count(*) FROM notification_logs l JOIN alerts a ON a.id = l.alert_id WHERE a.user_id = $1",
        user_id,
    )
    assert logs == 0
    assert not alert_file.exists()


async def test_an_inactive_connection_is_skipped_with_its_reason(
    pool: asyncpg.Pool, worker: dramatiq.Worker, alert_file: Path
) -> None:
    keyring = runtime.current().keyring
    _, user_id, connection_id, _ = await make_patient(pool, keyring, tenant="revoked", alert_file=alert_file)
    await pool.execute("UPDATE connections SET status = 'revoked' WHERE id = $1", connection_id)

    run = await _finished(pool, await request_sync(pool, connection_id, "manual"))

    assert (run["status"], run["error"]) == ("skipped", "connection is revoked")
    assert await pool.fetchval("SELECT count(*) FROM metrics WHERE user_id = $1", user_id) == 0


async def test_a_channel_whose_secret_will_not_open_fails_permanently_and_is_logged_once(
    pool: asyncpg.Pool, worker: dramatiq.Worker, alert_file: Path
) -> None:
    keyring = runtime.current().keyring
    _, user_id, connection_id, channel_id = await make_patient(
        pool, keyring, tenant="moved", alert_file=alert_file, anomalies=TACHYCARDIA
    )
    # A sealed config copied in from another row: bound to that row, so it must not open here.
    foreign = keyring.seal_json({}, table="notification_channels", column="config_sealed", row_id=channel_id + 1000)
    await pool.execute("UPDATE notification_channels SET config_sealed = $2 WHERE id = $1", channel_id, foreign)

    await _finished(pool, await request_sync(pool, connection_id, "manual"))
    await _routed(pool, user_id)

    logs = await pool.fetch(
        "SELECT l.status, l.detail FROM notification_logs l JOIN alerts a ON a.id = l.alert_id WHERE a.user_id = $1",
        user_id,
    )
    assert [r["status"] for r in logs] == ["failed"]
    assert logs[0]["detail"].endswith("failed to open: tampered, or sealed for another row")
    assert not alert_file.exists()
