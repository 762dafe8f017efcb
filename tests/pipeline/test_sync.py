"""The sync step on its own: windows, validation of readings, token refresh, retries."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import dramatiq
import pytest

from db.connections import Connection, load
from db.metrics import Reading
from db.sessions import Session
from pipeline import runtime
from pipeline.errors import PermanentSyncError, TransientSyncError
from pipeline.providers import PROVIDERS, Window
from pipeline.providers.simulator import Simulator, issue_tokens
from pipeline.settings import PipelineSettings
from pipeline.sync import sync_window
from pipeline.triggers import request_sync
from tests.helpers import eventually, make_patient

NOW = datetime(2026, 11, 22, 10, 30, tzinfo=UTC)


def connection(last_synced_at: datetime | None) -> Connection:
    return Connection(1, 1, 1, "simulator", "active", {}, last_synced_at, None)


@pytest.mark.parametrize(
    ("last_synced_at", "trigger", "start"),
    [
        (None, "manual", NOW - timedelta(days=30)),
        (None, "daily", NOW - timedelta(days=30)),
        (NOW - timedelta(hours=3), "daily", NOW - timedelta(days=7)),
        (NOW - timedelta(hours=3), "scheduled", datetime(2026, 11, 22, tzinfo=UTC)),
        (datetime(2026, 11, 22, 0, 30, tzinfo=UTC), "manual", datetime(2026, 11, 21, tzinfo=UTC)),
        (NOW - timedelta(days=3), "webhook", datetime(2026, 11, 19, tzinfo=UTC)),
    ],
)
def test_the_window_reaching_the_provider_depends_on_history_and_trigger(
    last_synced_at: datetime | None, trigger: str, start: datetime
) -> None:
    assert sync_window(PipelineSettings(redis_url=None), connection(last_synced_at), trigger, NOW) == Window(start, NOW)


class Scripted(Simulator):
    """The simulator, plus whatever a test needs to happen: bad readings, failures, slow refreshes."""

    id = "scripted"

    def __init__(self) -> None:
        self.extra: list[Reading] = []
        self.failures: list[Exception] = []
        self.refreshes = 0
        self.windows: list[Window] = []

    async def refresh(self, tokens: dict[str, Any]) -> dict[str, Any]:
        self.refreshes += 1
        await asyncio.sleep(0.3)  # a slow token endpoint: wide enough for a second sync to race
        return issue_tokens()

    async def fetch(
        self, tokens: dict[str, Any], window: Window, settings: dict[str, Any]
    ) -> AsyncIterator[Reading | Session]:
        self.windows.append(window)
        if self.failures:
            raise self.failures.pop(0)
        async for reading in super().fetch(tokens, window, settings):
            yield reading
        for reading in self.extra:
            yield reading


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    provider = Scripted()
    PROVIDERS[provider.id] = provider
    yield provider
    del PROVIDERS[provider.id]


async def finished(pool: asyncpg.Pool, run_id: int) -> asyncpg.Record:
    async def check() -> asyncpg.Record | None:
        return await pool.fetchrow(
            "SELECT * FROM sync_runs WHERE id = $1 AND status IN ('completed', 'failed', 'skipped')", run_id
        )

    return await eventually(check, what=f"sync run {run_id}")


async def test_invalid_readings_are_skipped_counted_and_logged_and_the_valid_ones_kept(
    pool: asyncpg.Pool,
    worker: dramatiq.Worker,
    scripted: Scripted,
    workdir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, user_id, connection_id, _ = await make_patient(
        pool, runtime.current().keyring, tenant="invalid", alert_file=workdir / "a.jsonl", provider="scripted"
    )
    yesterday = datetime.now(UTC) - timedelta(days=1)
    scripted.extra = [
        Reading("mood", yesterday, 3, "score"),
        Reading("steps", yesterday, 100, "km"),
        Reading("spo2", yesterday, math.nan, "%"),
        Reading("spo2", yesterday.replace(tzinfo=None), 97, "%"),
        Reading("spo2", yesterday - timedelta(days=400), 97, "%"),
        Reading("weight", yesterday, 71.5, "kg"),
    ]
    caplog.set_level(logging.WARNING, logger="pipeline.sync")

    run = await finished(pool, await request_sync(pool, connection_id, "manual"))

    assert (run["status"], run["rows_received"], run["rows_invalid"], run["rows_written"]) == (
        "completed",
        291,  # 30 days of the simulator (240 readings, 30 nights, 15 workouts) and 6 extra
        5,
        286,
    )
    assert await pool.fetchval("SELECT value FROM metrics WHERE user_id = $1 AND metric = 'weight'", user_id) == 71.5
    skipped = [r.getMessage() for r in caplog.records if "skipped a reading" in r.getMessage()]
    assert len(skipped) == 5
    assert any("unknown metric 'mood'" in m for m in skipped)
    assert any("steps in 'km', expected 'count'" in m for m in skipped)


async def test_expiring_tokens_are_refreshed_once_under_concurrent_syncs_and_resealed(
    pool: asyncpg.Pool, worker: dramatiq.Worker, scripted: Scripted, workdir: Path
) -> None:
    keyring = runtime.current().keyring
    expiring = issue_tokens(datetime.now(UTC) - timedelta(minutes=58))  # expires in two minutes
    _, _, connection_id, _ = await make_patient(
        pool, keyring, tenant="refresh", alert_file=workdir / "a.jsonl", provider="scripted", tokens=expiring
    )
    # Two runs at once: only one may spend the (rotating) refresh token.
    first, second = [await request_sync(pool, connection_id, trigger) for trigger in ("manual", "scheduled")]

    runs = [await finished(pool, run_id) for run_id in (first, second)]

    assert [r["status"] for r in runs] == ["completed", "completed"]
    assert scripted.refreshes == 1
    async with pool.acquire() as conn:
        stored = await load(conn, connection_id)
    assert stored is not None and stored.tokens_sealed is not None
    tokens = stored.tokens(keyring)
    assert tokens["refresh_token"] != expiring["refresh_token"]
    assert tokens["refresh_token"] not in stored.tokens_sealed


async def test_a_transient_provider_error_is_retried_by_dramatiq_and_the_run_completes(
    pool: asyncpg.Pool, worker: dramatiq.Worker, scripted: Scripted, workdir: Path
) -> None:
    _, _, connection_id, _ = await make_patient(
        pool, runtime.current().keyring, tenant="flaky", alert_file=workdir / "a.jsonl", provider="scripted"
    )
    scripted.failures = [TransientSyncError("429 from provider", retry_after=0.2)]

    run = await finished(pool, await request_sync(pool, connection_id, "manual"))

    assert (run["status"], run["attempts"], run["rows_written"]) == ("completed", 2, 285)


async def test_a_permanent_provider_error_fails_the_run_without_retrying(
    pool: asyncpg.Pool, worker: dramatiq.Worker, scripted: Scripted, workdir: Path
) -> None:
    _, _, connection_id, _ = await make_patient(
        pool, runtime.current().keyring, tenant="denied", alert_file=workdir / "a.jsonl", provider="scripted"
    )
    scripted.failures = [PermanentSyncError("grant revoked by the user")]

    run = await finished(pool, await request_sync(pool, connection_id, "manual"))

    assert (run["status"], run["attempts"], run["error"]) == ("failed", 1, "grant revoked by the user")
    assert len(scripted.windows) == 1
