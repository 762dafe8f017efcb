"""Enrolling a person Junction already knows, as a junction or a libre connection."""

from __future__ import annotations

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from pipeline.providers import PROVIDERS
from pipeline.providers.junction import Junction, Libre
from tests.bot.api.conftest import Tenant, error_of, make_user


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"JUNCTION_API_KEY": "sk_us_key"}
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


async def test_a_bad_enrolment_is_a_422_naming_the_field(api: TestClient, clinic: Tenant, configured: None) -> None:
    user_id = await make_user(api, clinic)
    cases = [
        ({"provider": "junction"}, "junction_user_id"),
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
