"""Enrolling a person Junction already knows, as a junction or a libre connection."""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from pipeline.providers import PROVIDERS
from pipeline.providers.junction import Junction
from pipeline.providers.libre import Libre
from tests.bot.api.conftest import Tenant, error_of, make_user
from tests.fakes.junction import FakeJunction


@pytest.fixture(scope="module")
def fake_junction() -> Iterator[FakeJunction]:
    server = FakeJunction(api_key="sk_us_key").start()
    yield server
    server.stop()


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch, fake_junction: FakeJunction) -> None:
    env = fake_junction.env()
    monkeypatch.setitem(PROVIDERS, "junction", Junction.from_env(env))
    monkeypatch.setitem(PROVIDERS, "libre", Libre.from_env(env))


async def test_a_libre_enrolment_connects_at_once_with_the_junction_user_and_starts_the_initial_sync(
    api: TestClient, clinic: Tenant, pool: asyncpg.Pool, configured: None
) -> None:
    user_id = await make_user(api, clinic)
    body = {"provider": "libre", "junction_user_id": "jn-5e1f", "timezone": "Europe/Paris"}

    response = await api.post(f"/v1/users/{user_id}/connections", json=body, headers=clinic.auth("write"))

    assert response.status == 201
    created = await response.json()
    assert created["connection"]["provider"] == "libre"
    assert created["connection"]["settings"] == {"user_id": "jn-5e1f", "timezone": "Europe/Paris"}
    row = await pool.fetchrow("SELECT provider_user_id FROM connections WHERE id = $1", created["connection"]["id"])
    assert row["provider_user_id"] == "jn-5e1f"  # so Junction's pushes find it
    run = await pool.fetchrow("SELECT trigger, connection_id FROM sync_runs WHERE id = $1", created["sync_run_id"])
    assert (run["trigger"], run["connection_id"]) == ("initial", created["connection"]["id"])


async def test_a_bad_enrolment_gets_a_422_for_its_field(api: TestClient, clinic: Tenant, configured: None) -> None:
    user_id = await make_user(api, clinic)
    cases = [
        ({"provider": "junction", "junction_user_id": "  "}, "junction_user_id"),
        ({"provider": "junction", "junction_user_id": "x" * 129}, "junction_user_id"),
        ({"provider": "libre", "junction_user_id": "jn-1", "timezone": "Mars/Olympus"}, "timezone"),
        ({"provider": "oura", "junction_user_id": "jn-1"}, "provider"),
        ({"provider": "junction", "junction_user_id": "jn-1", "scenario": "fever"}, "scenario"),
    ]
    for body, field in cases:
        response = await api.post(f"/v1/users/{user_id}/connections", json=body, headers=clinic.auth("write"))
        assert response.status == 422, body
        assert (await error_of(response))["details"]["field"] == field, body


async def test_without_an_api_key_an_enrolment_is_a_409(api: TestClient, clinic: Tenant) -> None:
    assert not PROVIDERS["junction"].available  # the suite's registry has no JUNCTION_API_KEY
    user_id = await make_user(api, clinic)
    body = {"provider": "junction", "junction_user_id": "jn-1"}
    response = await api.post(f"/v1/users/{user_id}/connections", json=body, headers=clinic.auth("write"))
    assert response.status == 409 and (await error_of(response))["code"] == "provider_unavailable"


async def test_without_a_junction_user_id_the_person_gets_a_junction_user_and_a_link_url(
    api: TestClient, clinic: Tenant, pool: asyncpg.Pool, configured: None, fake_junction: FakeJunction
) -> None:
    user_id = await make_user(api, clinic)

    response = await api.post(
        f"/v1/users/{user_id}/connections", json={"provider": "junction"}, headers=clinic.auth("write")
    )

    assert response.status == 201
    created = await response.json()
    junction_user = created["connection"]["settings"]["user_id"]
    assert fake_junction.users[junction_user].client_user_id == f"cb-u{user_id}"
    assert created["link_url"].startswith(fake_junction.url + "/link?token=")
    row = await pool.fetchrow("SELECT provider_user_id FROM connections WHERE id = $1", created["connection"]["id"])
    assert row["provider_user_id"] == junction_user
    listed = await api.get(f"/v1/users/{user_id}/connections", headers=clinic.auth("read"))
    assert "link?token=" not in await listed.text()  # the one-time URL is handed out once


async def test_a_junction_that_refuses_the_key_is_a_502_and_connects_nothing(
    api: TestClient, clinic: Tenant, pool: asyncpg.Pool, fake_junction: FakeJunction, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(PROVIDERS, "junction", Junction.from_env(fake_junction.env() | {"JUNCTION_API_KEY": "sk_x"}))
    user_id = await make_user(api, clinic)

    response = await api.post(
        f"/v1/users/{user_id}/connections", json={"provider": "junction"}, headers=clinic.auth("write")
    )

    assert response.status == 502 and (await error_of(response))["code"] == "provider_refused"
    assert await pool.fetchval("SELECT count(*) FROM connections WHERE user_id = $1", user_id) == 0
