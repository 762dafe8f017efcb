"""What a sync leaves behind: run counts and duration, the audit event, integrator events,
dead letters and their requeue, a refused refresh token, and jittered sweeps."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import dramatiq
import pytest

from db import sync_runs
from pipeline import runtime
from pipeline.errors import PermanentSyncError, RefreshFailedError
from pipeline.providers import PROVIDERS
from pipeline.providers.simulator import READING_TIME, issue_tokens, latest_summary
from pipeline.reconciler import reconcile
from pipeline.triggers import request_sync, requeue_failed, sweep
from tests.helpers import eventually, make_patient
from tests.pipeline.test_sync import Scripted, finished
from tests.pipeline.test_sync import scripted as scripted  # noqa: F401  (the fixture)


async def _events(pool: asyncpg.Pool, tenant_id: int) -> list[dict[str, Any]]:
    """The tenant's sync.* events (analytics adds score and alert events of its own)."""
    rows = await pool.fetch(
        "SELECT payload FROM events WHERE tenant_id = $1 AND type LIKE 'sync.%' ORDER BY id", tenant_id
    )
    return [r["payload"] for r in rows]


async def test_a_completed_run_records_its_counts_duration_audit_and_sync_completed_event(
    pool: asyncpg.Pool, worker: dramatiq.Worker, workdir: Path
) -> None:
    tenant_id, user_id, connection_id, _ = await make_patient(
        pool, runtime.current().keyring, tenant="outcomes", alert_file=workdir / "a.jsonl"
    )

    first = await finished(pool, await request_sync(pool, connection_id, "manual"))
    # Last synced as the latest summary came in: the next window starts at that day's UTC midnight,
    # at whatever hour this runs (an hour past midnight, a window from the sync's own day holds none).
    synced = datetime.combine(latest_summary(datetime.now(UTC)), READING_TIME)
    await pool.execute("UPDATE connections SET last_synced_at = $2 WHERE id = $1", connection_id, synced)
    again = await finished(pool, await request_sync(pool, connection_id, "manual"))

    assert first["status"] == "completed" and first["rows_received"] > 0
    assert (first["rows_written"], first["rows_unchanged"]) == (first["rows_received"], 0)
    assert first["duration_ms"] is not None and first["duration_ms"] >= 0
    # The second run re-reads that day: what did not change is counted as unchanged.
    assert again["rows_received"] == again["rows_written"] + again["rows_unchanged"] + again["rows_invalid"]
    assert again["rows_unchanged"] > 0
    audit = await pool.fetch(
        "SELECT details FROM audit_events WHERE action = 'wearable_sync' AND subject_id = ANY($1::bigint[])"
        " ORDER BY subject_id",
        [first["id"], again["id"]],
    )
    assert [a["details"]["rows_written"] for a in audit] == [first["rows_written"], again["rows_written"]]
    events = await _events(pool, tenant_id)
    assert [(e["type"], e["data"]["sync_run_id"]) for e in events] == [
        ("sync.completed", first["id"]),
        ("sync.completed", again["id"]),
    ]
    data = events[0]["data"]
    assert (data["user_id"], data["connection_id"], data["provider"]) == (user_id, connection_id, "simulator")
    assert data["rows_received"] == first["rows_received"]
    assert datetime.fromisoformat(events[0]["timestamp"]).tzinfo is not None
    assert "tokens" not in json.dumps(events) and "access_token" not in json.dumps(events)


async def test_a_dead_lettered_run_is_listed_published_and_completes_when_requeued(
    pool: asyncpg.Pool, worker: dramatiq.Worker, scripted: Scripted, workdir: Path
) -> None:
    tenant_id, _, connection_id, _ = await make_patient(
        pool, runtime.current().keyring, tenant="deadletter", alert_file=workdir / "a.jsonl", provider="scripted"
    )
    scripted.failures = [PermanentSyncError("provider answered 400: bad request")]
    run = await finished(pool, await request_sync(pool, connection_id, "manual"))
    assert (run["status"], run["error"]) == ("failed", "provider answered 400: bad request")
    async with pool.acquire() as conn:
        dead = await sync_runs.failed(conn)
    assert run["id"] in [d["id"] for d in dead]
    assert [e["type"] for e in await _events(pool, tenant_id)] == ["sync.failed"]

    assert await requeue_failed(pool, [run["id"], 999_999_999]) == [run["id"]]
    requeued = await finished(pool, run["id"])

    assert (requeued["status"], requeued["attempts"], requeued["error"]) == ("completed", 1, None)
    assert [e["type"] for e in await _events(pool, tenant_id)] == ["sync.failed", "sync.completed"]
    assert await requeue_failed(pool, [run["id"]]) == []  # a completed run is not a dead letter


class Refusing(Scripted):
    """A provider whose token endpoint refuses the refresh token (the user revoked access)."""

    id = "refusing"

    async def refresh(self, tokens: dict[str, Any]) -> dict[str, Any]:
        self.refreshes += 1
        raise RefreshFailedError("token endpoint answered 400 invalid_grant")


@pytest.fixture
def refusing() -> Iterator[Refusing]:
    provider = Refusing()
    PROVIDERS[provider.id] = provider
    yield provider
    del PROVIDERS[provider.id]


async def test_a_refused_refresh_marks_the_connection_inactive_and_tells_the_user_once(
    pool: asyncpg.Pool, worker: dramatiq.Worker, refusing: Refusing, workdir: Path
) -> None:
    alert_file = workdir / "a.jsonl"
    expired = issue_tokens(datetime.now(UTC) - timedelta(hours=2))
    tenant_id, user_id, connection_id, _ = await make_patient(
        pool, runtime.current().keyring, tenant="refused", alert_file=alert_file, provider="refusing", tokens=expired
    )

    run = await finished(pool, await request_sync(pool, connection_id, "manual"))

    assert (run["status"], run["attempts"]) == ("failed", 1)
    assert refusing.refreshes == 1 and refusing.windows == []  # no data call with a dead token
    connection = await pool.fetchrow("SELECT status, status_reason FROM connections WHERE id = $1", connection_id)
    assert connection["status"] == "inactive" and "refresh" in connection["status_reason"]
    alert = await pool.fetchrow("SELECT * FROM alerts WHERE user_id = $1", user_id)
    assert (alert["category"], alert["title"]) == ("connection", "Reconnect Simulator")

    async def delivered() -> list[Any]:
        return [json.loads(line) for line in alert_file.read_text().splitlines()] if alert_file.exists() else []

    assert [d["alert_id"] for d in await eventually(delivered, what="reconnect alert delivered")] == [alert["id"]]
    assert [e["type"] for e in await _events(pool, tenant_id)] == ["sync.failed"]
    # An inactive connection is left out of sweeps until the user reconnects.
    assert connection_id not in await _connections_of(
        pool, await sweep(pool, "daily", datetime.now(UTC), providers=["refusing"])
    )


async def _connections_of(pool: asyncpg.Pool, run_ids: list[int]) -> list[int]:
    rows = await pool.fetch("SELECT connection_id FROM sync_runs WHERE id = ANY($1::bigint[])", run_ids)
    return [r["connection_id"] for r in rows]


async def test_a_jittered_sweep_spreads_runs_by_connection_and_the_reconciler_waits_for_them(
    pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime, workdir: Path
) -> None:
    # No worker: this test looks at the queue, not at the syncs.
    keyring = pipeline_runtime.keyring
    made = [
        await make_patient(pool, keyring, tenant=f"jitter{i}", alert_file=workdir / "a.jsonl", provider="jittered")
        for i in range(40)
    ]
    connection_ids = {m[2] for m in made}
    jitter = timedelta(minutes=15)

    run_ids = await sweep(pool, "daily", datetime.now(UTC), providers=["jittered"], jitter=jitter)

    rows = await pool.fetch(
        "SELECT connection_id, not_before - created_at AS delay FROM sync_runs WHERE id = ANY($1::bigint[])", run_ids
    )
    assert {r["connection_id"] for r in rows} == connection_ids  # only this provider's connections
    delays = sorted(r["delay"] for r in rows)
    assert all(timedelta(0) <= d < jitter for d in delays)
    assert delays[-1] - delays[0] > jitter / 2  # spread, not bunched in one second
    assert len({d // timedelta(seconds=1) for d in delays}) > 30
    # Each message waits in the delay queue until its run falls due.
    client = pipeline_runtime.broker.client  # type: ignore[attr-defined]
    delayed = [json.loads(m) for m in client.hvals("dramatiq:sync.DQ.msgs")]
    etas = {m["args"][0]: m["options"]["eta"] for m in delayed if m["args"][0] in run_ids}
    assert sorted(etas) == sorted(run_ids)
    assert max(etas.values()) - min(etas.values()) > jitter.total_seconds() * 1000 / 2
    # Runs waiting out their jitter are not "lost": the reconciler leaves them alone.
    settings = pipeline_runtime.settings
    await pool.execute(
        "UPDATE sync_runs SET created_at = created_at - $2::interval, not_before = not_before - $2::interval"
        " WHERE id = ANY($1::bigint[])",
        run_ids,
        settings.reconcile_after,
    )
    async with pool.acquire() as conn:
        lost = set(await sync_runs.needing_enqueue(conn, settings.reconcile_after, settings.stale_after))
    overdue = await pool.fetch(
        "SELECT id FROM sync_runs WHERE id = ANY($1::bigint[]) AND not_before < now() - $2::interval",
        run_ids,
        settings.reconcile_after,
    )
    assert lost & set(run_ids) == {r["id"] for r in overdue}
    assert len(overdue) < len(run_ids)
    await pool.execute("UPDATE sync_runs SET status = 'skipped' WHERE id = ANY($1::bigint[])", run_ids)


class Lookback(Scripted):
    """A provider of its own, so the sweep below reaches this test's connection only."""

    id = "lookback"


@pytest.fixture
def lookback() -> Iterator[Lookback]:
    provider = Lookback()
    PROVIDERS[provider.id] = provider
    yield provider
    del PROVIDERS[provider.id]


async def test_the_daily_sweep_sends_the_configured_lookback_to_the_provider(
    pool: asyncpg.Pool, worker: dramatiq.Worker, lookback: Lookback, workdir: Path
) -> None:
    # The seed passed the lookback under keys its provider never read; check what arrives.
    _, _, connection_id, _ = await make_patient(
        pool, runtime.current().keyring, tenant="lookback", alert_file=workdir / "a.jsonl", provider="lookback"
    )
    await finished(pool, await request_sync(pool, connection_id, "manual"))
    [first] = lookback.windows

    [run_id] = await sweep(pool, "daily", datetime.now(UTC), providers=["lookback"])
    await finished(pool, run_id)

    [_, daily] = lookback.windows
    settings = runtime.current().settings
    assert first.end - first.start == timedelta(days=settings.first_sync_days)
    assert daily.end - daily.start == timedelta(days=settings.daily_lookback_days) == timedelta(days=7)
    assert daily.end > first.end


async def test_the_reconciler_resends_a_lost_run_once_per_interval_and_leaves_retrying_runs_to_their_backoff(
    pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime, workdir: Path
) -> None:
    settings = pipeline_runtime.settings
    made = [
        await make_patient(pool, pipeline_runtime.keyring, tenant=f"lost{i}", alert_file=workdir / "a.jsonl")
        for i in range(2)
    ]
    async with pool.acquire() as conn:
        lost, retrying = [await sync_runs.create(conn, m[2], "scheduled") for m in made]
        await pool.execute(
            "UPDATE sync_runs SET created_at = now() - $2::interval WHERE id = ANY($1::bigint[])",
            [lost, retrying],
            settings.reconcile_after * 2,
        )
        # A failed attempt handed back for a retry Dramatiq will send in ten minutes.
        await sync_runs.finish(conn, retrying, "pending", "TransientSyncError: 503", timedelta(minutes=10))

        first = set(await sync_runs.needing_enqueue(conn, settings.reconcile_after, settings.stale_after))
        second = set(await sync_runs.needing_enqueue(conn, settings.reconcile_after, settings.stale_after))

    assert lost in first and retrying not in first
    assert lost not in second  # re-sent a moment ago: give that message time to arrive
    await pool.execute("UPDATE sync_runs SET status = 'skipped' WHERE id = ANY($1::bigint[])", [lost, retrying])


async def test_a_report_whose_message_was_lost_is_built_after_the_reconciler_runs(
    pool: asyncpg.Pool, worker: dramatiq.Worker, pipeline_runtime: runtime.Runtime, workdir: Path
) -> None:
    _, user_id, _, _ = await make_patient(
        pool, pipeline_runtime.keyring, tenant="lostreport", alert_file=workdir / "a.jsonl"
    )
    today = datetime.now(UTC).date()
    report_id = await pool.fetchval(
        "INSERT INTO reports (user_id, period_start, period_end, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        user_id,
        today - timedelta(days=7),
        today - timedelta(days=1),
        datetime.now(UTC) - pipeline_runtime.settings.reconcile_after * 2,
    )

    found = await reconcile(pool, pipeline_runtime.settings)

    assert found.reports >= 1

    async def ready() -> str | None:
        return await pool.fetchval("SELECT status FROM reports WHERE id = $1 AND status = 'ready'", report_id)

    assert await eventually(ready, what="the report built") == "ready"
