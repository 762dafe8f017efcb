"""Connections: list without tokens, connect the simulator or start OAuth, disconnect."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import asyncpg
from aiohttp.test_utils import TestClient

from db import oauth_states
from tests.bot.api.conftest import Tenant, error_of, make_user


async def test_connecting_the_simulator_starts_an_initial_sync_and_lists_no_tokens(
    api: TestClient, clinic: Tenant, pool: asyncpg.Pool
) -> None:
    user_id = await make_user(api, clinic)
    response = await api.post(
        f"/v1/users/{user_id}/connections",
        json={"provider": "simulator", "scenario": "fever"},
        headers=clinic.auth("write"),
    )
    assert response.status == 201
    created = await response.json()
    assert created["connection"]["settings"]["scenarios"] == ["fever"]
    run = await pool.fetchrow("SELECT trigger, connection_id FROM sync_runs WHERE id = $1", created["sync_run_id"])
    assert run["trigger"] == "initial" and run["connection_id"] == created["connection"]["id"]
    event = await pool.fetchval(
        "SELECT payload FROM events WHERE tenant_id = $1 AND type = 'connection.created'", clinic.id
    )
    assert event["data"] == {"connection_id": created["connection"]["id"], "user_id": user_id, "provider": "simulator"}

    listed = await api.get(f"/v1/users/{user_id}/connections", headers=clinic.auth("read"))
    text = await listed.text()
    assert "token" not in text and "sim-at-" not in text
    assert [c["provider"] for c in (await listed.json())["data"]] == ["simulator"]


async def test_an_oauth_provider_returns_an_authorize_url_whose_state_is_bound_to_the_user(
    api: TestClient, clinic: Tenant, pool: asyncpg.Pool
) -> None:
    user_id = await make_user(api, clinic)
    response = await api.post(f"/v1/users/{user_id}/connections", json={"provider": "oura"}, headers=clinic.auth())
    assert response.status == 200
    query = parse_qs(urlsplit((await response.json())["authorize_url"]).query)
    assert query["redirect_uri"] == ["http://127.0.0.1:8080/oauth/oura/callback"]
    async with pool.acquire() as conn:
        assert await oauth_states.consume(conn, query["state"][0], "whoop") is None  # consumed, wrong provider
        again = await api.post(f"/v1/users/{user_id}/connections", json={"provider": "oura"}, headers=clinic.auth())
        state = parse_qs(urlsplit((await again.json())["authorize_url"]).query)["state"][0]
        bound = await oauth_states.consume(conn, state, "oura")
        assert bound is not None and bound.user_id == user_id
        assert await oauth_states.consume(conn, state, "oura") is None  # once only
    assert await pool.fetchval("SELECT count(*) FROM oauth_states WHERE user_id = $1", user_id) == 0


async def test_bad_providers_and_scenarios_are_422(api: TestClient, clinic: Tenant) -> None:
    user_id = await make_user(api, clinic)
    url = f"/v1/users/{user_id}/connections"
    for body in (
        {"provider": "fitbit"},
        {"provider": "ingest"},
        {"provider": "simulator", "scenario": "plague"},
        {"provider": "oura", "scenario": "fever"},
        {"provider": 3},
        {},
        {"provider": "simulator", "tokens": "x"},
    ):
        response = await api.post(url, json=body, headers=clinic.auth())
        assert response.status == 422, body
        await error_of(response)


async def test_delete_revokes_wipes_the_tokens_and_emits_an_event_once(
    api: TestClient, clinic: Tenant, pool: asyncpg.Pool
) -> None:
    user_id = await make_user(api, clinic)
    created = await (
        await api.post(f"/v1/users/{user_id}/connections", json={"provider": "simulator"}, headers=clinic.auth())
    ).json()
    connection_id = created["connection"]["id"]
    url = f"/v1/users/{user_id}/connections/{connection_id}"
    assert (await api.delete(url, headers=clinic.auth("read"))).status == 403
    assert (await api.delete(url, headers=clinic.auth("write"))).status == 204
    assert (await api.delete(url, headers=clinic.auth("write"))).status == 204
    row = await pool.fetchrow("SELECT status, tokens_sealed FROM connections WHERE id = $1", connection_id)
    assert row["status"] == "revoked" and row["tokens_sealed"] is None
    events = await pool.fetch(
        "SELECT payload FROM events WHERE type = 'connection.disconnected' AND tenant_id = $1", clinic.id
    )
    assert [e["payload"]["data"]["connection_id"] for e in events] == [connection_id]


async def test_another_tenant_s_user_or_connection_is_404(api: TestClient, clinic: Tenant, other: Tenant) -> None:
    user_id = await make_user(api, clinic)
    created = await (
        await api.post(f"/v1/users/{user_id}/connections", json={"provider": "simulator"}, headers=clinic.auth())
    ).json()
    connection_id = created["connection"]["id"]
    assert (await api.get(f"/v1/users/{user_id}/connections", headers=other.auth())).status == 404
    body = {"provider": "simulator"}
    assert (await api.post(f"/v1/users/{user_id}/connections", json=body, headers=other.auth())).status == 404
    assert (await api.delete(f"/v1/users/{user_id}/connections/{connection_id}", headers=other.auth())).status == 404
    theirs = await make_user(api, other, "theirs")
    assert (await api.delete(f"/v1/users/{theirs}/connections/{connection_id}", headers=other.auth())).status == 404
