"""The sync error table, row by row, with the real worker syncing Oura from the local fake.

* Token expired: refresh automatically; if the refresh fails, mark the connection inactive and
  notify the user.
* Rate limited (429): honour Retry-After, otherwise exponential backoff.
* Provider unavailable (5xx, connection refused): retry up to 3 times with exponential backoff
  from 5 s, then a dead letter (the run 'failed' with its error); the other users carry on.
* Invalid reading: log a warning, skip, count; the valid readings of the batch are kept.
* Network timeout: 30 s per request (PROVIDER_TIMEOUT_SECONDS; 1 s in this session), then retry.

The worker's Oura is configured from the runtime's environment (``fake_oura.env()`` in
conftest).  Runs are sent with small backoffs so that retries take a second, not minutes; the
declared policy is asserted separately.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import dramatiq
import pytest

from db import sync_runs
from db.connections import load
from pipeline import actors, runtime
from pipeline.providers import PROVIDERS, get_provider
from pipeline.providers.http import OAuthApp
from pipeline.providers.oura import Oura
from tests.fakes import oura as fake
from tests.fakes.oura import Account, FakeOura
from tests.helpers import eventually, make_patient
from tests.pipeline.test_sync import finished

TODAY = datetime.now(UTC).date()
# Whole days before today: every reading lies in the past whatever the hour of the run.
DAYS = [TODAY - timedelta(days=n) for n in (3, 2, 1)]
# Readings and sleep sessions: the sync counts both as rows.
ROWS = len(DAYS) * fake.ITEMS_PER_DAY
# Backoffs for a quick suite; the Retries middleware takes them from the message.
QUICK = {"min_backoff": 100, "max_backoff": 400}


async def oura_patient(
    pool: asyncpg.Pool, account: Account, workdir: Path, *, expires_at: datetime | None = None
) -> tuple[int, int, Path]:
    """A patient of their own tenant with an Oura connection to ``account``: (user, connection, alert file)."""
    alert_file = workdir / f"{account.name}.jsonl"
    _, user_id, connection_id, _ = await make_patient(
        pool,
        runtime.current().keyring,
        tenant=f"oura-{account.name}",
        alert_file=alert_file,
        provider="oura",
        tokens=account.tokens(expires_at),
    )
    return user_id, connection_id, alert_file


async def start(pool: asyncpg.Pool, connection_id: int, **options: Any) -> int:
    """A pending run, sent with ``options`` overriding the actor's (backoffs)."""
    async with pool.acquire() as conn:
        run_id = await sync_runs.create(conn, connection_id, "manual")
    actors.sync.send_with_options(args=(run_id,), **options)
    return run_id


def gap(account: Account, collection: str = "daily_activity") -> float:
    """Seconds between the first two requests for ``collection``: how long the retry waited."""
    first, second = account.received(collection)[:2]
    return second.at - first.at


def test_the_worker_s_oura_is_the_one_its_environment_names(
    pipeline_runtime: runtime.Runtime, fake_oura: FakeOura
) -> None:
    oura = get_provider("oura")
    assert isinstance(oura, Oura) and oura.available
    assert (oura.base_url, oura.timeout) == (fake_oura.url, 1.0)


def test_the_sync_actor_declares_3_retries_backing_off_exponentially_from_5_seconds() -> None:
    options = actors.sync.options
    assert (options["max_retries"], options["min_backoff"]) == (3, 5_000)
    assert options["max_backoff"] >= 4 * 5_000  # room for 5, 10 and 20 s


# -- Token expired ---------------------------------------------------------------------------


async def test_an_expired_token_is_refreshed_and_resealed_and_the_sync_completes(
    pool: asyncpg.Pool, worker: dramatiq.Worker, fake_oura: FakeOura, workdir: Path
) -> None:
    account = fake_oura.add_account(documents=fake.documents(DAYS))
    old_access_token = account.access_token
    _, connection_id, _ = await oura_patient(pool, account, workdir, expires_at=datetime.now(UTC) - timedelta(hours=1))

    run = await finished(pool, await start(pool, connection_id))

    assert (run["status"], run["attempts"], run["rows_written"]) == ("completed", 1, ROWS)
    assert account.refreshes == 1
    # The fake kills the old access token on refresh: data came with the new one.
    assert account.access_token != old_access_token
    stored = await pool.fetchrow("SELECT tokens_sealed FROM connections WHERE id = $1", connection_id)
    assert account.refresh_token not in stored["tokens_sealed"]
    async with pool.acquire() as conn:
        connection = await load(conn, connection_id)
    assert connection is not None
    tokens = connection.tokens(runtime.current().keyring)
    assert (tokens["access_token"], tokens["refresh_token"]) == (account.access_token, account.refresh_token)


async def test_a_refused_refresh_marks_the_connection_inactive_and_notifies_the_user(
    pool: asyncpg.Pool, worker: dramatiq.Worker, fake_oura: FakeOura, workdir: Path
) -> None:
    account = fake_oura.add_account(documents=fake.documents(DAYS), revoked=True)
    refresh_token = account.refresh_token
    user_id, connection_id, alert_file = await oura_patient(
        pool, account, workdir, expires_at=datetime.now(UTC) - timedelta(minutes=1)
    )

    run = await finished(pool, await start(pool, connection_id, **QUICK))

    assert (run["status"], run["attempts"]) == ("failed", 1)  # permanent: no retry
    assert refresh_token not in run["error"] and "reconnect" in run["error"]
    assert account.requests == []  # no data request with a dead token
    connection = await pool.fetchrow("SELECT status FROM connections WHERE id = $1", connection_id)
    assert connection["status"] == "inactive"
    alert = await pool.fetchrow("SELECT id, category, title FROM alerts WHERE user_id = $1", user_id)
    assert (alert["category"], alert["title"]) == ("connection", "Reconnect Oura")

    async def delivered() -> list[Any]:
        return [json.loads(line) for line in alert_file.read_text().splitlines()] if alert_file.exists() else []

    assert [d["alert_id"] for d in await eventually(delivered, what="reconnect alert delivered")] == [alert["id"]]


async def test_a_401_before_expiry_marks_the_token_expired_and_the_retry_refreshes_and_completes(
    pool: asyncpg.Pool, worker: dramatiq.Worker, fake_oura: FakeOura, workdir: Path
) -> None:
    account = fake_oura.add_account(documents=fake.documents(DAYS))
    _, connection_id, _ = await oura_patient(pool, account, workdir)  # valid for another hour
    account.access_token = "oura-at-replaced-elsewhere"  # the stored one is now refused with 401

    run = await finished(pool, await start(pool, connection_id, **QUICK))

    assert (run["status"], run["attempts"], run["rows_written"]) == ("completed", 2, ROWS)
    assert account.refreshes == 1
    async with pool.acquire() as conn:
        connection = await load(conn, connection_id)
    assert connection is not None and connection.status == "active"
    assert connection.tokens(runtime.current().keyring)["access_token"] == account.access_token


# -- Rate limited (429) ----------------------------------------------------------------------


async def test_a_429_with_retry_after_is_retried_after_that_many_seconds_not_the_backoff(
    pool: asyncpg.Pool, worker: dramatiq.Worker, fake_oura: FakeOura, workdir: Path
) -> None:
    account = fake_oura.add_account(documents=fake.documents(DAYS))
    account.fail(status=429, retry_after="1")
    _, connection_id, _ = await oura_patient(pool, account, workdir)

    # A 10 s backoff: had Retry-After been ignored, the retry would come 10-20 s later.
    run = await finished(pool, await start(pool, connection_id, min_backoff=10_000, max_backoff=20_000))

    assert (run["status"], run["attempts"], run["rows_written"]) == ("completed", 2, ROWS)
    assert 1.0 <= gap(account) < 5.0


async def test_a_429_without_retry_after_waits_for_the_exponential_backoff(
    pool: asyncpg.Pool, worker: dramatiq.Worker, fake_oura: FakeOura, workdir: Path
) -> None:
    account = fake_oura.add_account(documents=fake.documents(DAYS))
    account.fail(status=429)
    _, connection_id, _ = await oura_patient(pool, account, workdir)

    run = await finished(pool, await start(pool, connection_id, min_backoff=1_500, max_backoff=3_000))

    assert (run["status"], run["attempts"], run["rows_written"]) == ("completed", 2, ROWS)
    assert gap(account) >= 1.5  # the first backoff is min_backoff to twice that


# -- Provider unavailable (5xx, connection refused) ------------------------------------------


async def test_a_provider_down_for_one_user_dead_letters_that_run_after_3_retries_while_others_complete(
    pool: asyncpg.Pool, worker: dramatiq.Worker, fake_oura: FakeOura, workdir: Path
) -> None:
    down = fake_oura.add_account(documents=fake.documents(DAYS))
    down.fail(4, status=503)  # one per attempt: a later sweep of this connection finds Oura back up
    up = fake_oura.add_account(documents=fake.documents(DAYS))
    _, down_connection, _ = await oura_patient(pool, down, workdir)
    _, up_connection, _ = await oura_patient(pool, up, workdir)

    failing, fine = await start(pool, down_connection, **QUICK), await start(pool, up_connection, **QUICK)
    failed, completed = await finished(pool, failing), await finished(pool, fine)

    assert (failed["status"], failed["attempts"]) == ("failed", 4)
    assert failed["error"] == "TransientSyncError: oura answered 503: fake fault 503"
    assert len(down.received("daily_activity")) == 4
    assert (completed["status"], completed["attempts"], completed["rows_written"]) == ("completed", 1, ROWS)
    assert completed["finished_at"] < failed["finished_at"]  # not held up by the other user's retries
    dead = await pool.fetch("SELECT id FROM sync_runs WHERE status = 'failed'")
    assert failing in [r["id"] for r in dead] and fine not in [r["id"] for r in dead]


@pytest.fixture
def unreachable_oura() -> Iterator[Oura]:
    """The worker's Oura pointed at a port nobody listens on, for one test."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    before, unreachable = PROVIDERS["oura"], Oura(OAuthApp(f"{url}/oauth/token", "id", "secret"), base_url=url)
    PROVIDERS["oura"] = unreachable
    yield unreachable
    PROVIDERS["oura"] = before


async def test_a_refused_connection_is_retried_3_times_then_dead_lettered(
    pool: asyncpg.Pool, worker: dramatiq.Worker, fake_oura: FakeOura, unreachable_oura: Oura, workdir: Path
) -> None:
    account = fake_oura.add_account(documents=fake.documents(DAYS))
    _, connection_id, _ = await oura_patient(pool, account, workdir)

    run = await finished(pool, await start(pool, connection_id, **QUICK))

    assert (run["status"], run["attempts"]) == ("failed", 4)
    assert run["error"] == "TransientSyncError: oura: connection failed (ClientConnectorError)"


# -- Invalid reading -------------------------------------------------------------------------


async def test_invalid_oura_readings_are_logged_skipped_and_counted_and_the_rest_of_the_batch_kept(
    pool: asyncpg.Pool, worker: dramatiq.Worker, fake_oura: FakeOura, workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    documents = fake.documents(DAYS)
    yesterday = DAYS[-1]
    documents["daily_activity"][-1] = fake.activity(yesterday, steps=-50)
    documents["daily_spo2"][-1] = fake.spo2(yesterday, 150.0)
    # A nap that ends before it starts: an invalid session, counted like an invalid reading.
    documents["sleep"].append(fake.sleep(yesterday, kind="late_nap", bedtime_start=f"{yesterday}T15:00:00+02:00",
                                         bedtime_end=f"{yesterday}T14:00:00+02:00"))  # fmt: skip
    account = fake_oura.add_account(documents=documents)
    user_id, connection_id, _ = await oura_patient(pool, account, workdir)
    caplog.set_level(logging.WARNING, logger="pipeline.sync")

    run = await finished(pool, await start(pool, connection_id))

    assert (run["status"], run["rows_received"], run["rows_invalid"], run["rows_written"]) == (
        "completed",
        ROWS + 1,
        3,
        ROWS - 2,
    )
    steps = await pool.fetch("SELECT value FROM metrics WHERE user_id = $1 AND metric = 'steps'", user_id)
    assert sorted(r["value"] for r in steps) == sorted(8000.0 + d.day for d in DAYS[:-1])
    assert await pool.fetchval("SELECT count(*) FROM metrics WHERE user_id = $1 AND metric = 'spo2'", user_id) == 2
    assert await pool.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", user_id) == len(DAYS)
    skipped = [r.getMessage() for r in caplog.records if "skipped a " in r.getMessage()]
    assert len(skipped) == 3


# -- Network timeout -------------------------------------------------------------------------


async def test_a_request_that_outlasts_the_timeout_is_abandoned_then_retried(
    pool: asyncpg.Pool, worker: dramatiq.Worker, fake_oura: FakeOura, workdir: Path
) -> None:
    account = fake_oura.add_account(documents=fake.documents(DAYS))
    account.fail(delay=4)  # the worker's timeout is 1 s (PROVIDER_TIMEOUT_SECONDS in conftest)
    _, connection_id, _ = await oura_patient(pool, account, workdir)

    run = await finished(pool, await start(pool, connection_id, **QUICK))

    assert (run["status"], run["attempts"], run["rows_written"]) == ("completed", 2, ROWS)
    # Given up at the timeout, not when the slow answer finally came.
    assert 1.0 <= gap(account) < 4.0
