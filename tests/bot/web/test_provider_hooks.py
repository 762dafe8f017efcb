"""POST /webhooks/providers/{provider}: signed pushes become webhook syncs of the right connection."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from db import connect_links, sync_runs
from pipeline import runtime
from pipeline.providers import PROVIDERS
from pipeline.providers.whoop import Whoop
from tests.bot.api.conftest import Tenant, error_of, make_user
from tests.bot.web.conftest import SETTINGS
from tests.fakes.oura import FakeOura

WHOOP_URL, OURA_URL, WITHINGS_URL = (f"/webhooks/providers/{p}" for p in ("whoop", "oura", "withings"))


def whoop_headers(body: bytes, secret: str, at: float | None = None) -> dict[str, str]:
    stamp = str(int((time.time() if at is None else at) * 1000))
    digest = hmac.new(secret.encode(), stamp.encode() + body, hashlib.sha256).digest()
    return {
        "Content-Type": "application/json",
        "X-WHOOP-Signature": base64.b64encode(digest).decode(),
        "X-WHOOP-Signature-Timestamp": stamp,
    }


def oura_headers(body: bytes, secret: str) -> dict[str, str]:
    stamp = str(int(time.time()))
    signature = hmac.new(secret.encode(), stamp.encode() + body, hashlib.sha256).hexdigest().upper()
    return {"Content-Type": "application/json", "x-oura-signature": signature, "x-oura-timestamp": stamp}


async def connect(
    pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime, user_id: int, provider: str, account: str
) -> int:
    async with pool.acquire() as conn:
        return await connect_links.record_connection(
            conn,
            pipeline_runtime.keyring,
            user_id=user_id,
            provider=provider,
            tokens={"access_token": "at"},
            provider_user_id=account,
        )


async def webhook_runs(pool: asyncpg.Pool, connection_id: int) -> int:
    query = "SELECT count(*) FROM sync_runs WHERE connection_id = $1 AND trigger = 'webhook'"
    count: int = await pool.fetchval(query, connection_id)
    return count


def whoop_body(account: str, kind: str = "recovery.updated") -> bytes:
    return json.dumps({"user_id": int(account), "id": "c-1", "type": kind, "trace_id": "t"}).encode()


async def test_a_signed_whoop_push_requests_one_webhook_sync_of_the_account_s_connection(
    client: TestClient, clinic: Tenant, pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime, whoop: Whoop
) -> None:
    assert whoop.oauth is not None
    user_id = await make_user(client, clinic, "whoop-push")
    connection_id = await connect(pool, pipeline_runtime, user_id, "whoop", "880001")
    body = whoop_body("880001")

    response = await client.post(WHOOP_URL, data=body, headers=whoop_headers(body, whoop.oauth.client_secret))

    assert response.status == 202 and (await response.json())["sync_runs"] == 1
    assert await webhook_runs(pool, connection_id) == 1


async def test_a_burst_of_pushes_adds_no_run_while_one_waits(
    client: TestClient, clinic: Tenant, pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime, whoop: Whoop
) -> None:
    assert whoop.oauth is not None
    user_id = await make_user(client, clinic, "whoop-burst")
    connection_id = await connect(pool, pipeline_runtime, user_id, "whoop", "880002")
    async with pool.acquire() as conn:
        await sync_runs.create(conn, connection_id, "webhook")  # pending, never enqueued
    for kind in ("sleep.updated", "recovery.updated", "workout.deleted"):
        body = whoop_body("880002", kind)
        response = await client.post(WHOOP_URL, data=body, headers=whoop_headers(body, whoop.oauth.client_secret))
        assert response.status == 202 and (await response.json())["sync_runs"] == 0
    assert await webhook_runs(pool, connection_id) == 1


@pytest.mark.parametrize("fault", ["tampered", "stale", "wrong secret", "unsigned"])
async def test_a_whoop_push_that_is_not_genuine_is_401_and_syncs_nothing(
    client: TestClient,
    clinic: Tenant,
    pool: asyncpg.Pool,
    pipeline_runtime: runtime.Runtime,
    whoop: Whoop,
    fault: str,
) -> None:
    assert whoop.oauth is not None
    user_id = await make_user(client, clinic, f"whoop-{fault[:5]}")
    account = str(880010 + len(fault))
    connection_id = await connect(pool, pipeline_runtime, user_id, "whoop", account)
    body = whoop_body(account)
    secret = "not-the-secret" if fault == "wrong secret" else whoop.oauth.client_secret
    headers = whoop_headers(body, secret, at=time.time() - 600 if fault == "stale" else None)
    sent = body.replace(b"recovery", b"workout") if fault == "tampered" else body
    if fault == "unsigned":
        headers = {"Content-Type": "application/json"}

    response = await client.post(WHOOP_URL, data=sent, headers=headers)

    assert response.status == 401
    assert (await error_of(response))["code"] == "bad_signature"
    assert await webhook_runs(pool, connection_id) == 0


async def test_an_unknown_account_is_acknowledged_and_logged(
    client: TestClient, whoop: Whoop, caplog: pytest.LogCaptureFixture
) -> None:
    assert whoop.oauth is not None
    body = whoop_body("999999999")
    with caplog.at_level(logging.INFO, logger="bot.web.provider_hooks"):
        response = await client.post(WHOOP_URL, data=body, headers=whoop_headers(body, whoop.oauth.client_secret))
    assert response.status == 202 and (await response.json())["sync_runs"] == 0
    assert "no active connection" in caplog.text


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"user_id": 1, "type": "nap.started"}', b"\xff"])
async def test_a_signed_but_malformed_body_is_a_json_400(client: TestClient, whoop: Whoop, body: bytes) -> None:
    assert whoop.oauth is not None
    response = await client.post(WHOOP_URL, data=body, headers=whoop_headers(body, whoop.oauth.client_secret))
    assert response.status == 400
    assert (await error_of(response))["code"] == "malformed"


async def test_oura_answers_its_handshake_and_syncs_on_a_signed_event(
    client: TestClient, clinic: Tenant, pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime, fake_oura: FakeOura
) -> None:
    token = SETTINGS.oura_verification_token
    handshake = await client.get(OURA_URL, params={"verification_token": token or "", "challenge": "c-42"})
    assert handshake.status == 200 and await handshake.json() == {"challenge": "c-42"}
    refused = await client.get(OURA_URL, params={"verification_token": "guess", "challenge": "c-42"})
    assert refused.status == 401 and "c-42" not in await refused.text()
    assert (await client.get(WHOOP_URL, params={"challenge": "x"})).status == 405

    user_id = await make_user(client, clinic, "oura-push")
    connection_id = await connect(pool, pipeline_runtime, user_id, "oura", "oura-user-1")
    body = json.dumps({"event_type": "update", "data_type": "sleep", "object_id": "s1", "user_id": "oura-user-1"})
    signed = oura_headers(body.encode(), fake_oura.client_secret)
    assert (await client.post(OURA_URL, data=body, headers=signed)).status == 202
    assert await webhook_runs(pool, connection_id) == 1
    forged = oura_headers(body.encode(), "guess")
    assert (await client.post(OURA_URL, data=body, headers=forged)).status == 401


async def test_withings_notifications_carry_our_token_and_get_a_200(
    client: TestClient, clinic: Tenant, pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime
) -> None:
    user_id = await make_user(client, clinic, "withings-push")
    connection_id = await connect(pool, pipeline_runtime, user_id, "withings", "12345")
    form = {"userid": "12345", "appli": "1", "startdate": "1530576000", "enddate": "1530698753"}
    token = SETTINGS.withings_notify_token or ""

    assert (await client.post(WITHINGS_URL, params={"token": "guess"}, data=form)).status == 401
    assert (await client.post(WITHINGS_URL, data=form)).status == 401
    assert await webhook_runs(pool, connection_id) == 0
    response = await client.post(WITHINGS_URL, params={"token": token}, data=form)
    assert response.status == 200 and (await response.json())["sync_runs"] == 1
    # Withings moves the callback URL's parameters into the form: the token is found there too.
    await pool.execute("UPDATE sync_runs SET status = 'completed' WHERE connection_id = $1", connection_id)
    assert (await client.post(WITHINGS_URL, data=form | {"token": token})).status == 200
    assert await webhook_runs(pool, connection_id) == 2
    malformed = await client.post(WITHINGS_URL, params={"token": token}, data={"appli": "1"})
    assert malformed.status == 400


async def test_a_provider_without_pushes_is_404(client: TestClient) -> None:
    for provider in ("dexcom", "simulator", "fitbit"):
        response = await client.post(f"/webhooks/providers/{provider}", data=b"{}")
        assert response.status == 404
        await error_of(response)


async def test_an_unconfigured_provider_cannot_be_verified(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PROVIDERS, "whoop", Whoop())  # no client secret
    body = whoop_body("1")
    response = await client.post(WHOOP_URL, data=body, headers=whoop_headers(body, "anything"))
    assert response.status == 401
