"""POST /webhooks/providers/junction: Svix-signed Junction pushes become webhook syncs."""

from __future__ import annotations

import logging
import time

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from pipeline import runtime
from pipeline.providers import PROVIDERS
from pipeline.providers.junction import Junction
from pipeline.providers.libre import Libre
from tests.bot.api.conftest import Tenant, error_of, make_user
from tests.bot.web.test_provider_hooks import connect, webhook_runs
from tests.pipeline.providers.test_junction import SECRET, event, signed

URL = "/webhooks/providers/junction"


@pytest.fixture
def junction(monkeypatch: pytest.MonkeyPatch) -> Junction:
    """Junction with a webhook secret, for this test only."""
    env = {"JUNCTION_API_KEY": "sk_us_key", "JUNCTION_WEBHOOK_SECRET": SECRET}
    provider = Junction.from_env(env)
    monkeypatch.setitem(PROVIDERS, "junction", provider)
    monkeypatch.setitem(PROVIDERS, "libre", Libre.from_env(env))
    return provider


async def test_a_signed_push_requests_a_webhook_sync_of_the_junction_user_s_connection(
    client: TestClient, clinic: Tenant, pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime, junction: Junction
) -> None:
    user_id = await make_user(client, clinic, "junction-push")
    connection_id = await connect(pool, pipeline_runtime, user_id, "junction", "jn-user-1")
    body = event("jn-user-1", "daily.data.sleep.created", "oura")

    response = await client.post(URL, data=body, headers=signed(body) | {"Content-Type": "application/json"})

    assert response.status == 202 and (await response.json())["sync_runs"] == 1
    assert await webhook_runs(pool, connection_id) == 1
    scope = await pool.fetchval("SELECT scope_only FROM sync_runs WHERE connection_id = $1", connection_id)
    assert scope == ["sleep"]  # the run reads what the push named


async def test_a_libre_glucose_push_syncs_the_libre_connection(
    client: TestClient, clinic: Tenant, pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime, junction: Junction
) -> None:
    user_id = await make_user(client, clinic, "libre-push")
    libre_id = await connect(pool, pipeline_runtime, user_id, "libre", "jn-user-2")
    body = event("jn-user-2")

    response = await client.post(URL, data=body, headers=signed(body))

    assert response.status == 202 and await webhook_runs(pool, libre_id) == 1


@pytest.mark.parametrize("fault", ["tampered", "stale", "wrong secret"])
async def test_a_push_that_is_not_genuine_is_401_and_syncs_nothing(
    client: TestClient,
    clinic: Tenant,
    pool: asyncpg.Pool,
    pipeline_runtime: runtime.Runtime,
    junction: Junction,
    fault: str,
) -> None:
    account = f"jn-{fault[:5]}"
    user_id = await make_user(client, clinic, f"junction-{fault[:5]}")
    connection_id = await connect(pool, pipeline_runtime, user_id, "junction", account)
    body = event(account, "daily.data.activity.created", "oura")
    secret = "whsec_" + "C" * 32 if fault == "wrong secret" else SECRET
    headers = signed(body, time.time() - 600 if fault == "stale" else None, secret)
    sent = body.replace(b"activity", b"workouts") if fault == "tampered" else body

    response = await client.post(URL, data=sent, headers=headers)

    assert response.status == 401 and (await error_of(response))["code"] == "bad_signature"
    assert await webhook_runs(pool, connection_id) == 0


async def test_an_unknown_junction_user_is_acknowledged_and_logged(
    client: TestClient, junction: Junction, caplog: pytest.LogCaptureFixture
) -> None:
    body = event("jn-nobody", "daily.data.sleep.created", "oura")
    with caplog.at_level(logging.INFO, logger="bot.web.provider_hooks"):
        response = await client.post(URL, data=body, headers=signed(body))
    assert response.status == 202 and (await response.json())["sync_runs"] == 0
    assert "no active connection" in caplog.text


async def test_a_signed_but_malformed_body_is_400_and_an_unset_secret_is_401(
    client: TestClient, junction: Junction, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = b'{"event_type": "daily.data.sleep.created"}'
    response = await client.post(URL, data=body, headers=signed(body))
    assert response.status == 400 and (await error_of(response))["code"] == "malformed"

    monkeypatch.setitem(PROVIDERS, "junction", Junction.from_env({"JUNCTION_API_KEY": "sk_us_key"}))
    good = event("jn-user-1")
    refused = await client.post(URL, data=good, headers=signed(good))
    assert refused.status == 401 and "JUNCTION_WEBHOOK_SECRET" in (await error_of(refused))["message"]
