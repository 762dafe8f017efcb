"""/connect for Junction and Libre: the link's page leads on to Junction Link, never to OAuth."""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from db.connections import load
from pipeline import runtime
from pipeline.providers import PROVIDERS
from pipeline.providers.junction import Junction
from pipeline.providers.libre import Libre
from tests.bot.api.conftest import Tenant, make_user
from tests.bot.web.test_oauth import confirm_form, new_link
from tests.fakes.junction import FakeJunction


@pytest.fixture(scope="module")
def fake_junction() -> Iterator[FakeJunction]:
    server = FakeJunction(api_key="sk_us_link_key").start()
    yield server
    server.stop()


@pytest.fixture
def junction(fake_junction: FakeJunction, monkeypatch: pytest.MonkeyPatch) -> Junction:
    provider = Junction.from_env(fake_junction.env())
    monkeypatch.setitem(PROVIDERS, "junction", provider)
    monkeypatch.setitem(PROVIDERS, "libre", Libre.from_env(fake_junction.env()))
    return provider


async def test_a_libre_link_makes_the_junction_user_the_connection_and_a_junction_link_page(
    client: TestClient,
    clinic: Tenant,
    pool: asyncpg.Pool,
    pipeline_runtime: runtime.Runtime,
    fake_junction: FakeJunction,
    junction: Junction,
) -> None:
    user_id = await make_user(client, clinic, "libre-link")
    link = await new_link(client, clinic, user_id, "libre")

    opened = await client.get(link, allow_redirects=False)
    assert opened.status == 200 and "Junction Link" in await opened.text()
    assert "form-action 'self';" in opened.headers["Content-Security-Policy"]
    assert not fake_junction.link_requests or fake_junction.link_requests[-1].get("user_id") is None  # nothing yet

    form = await confirm_form(client, link)
    pressed = await client.post("/connect/start", data=form, allow_redirects=False)

    assert pressed.status == 200 and "Location" not in pressed.headers
    made = next(u for u in fake_junction.users.values() if u.client_user_id == f"cb-u{user_id}")
    assert fake_junction.link_requests[-1] == {
        "user_id": made.user_id,
        "filter_on_providers": ["abbott_libreview", "freestyle_libre"],
    }
    assert f'<a href="{fake_junction.url}/link?token=' in await pressed.text()
    row = await pool.fetchrow(
        "SELECT id, provider_user_id FROM connections WHERE user_id = $1 AND provider = 'libre'", user_id
    )
    assert row["provider_user_id"] == made.user_id  # Junction's pushes find it
    async with pool.acquire() as conn:
        connection = await load(conn, row["id"])
    assert connection is not None and connection.tokens(pipeline_runtime.keyring)["user_id"] == made.user_id
    runs = await pool.fetch("SELECT trigger FROM sync_runs WHERE connection_id = $1", row["id"])
    assert [r["trigger"] for r in runs] == ["initial"]

    replayed = await client.post("/connect/start", data=form, allow_redirects=False)
    assert replayed.status == 400


async def test_a_junction_that_refuses_our_key_is_an_error_page_and_no_connection(
    client: TestClient, clinic: Tenant, pool: asyncpg.Pool, fake_junction: FakeJunction, junction: Junction,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    user_id = await make_user(client, clinic, "junction-refused")
    link = await new_link(client, clinic, user_id, "junction")
    form = await confirm_form(client, link)
    monkeypatch.setitem(PROVIDERS, "junction", Junction.from_env(fake_junction.env() | {"JUNCTION_API_KEY": "x"}))

    pressed = await client.post("/connect/start", data=form, allow_redirects=False)

    assert pressed.status == 502 and "Could not connect Junction" in await pressed.text()
    assert await pool.fetchval("SELECT count(*) FROM connections WHERE user_id = $1", user_id) == 0
