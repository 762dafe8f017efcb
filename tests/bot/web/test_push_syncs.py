"""From sign-in to push: the account id stored at the callback routes a push to its connection,
and the sync the push asks for reads only what the push named, as the provider's fake sees it."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import dramatiq
import pytest
from aiohttp.test_utils import TestClient

from db import connect_links, sync_runs
from pipeline import runtime
from pipeline.providers import PROVIDERS
from pipeline.providers.dexcom import Dexcom
from pipeline.providers.whoop import Whoop
from pipeline.providers.withings import Withings
from tests.bot.api.conftest import Tenant, make_user
from tests.bot.web.conftest import SETTINGS
from tests.bot.web.test_oauth import authorize, new_link
from tests.bot.web.test_provider_hooks import oura_headers, whoop_body, whoop_headers
from tests.fakes import oura as oura_docs
from tests.fakes.dexcom import FakeDexcom
from tests.fakes.oura import FakeOura
from tests.fakes.whoop import FakeWhoop
from tests.fakes.withings import FakeWithings
from tests.helpers import eventually

OURA_URL, WITHINGS_URL = "/webhooks/providers/oura", "/webhooks/providers/withings"


@pytest.fixture(scope="module")
def fake_dexcom() -> Iterator[FakeDexcom]:
    server = FakeDexcom().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fake_withings() -> Iterator[FakeWithings]:
    server = FakeWithings().start()
    yield server
    server.stop()


@pytest.fixture
def withings(fake_withings: FakeWithings, monkeypatch: pytest.MonkeyPatch) -> Withings:
    provider = Withings.from_env(fake_withings.env())
    monkeypatch.setitem(PROVIDERS, "withings", provider)
    return provider


async def connect(
    pool: asyncpg.Pool,
    rt: runtime.Runtime,
    user_id: int,
    provider: str,
    account: str,
    tokens: dict[str, Any] | None = None,
) -> int:
    """A connection as the callback records it: ``account`` is the provider's id of the user."""
    async with pool.acquire() as conn:
        return await connect_links.record_connection(
            conn,
            rt.keyring,
            user_id=user_id,
            provider=provider,
            tokens=tokens or {"access_token": "at"},
            provider_user_id=account,
        )


async def finished(pool: asyncpg.Pool, run_id: int) -> asyncpg.Record:
    async def check() -> asyncpg.Record | None:
        query = "SELECT * FROM sync_runs WHERE id = $1 AND status IN ('completed', 'failed', 'skipped')"
        return await pool.fetchrow(query, run_id)

    return await eventually(check, what=f"sync run {run_id}")


async def webhook_run(pool: asyncpg.Pool, connection_id: int) -> asyncpg.Record:
    """The connection's one webhook run."""
    rows = await pool.fetch("SELECT * FROM sync_runs WHERE connection_id = $1 AND trigger = 'webhook'", connection_id)
    assert len(rows) == 1, rows
    return rows[0]


def oura_event(user: str, data_type: str, at: datetime, operation: str = "update") -> bytes:
    body = {"event_type": operation, "data_type": data_type, "object_id": "o-1", "user_id": user}
    return json.dumps(body | {"event_time": at.isoformat()}).encode()


async def test_an_oura_sign_in_stores_the_id_its_pushes_carry_so_a_push_syncs_that_connection(
    client: TestClient, clinic: Tenant, pool: asyncpg.Pool, fake_oura: FakeOura, caplog: pytest.LogCaptureFixture
) -> None:
    user_id = await make_user(client, clinic, "oura-id")
    account = fake_oura.add_account()
    state = (await authorize(client, await new_link(client, clinic, user_id, "oura")))["state"]
    page = await client.get("/oauth/oura/callback", params={"code": account.name, "state": state})
    assert page.status == 200, await page.text()

    row = await pool.fetchrow("SELECT id, provider_user_id FROM connections WHERE user_id = $1", user_id)
    assert row["provider_user_id"] == account.oura_id
    assert [r.path for r in account.requests] == ["/v2/usercollection/personal_info"]
    # The initial sync covers everything while it waits; once it ran, a push gets a run of its own.
    await pool.execute("UPDATE sync_runs SET status = 'completed' WHERE connection_id = $1", row["id"])

    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    body = oura_event(account.oura_id, "sleep", at)
    pushed = await client.post(OURA_URL, data=body, headers=oura_headers(body, fake_oura.client_secret))

    assert pushed.status == 202 and (await pushed.json())["sync_runs"] == 1
    run = await webhook_run(pool, row["id"])
    assert (run["status"], run["scope_start"], run["scope_end"]) == ("pending", at - timedelta(days=1), at)
    assert run["scope_only"] == ["sleep"]

    stranger = oura_event("not-an-oura-user-we-know", "sleep", at)
    with caplog.at_level(logging.INFO, logger="bot.web.provider_hooks"):
        unknown = await client.post(OURA_URL, data=stranger, headers=oura_headers(stranger, fake_oura.client_secret))
    assert unknown.status == 202 and (await unknown.json())["sync_runs"] == 0
    assert "no active connection" in caplog.text


async def test_a_sign_in_whose_account_id_cannot_be_read_still_connects_and_says_so(
    client: TestClient, clinic: Tenant, pool: asyncpg.Pool, fake_oura: FakeOura, caplog: pytest.LogCaptureFixture
) -> None:
    user_id = await make_user(client, clinic, "oura-no-id")
    account = fake_oura.add_account()
    account.fail(status=503)  # personal_info is down
    state = (await authorize(client, await new_link(client, clinic, user_id, "oura")))["state"]

    with caplog.at_level(logging.WARNING, logger="bot.web.oauth"):
        page = await client.get("/oauth/oura/callback", params={"code": account.name, "state": state})

    assert page.status == 200, await page.text()
    row = await pool.fetchrow("SELECT status, provider_user_id FROM connections WHERE user_id = $1", user_id)
    assert (row["status"], row["provider_user_id"]) == ("active", None)
    assert "pushes will not reach it" in caplog.text and account.access_token not in caplog.text


async def test_dexcom_stores_the_user_id_of_its_data_range(
    client: TestClient, clinic: Tenant, pool: asyncpg.Pool, fake_dexcom: FakeDexcom, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(PROVIDERS, "dexcom", Dexcom.from_env(fake_dexcom.env()))
    user_id = await make_user(client, clinic, "dexcom-id")
    account = fake_dexcom.add_account()
    state = (await authorize(client, await new_link(client, clinic, user_id, "dexcom")))["state"]

    page = await client.get("/oauth/dexcom/callback", params={"code": account.name, "state": state})

    assert page.status == 200, await page.text()
    found = await pool.fetchval("SELECT provider_user_id FROM connections WHERE user_id = $1", user_id)
    assert found == account.user_id
    assert [r.path for r in account.requests] == ["/v3/users/self/dataRange"]


async def test_withings_stores_the_userid_of_its_token_answer(
    client: TestClient, clinic: Tenant, pool: asyncpg.Pool, fake_withings: FakeWithings, withings: Withings
) -> None:
    user_id = await make_user(client, clinic, "withings-id")
    account = fake_withings.add_account()
    state = (await authorize(client, await new_link(client, clinic, user_id, "withings")))["state"]

    page = await client.get("/oauth/withings/callback", params={"code": account.name, "state": state})

    assert page.status == 200, await page.text()
    found = await pool.fetchval("SELECT provider_user_id FROM connections WHERE user_id = $1", user_id)
    assert found == str(account.userid)


async def test_an_oura_push_reads_only_its_collection_on_the_days_around_its_event(
    client: TestClient,
    clinic: Tenant,
    pool: asyncpg.Pool,
    pipeline_runtime: runtime.Runtime,
    fake_oura: FakeOura,
    worker: dramatiq.Worker,
) -> None:
    today = datetime.now(UTC).date()
    account = fake_oura.add_account(documents=oura_docs.documents(today - timedelta(days=n) for n in range(20)))
    user_id = await make_user(client, clinic, "oura-narrow")
    connection_id = await connect(pool, pipeline_runtime, user_id, "oura", account.oura_id, account.tokens())
    synced = datetime.now(UTC) - timedelta(days=10)  # an ordinary run would read ten days and more
    await pool.execute("UPDATE connections SET last_synced_at = $2 WHERE id = $1", connection_id, synced)
    day = today - timedelta(days=5)
    at = datetime(day.year, day.month, day.day, 20, tzinfo=UTC)
    body = oura_event(account.oura_id, "daily_activity", at)

    pushed = await client.post(OURA_URL, data=body, headers=oura_headers(body, fake_oura.client_secret))
    assert pushed.status == 202
    run = await finished(pool, (await webhook_run(pool, connection_id))["id"])

    assert run["status"] == "completed", run["error"]
    assert (run["window_start"], run["window_end"]) == (at - timedelta(days=1), at)
    asked = [(r.path, r.query["start_date"], r.query["end_date"]) for r in account.requests]
    # Oura files days locally, so a date query reaches one day either side of the window.
    assert asked == [("/v2/usercollection/daily_activity", str(day - timedelta(days=2)), str(day + timedelta(days=1)))]
    stored = await pool.fetch("SELECT metric, recorded_at FROM metrics WHERE user_id = $1", user_id)
    assert {r["metric"] for r in stored} == {"steps", "active_energy"}
    assert {r["recorded_at"].date() for r in stored} == {day}  # dated 04:00+02:00, inside the day before 20:00
    # A narrow run leaves the gap since the last full sync to the next full one.
    assert await pool.fetchval("SELECT last_synced_at FROM connections WHERE id = $1", connection_id) == synced


async def test_a_whoop_push_reads_only_the_collections_its_type_names(
    client: TestClient,
    clinic: Tenant,
    pool: asyncpg.Pool,
    pipeline_runtime: runtime.Runtime,
    fake_whoop: FakeWhoop,
    whoop: Whoop,
    worker: dramatiq.Worker,
) -> None:
    assert whoop.oauth is not None
    account = fake_whoop.add_account()
    user_id = await make_user(client, clinic, "whoop-narrow")
    connection_id = await connect(pool, pipeline_runtime, user_id, "whoop", str(account.user_id), account.tokens())
    synced = datetime.now(UTC) - timedelta(days=3)
    await pool.execute("UPDATE connections SET last_synced_at = $2 WHERE id = $1", connection_id, synced)
    body = whoop_body(str(account.user_id), "recovery.updated")

    pushed = await client.post(
        "/webhooks/providers/whoop", data=body, headers=whoop_headers(body, whoop.oauth.client_secret)
    )
    assert pushed.status == 202
    run = await finished(pool, (await webhook_run(pool, connection_id))["id"])

    assert run["status"] == "completed", run["error"]
    assert run["scope_only"] == ["recovery", "sleep"]
    # WHOOP names the record, not its time: the run keeps its own window, since the last sync.
    assert run["window_start"] <= synced and run["window_end"] - run["window_start"] > timedelta(days=3)
    assert sorted({r.path for r in account.requests}) == ["/developer/v2/activity/sleep", "/developer/v2/recovery"]


async def test_a_withings_notification_reads_the_window_it_gives(
    client: TestClient,
    clinic: Tenant,
    pool: asyncpg.Pool,
    pipeline_runtime: runtime.Runtime,
    fake_withings: FakeWithings,
    withings: Withings,
    worker: dramatiq.Worker,
) -> None:
    account = fake_withings.add_account()
    user_id = await make_user(client, clinic, "withings-narrow")
    connection_id = await connect(pool, pipeline_runtime, user_id, "withings", str(account.userid), account.tokens())
    start = int((datetime.now(UTC) - timedelta(days=2)).timestamp())
    form = {"userid": str(account.userid), "appli": "1", "startdate": str(start), "enddate": str(start + 3600)}

    pushed = await client.post(WITHINGS_URL, params={"token": SETTINGS.withings_notify_token or ""}, data=form)
    assert pushed.status == 200
    run = await finished(pool, (await webhook_run(pool, connection_id))["id"])

    assert run["status"] == "completed", run["error"]
    assert [(r.query["startdate"], r.query["enddate"]) for r in account.requests] == [
        (form["startdate"], form["enddate"])
    ]


async def test_pushes_while_a_run_waits_widen_it_instead_of_being_dropped(
    client: TestClient, clinic: Tenant, pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime, fake_oura: FakeOura
) -> None:
    user_id = await make_user(client, clinic, "oura-burst")
    connection_id = await connect(pool, pipeline_runtime, user_id, "oura", "oura-burst-1")
    monday, thursday = datetime(2026, 11, 16, 9, tzinfo=UTC), datetime(2026, 11, 19, 9, tzinfo=UTC)
    async with pool.acquire() as conn:  # waiting, never enqueued: no worker takes it
        waiting = await sync_runs.create(
            conn, connection_id, "webhook", sync_runs.Scope(monday - timedelta(days=1), monday, frozenset({"sleep"}))
        )
    for data_type, at in (("daily_activity", thursday), ("sleep", monday)):
        body = oura_event("oura-burst-1", data_type, at)
        pushed = await client.post(OURA_URL, data=body, headers=oura_headers(body, fake_oura.client_secret))
        assert pushed.status == 202 and (await pushed.json())["sync_runs"] == 0

    run = await webhook_run(pool, connection_id)
    assert run["id"] == waiting
    assert (run["scope_start"], run["scope_end"]) == (monday - timedelta(days=1), thursday)
    assert run["scope_only"] == ["daily_activity", "sleep"]
    # An event that names no collection (a type we do not map) widens it to all of them.
    body = oura_event("oura-burst-1", "enhanced_tag", thursday)
    await client.post(OURA_URL, data=body, headers=oura_headers(body, fake_oura.client_secret))
    assert (await webhook_run(pool, connection_id))["scope_only"] is None
    # Once a worker holds it, the next push gets a run of its own.
    await pool.execute("UPDATE sync_runs SET status = 'running' WHERE id = $1", waiting)
    await client.post(OURA_URL, data=body, headers=oura_headers(body, fake_oura.client_secret))
    count = await pool.fetchval("SELECT count(*) FROM sync_runs WHERE connection_id = $1", connection_id)
    assert count == 2
