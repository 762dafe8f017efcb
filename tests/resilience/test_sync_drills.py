"""Crash drills for the sync pipeline: real Postgres, real Redis, real `dramatiq pipeline.worker` processes.

Postgres rows are the truth and Redis only transport, so whatever kills a worker or empties
Redis, the reconciler must bring every run to completed, every reading stored exactly once,
and every alert delivered once per channel.  The drills run one at a time; each starts its
processes on a fresh database and its own, flushed, Redis database (see conftest.py).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta

import asyncpg
import pytest

from pipeline.providers.simulator import READING_TIME, latest_summary
from tests.helpers import eventually
from tests.resilience.checks import assert_delivered_once_each, compare_stored, counted, settled
from tests.resilience.conftest import TACHYCARDIA, Drill, ReadingKey, reconciled, served


@pytest.mark.timeout(120)
async def test_a_worker_killed_mid_sync_leaves_every_reading_stored_exactly_once(drill: Drill) -> None:
    # 5-minute glucose fills the 1000-reading upsert batches several times a sync, and the pace
    # (0.25 s a simulated day, ~8 s a sync) leaves time to kill the worker between two batches.
    users = await drill.patients(3, {"cgm": True, "pace_ms": 250, "anomalies": TACHYCARDIA})
    first = drill.start_worker("worker-1", threads=2)
    run_ids = await drill.request_syncs([p.connection_id for p in users])

    async def two_runs_part_written() -> list[asyncpg.Record]:
        rows = await drill.pool.fetch(
            "SELECT r.id, r.connection_id, r.window_start,"
            " (SELECT count(*) FROM metrics m WHERE m.connection_id = r.connection_id) AS stored"
            " FROM sync_runs r WHERE r.status = 'running' AND r.window_start IS NOT NULL"
        )
        part_written = [r for r in rows if r["stored"] > 0]
        return part_written if len(part_written) == 2 else []

    interrupted = await eventually(two_runs_part_written, timeout=30, what="two syncs part-way through")
    first.kill()

    at_kill = await drill.pool.fetch("SELECT id, status FROM sync_runs ORDER BY id")
    assert [r["status"] for r in at_kill].count("completed") == 0, "a sync finished before the kill: nothing was cut"
    first_windows = {r["id"]: r["window_start"] for r in interrupted}
    stored_at_kill = {r["id"]: r["stored"] for r in interrupted}
    # The pace only made the first attempt slow enough to interrupt; recovery need not wait for it.
    await drill.pool.execute("UPDATE connections SET settings = settings - 'pace_ms'")

    drill.start_worker("worker-2", threads=2)
    reconciler = drill.start_reconciler()
    # The dead runs stay "running" until they are stale (30 s after their start): only then may
    # the reconciler re-enqueue them and a worker claim them again.
    await settled(drill, runs=len(users), min_alerts=len(users), timeout=90)

    runs = {r["id"]: r for r in await drill.pool.fetch("SELECT * FROM sync_runs")}
    assert sorted(runs) == sorted(run_ids)
    assert {run_id: runs[run_id]["attempts"] for run_id in run_ids} == {
        run_id: 2 if run_id in first_windows else 1 for run_id in run_ids
    }
    assert reconciled(reconciler)["syncs"] >= len(first_windows)
    expected = stored_total = 0
    for patient in users:
        [run] = [r for r in runs.values() if r["connection_id"] == patient.connection_id]
        final = await served(patient.settings, run["window_start"], run["window_end"])
        # The killed attempt's first batches are stored too, and they reach back to its own,
        # earlier, window start: the expected readings span both attempts' windows.
        spanning = await served(patient.settings, first_windows.get(run["id"], run["window_start"]), run["window_end"])
        stored = await drill.stored(patient.user_id)
        assert stored.readings == spanning.readings
        # Sessions are few: the killed attempt would have written them in its last batch, never reached.
        assert stored.sessions == final.sessions
        assert (run["rows_received"], run["rows_invalid"]) == (final.items, 0)
        if run["id"] in first_windows:
            assert 0 < stored_at_kill[run["id"]] < len(spanning.readings)
            # The second attempt found the first one's readings stored and wrote none of them again.
            assert run["rows_written"] < run["rows_received"]
        expected += len(spanning.readings) + len(final.sessions)
        stored_total += len(stored.readings) + len(stored.sessions)
    delivered = await assert_delivered_once_each(drill, users)
    alerts = await drill.pool.fetchval("SELECT count(*) FROM alerts")
    counted(
        "worker killed mid-sync",
        readings_expected=expected,
        readings_stored=stored_total,
        alerts=alerts,
        deliveries=delivered,
        lost=expected - stored_total,
    )


@pytest.mark.timeout(120)
async def test_a_redis_flush_mid_burst_loses_no_run_reading_or_alert(drill: Drill) -> None:
    users = await drill.patients(20, {"pace_ms": 40, "anomalies": TACHYCARDIA})
    drill.start_worker("worker", threads=4)
    run_ids = await drill.request_syncs([p.connection_id for p in users])

    async def some_done_some_queued() -> bool:
        done = await drill.pool.fetchval("SELECT count(*) FROM sync_runs WHERE status = 'completed'")
        return bool(done >= 2 and drill.redis.llen("dramatiq:sync") >= 4)

    await eventually(some_done_some_queued, timeout=30, what="a burst part-way through")
    # FLUSHDB, not FLUSHALL: the in-process pipeline tests of this same pytest session keep
    # their broker in Redis database 1, and a FLUSHALL would empty it under them.  To this
    # drill's worker the effect is the same: every queued, delayed and unacked message is gone.
    # The queue lengths are read in the same transaction, so they are exactly what was lost.
    with drill.redis.pipeline(transaction=True) as tx:
        for queue in ("sync", "analytics", "notifications"):
            tx.llen(f"dramatiq:{queue}")
        tx.flushdb()
        *queued, _ = tx.execute()
    lost = dict(zip(("sync", "analytics", "notifications"), queued, strict=True))
    assert lost["sync"] >= 1, "the flush found no queued sync to lose"

    reconciler = drill.start_reconciler()
    await settled(drill, runs=len(users), min_alerts=len(users), timeout=90)

    assert reconciled(reconciler)["syncs"] >= lost["sync"]
    runs = {r["connection_id"]: r for r in await drill.pool.fetch("SELECT * FROM sync_runs")}
    assert sorted(r["id"] for r in runs.values()) == sorted(run_ids)
    # Per user: readings and sessions missing, and stored ones that differ from what was served.
    wrong: dict[int, tuple[int, int]] = {}
    for patient in users:
        run = runs[patient.connection_id]
        expected = await served(patient.settings, run["window_start"], run["window_end"])
        stored = await drill.stored(patient.user_id)
        if stored != expected:
            missing = (expected.readings.keys() - stored.readings.keys()) | (
                expected.sessions.keys() - stored.sessions.keys()
            )
            differing = {k for k, v in stored.readings.items() if expected.readings.get(k) != v} | {
                k for k, v in stored.sessions.items() if expected.sessions.get(k) != v
            }
            wrong[patient.user_id] = (len(missing), len(differing - missing))
    assert wrong == {}
    assert [r["id"] for r in runs.values() if r["status"] != "completed"] == []
    assert [r["id"] for r in runs.values() if r["attempts"] != 1] == [], "a run was claimed twice"
    delivered = await assert_delivered_once_each(drill, users)
    compared = await compare_stored(drill, users)
    counted(
        "redis flushed mid-burst",
        messages_lost_with_the_flush=sum(lost.values()),
        readings_expected=compared.expected,
        readings_stored=compared.stored,
        alerts=await drill.pool.fetchval("SELECT count(*) FROM alerts"),
        deliveries=delivered,
        lost=compared.expected - compared.stored,
    )


@pytest.mark.timeout(60)
async def test_a_resync_keeps_the_row_count_and_updates_a_total_the_provider_changed(drill: Drill) -> None:
    [patient] = await drill.patients(1, {})
    drill.start_worker("worker")
    [first_id] = await drill.request_syncs([patient.connection_id])
    await settled(drill, runs=1, min_alerts=0, timeout=30)
    before = await drill.stored(patient.user_id)

    # The provider corrects the step total of two days ago (a late upload from the watch).
    corrected = patient.settings | {"anomalies": [{"metric": "steps", "value": 23456, "days_ago": 2}]}
    await drill.pool.execute("UPDATE connections SET settings = $2 WHERE id = $1", patient.connection_id, corrected)
    [second_id] = await drill.request_syncs([patient.connection_id], trigger="daily")
    await settled(drill, runs=2, min_alerts=0, timeout=30)

    second = await drill.pool.fetchrow("SELECT * FROM sync_runs WHERE id = $1", second_id)
    now_served = await served(corrected, second["window_start"], second["window_end"])
    after = await drill.stored(patient.user_id)
    day = latest_summary(second["window_end"]) - timedelta(days=2)
    corrected_key: ReadingKey = ("steps", datetime.combine(day, READING_TIME))
    changed = {k for k, v in now_served.readings.items() if before.readings.get(k) != v} | {
        k for k, v in now_served.sessions.items() if before.sessions.get(k) != v
    }

    assert first_id != second_id and second["trigger"] == "daily"
    assert second["rows_received"] == now_served.items and len(now_served.readings) >= 7 * 8
    assert len(after.readings) == len(before.readings) == 30 * 8
    assert after.readings[corrected_key] == 23456 != before.readings[corrected_key]
    assert corrected_key in changed
    assert after.readings == before.readings | now_served.readings
    assert after.sessions == before.sessions | now_served.sessions
    assert second["rows_written"] == len(changed)


# A worker killed while an alert is on its way: its attempt row says 'sending' and nobody will
# finish it.  Whatever delivers the alert next (the reconciler, or Dramatiq requeueing a dead
# worker's messages after its 60 s heartbeat timeout) must end with the alert delivered, not
# merely marked routed.  channels/routing.py keeps others off an attempt in flight for the
# delivery lease (DELIVERY_LEASE_SECONDS, short here), then closes the dead attempt as failed
# and makes a new one.
@pytest.mark.timeout(90)
async def test_a_worker_killed_mid_delivery_still_delivers_the_alert_once(drill: Drill) -> None:
    # The console channel opens its file to append; on a FIFO that nobody reads, open() blocks,
    # so the delivery stays in flight, like a send waiting on a slow peer, until the kill.
    sink = drill.workdir / "pager.fifo"
    os.mkfifo(sink)
    [patient] = await drill.patients(1, {"anomalies": TACHYCARDIA}, channel_path=sink)
    first = drill.start_worker("worker-1")
    await drill.request_syncs([patient.connection_id])

    async def in_flight() -> asyncpg.Record | None:
        return await drill.pool.fetchrow("SELECT alert_id, channel_id FROM notification_logs WHERE status = 'sending'")

    attempt = await eventually(in_flight, timeout=30, what="a delivery in flight")
    first.kill()
    # The next attempt appends to a plain file.
    sink.unlink()

    drill.start_worker("worker-2")
    reconciler = drill.start_reconciler()

    async def routed() -> bool:
        return bool(
            await drill.pool.fetchval("SELECT routed_at IS NOT NULL FROM alerts WHERE id = $1", attempt["alert_id"])
        )

    await eventually(routed, timeout=60, what="the alert to be routed")

    logs = await drill.pool.fetch(
        "SELECT attempt, status FROM notification_logs WHERE alert_id = $1 AND channel_id = $2 ORDER BY attempt",
        attempt["alert_id"],
        attempt["channel_id"],
    )
    assert [r["status"] for r in logs] == ["failed", "delivered"], f"marked routed, never delivered: {logs}"
    lines = sink.read_text().splitlines() if sink.exists() else []
    assert [json.loads(line)["alert_id"] for line in lines] == [attempt["alert_id"]]
    assert reconciled(reconciler)["notifications"] >= 1
