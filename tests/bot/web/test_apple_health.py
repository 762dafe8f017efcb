"""The Apple Health upload page: a one-time link, a streamed multipart upload, an import run."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import dramatiq
import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from bot.app import make_app
from bot.web.provider_hooks import WEB_SETTINGS
from db import connect_links
from pipeline import runtime
from pipeline.providers import PROVIDERS
from pipeline.providers.apple_health import AppleHealth
from tests.bot.api.conftest import Tenant, make_user
from tests.bot.web.conftest import SETTINGS
from tests.fakes.apple_health import export_xml, export_zip, record
from tests.helpers import eventually

EXPORT = export_zip(export_xml(record("HeartRate", 64, "count/min", datetime.now(UTC) - timedelta(hours=2))))


@pytest.fixture
def apple(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppleHealth:
    provider = AppleHealth(tmp_path / "uploads")
    monkeypatch.setitem(PROVIDERS, "apple_health", provider)
    return provider


async def link(pool: asyncpg.Pool, user_id: int, provider: str = "apple_health") -> str:
    async with pool.acquire() as conn:
        return await connect_links.create(conn, user_id, provider)


def form(content: bytes, field: str = "export", filename: str = "export.zip") -> FormData:
    data = FormData()
    data.add_field(field, content, filename=filename, content_type="application/zip")
    return data


def uploads(apple: AppleHealth) -> list[str]:
    return sorted(p.name for p in apple.upload_dir.iterdir()) if apple.upload_dir.exists() else []


async def test_an_export_uploads_once_points_the_connection_at_it_and_starts_an_import(
    client: TestClient, clinic: Tenant, pool: asyncpg.Pool, apple: AppleHealth
) -> None:
    user_id = await make_user(client, clinic, "apple-upload")
    token = await link(pool, user_id)

    page = await client.get("/connect/apple", params={"token": token})
    text = await page.text()
    assert page.status == 200 and 'enctype="multipart/form-data"' in text and 'name="export"' in text
    assert "form-action 'self'" in page.headers["Content-Security-Policy"]
    assert (await client.get("/connect/apple", params={"token": token})).status == 200  # a look spends nothing

    done = await client.post("/connect/apple", params={"token": token}, data=form(EXPORT))
    assert done.status == 200 and "on its way" in await done.text()
    row = await pool.fetchrow(
        "SELECT id, status, settings FROM connections WHERE user_id = $1 AND provider = 'apple_health'", user_id
    )
    assert row["status"] == "active" and row["settings"]["bytes"] == len(EXPORT)
    assert uploads(apple) == [row["settings"]["export"]]  # no partial file left behind
    assert apple.export_path(row["settings"]["export"]).read_bytes() == EXPORT
    assert await pool.fetchval("SELECT trigger FROM sync_runs WHERE connection_id = $1", row["id"]) == "import"

    again = await client.post("/connect/apple", params={"token": token}, data=form(EXPORT))
    assert again.status == 400 and "no longer works" in await again.text()

    # A second export replaces the first on disk.
    second = await client.post("/connect/apple", params={"token": await link(pool, user_id)}, data=form(EXPORT))
    assert second.status == 200
    name = await pool.fetchval("SELECT settings->>'export' FROM connections WHERE id = $1", row["id"])
    assert name != row["settings"]["export"] and uploads(apple) == [name]


async def test_expired_unknown_and_other_providers_links_are_refused(
    client: TestClient, clinic: Tenant, pool: asyncpg.Pool, apple: AppleHealth
) -> None:
    user_id = await make_user(client, clinic, "apple-refused")
    expired = await link(pool, user_id)
    await pool.execute("UPDATE connect_links SET expires_at = now() - interval '1 second' WHERE user_id = $1", user_id)
    oura = await link(pool, user_id, "oura")

    for token in (expired, "not-a-token", oura, "x" * 300):
        assert (await client.get("/connect/apple", params={"token": token})).status == 400
        response = await client.post("/connect/apple", params={"token": token}, data=form(EXPORT))
        assert response.status == 400 and "no longer works" in await response.text()
    assert uploads(apple) == []
    assert await pool.fetchval("SELECT count(*) FROM connections WHERE user_id = $1", user_id) == 0


@pytest.fixture
async def small(pipeline_runtime: runtime.Runtime, pool: asyncpg.Pool) -> AsyncIterator[TestClient]:
    """The app taking exports of up to 200 kB."""
    app = make_app(pool, pipeline_runtime.broker)
    app[WEB_SETTINGS] = dataclasses.replace(SETTINGS, apple_health_max_upload_bytes=200_000)
    async with TestClient(TestServer(app)) as found:
        yield found


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
async def test_an_export_over_the_limit_is_refused_with_413_and_not_kept(
    small: TestClient, clinic: Tenant, pool: asyncpg.Pool, apple: AppleHealth, chunked: bool
) -> None:
    user_id = await make_user(small, clinic, f"apple-big-{chunked}")
    big = export_zip(os.urandom(1_000_000))  # random bytes do not compress

    response = await small.post(
        "/connect/apple", params={"token": await link(pool, user_id)}, data=form(big), chunked=chunked or None
    )
    assert response.status == 413 and "too large" in await response.text()
    assert uploads(apple) == []
    assert await pool.fetchval("SELECT count(*) FROM connections WHERE user_id = $1", user_id) == 0


@pytest.mark.parametrize(
    ("content", "field", "reason"),
    [
        (b"<HealthData/>", "export", "not a zip"),
        (b"PK\x03\x04 but not really a zip at all", "export", "not a zip"),
        (export_zip(b"<x/>", member="notes/readme.xml"), "export", "no export.xml"),
        (EXPORT, "file", "No file arrived"),
    ],
    ids=["xml", "zip-magic-only", "zip-without-export", "wrong-field"],
)
async def test_anything_but_an_export_zip_is_refused_with_400(
    client: TestClient, clinic: Tenant, pool: asyncpg.Pool, apple: AppleHealth, content: bytes, field: str, reason: str
) -> None:
    user_id = await make_user(client, clinic, f"apple-bad-{reason[:6]}-{field}")
    response = await client.post(
        "/connect/apple", params={"token": await link(pool, user_id)}, data=form(content, field=field)
    )
    assert response.status == 400 and reason in await response.text()
    assert uploads(apple) == []


async def test_a_body_that_is_not_multipart_is_refused_with_400(
    client: TestClient, clinic: Tenant, pool: asyncpg.Pool, apple: AppleHealth
) -> None:
    user_id = await make_user(client, clinic, "apple-raw")
    response = await client.post("/connect/apple", params={"token": await link(pool, user_id)}, data=EXPORT)
    assert response.status == 400 and "No file arrived" in await response.text()


async def test_the_workers_import_an_upload_and_hand_the_run_to_analytics(
    client: TestClient, clinic: Tenant, pool: asyncpg.Pool, apple: AppleHealth, worker: dramatiq.Worker
) -> None:
    user_id = await make_user(client, clinic, "apple-worker")
    now = datetime.now(UTC).replace(microsecond=0)
    rates = [record("RestingHeartRate", 50 + d % 5, "count/min", now - timedelta(days=d, hours=1)) for d in range(40)]
    upload = export_zip(export_xml(*rates))

    done = await client.post("/connect/apple", params={"token": await link(pool, user_id)}, data=form(upload))
    assert done.status == 200

    query = "SELECT r.* FROM sync_runs r JOIN connections c ON c.id = r.connection_id WHERE c.user_id = $1"
    run = await eventually(
        lambda: pool.fetchrow(query + " AND r.analysed_at IS NOT NULL", user_id), what="an analysed import run"
    )
    assert (run["trigger"], run["status"], run["rows_written"], run["rows_invalid"]) == ("import", "completed", 40, 0)
    days = await pool.fetchval(
        "SELECT count(*) FROM daily_stats WHERE user_id = $1 AND metric = 'resting_heart_rate'", user_id
    )
    assert days >= 30  # the analytics run covered the imported history, not just today
    audit = await pool.fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'wearable_sync' AND subject_id = $1", run["id"]
    )
    assert audit == 1


async def test_an_integrator_can_hand_out_the_upload_page_through_the_api(
    client: TestClient, clinic: Tenant, apple: AppleHealth
) -> None:
    user_id = await make_user(client, clinic, "apple-api")
    response = await client.post(
        f"/v1/users/{user_id}/connect-links", json={"provider": "apple_health"}, headers=clinic.auth("write")
    )
    assert response.status == 201
    url = urlsplit((await response.json())["url"])
    assert url.path == "/connect/apple"
    page = await client.get(f"{url.path}?{url.query}")
    assert page.status == 200 and 'name="export"' in await page.text()
