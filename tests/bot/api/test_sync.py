"""Sync on demand and sync-run status: tenant-checked through connection and user."""

from __future__ import annotations

import asyncio

import asyncpg
import dramatiq
from aiohttp.test_utils import TestClient

from tests.bot.api.conftest import Tenant, make_user


async def _simulator(api: TestClient, tenant: Tenant, user_id: int) -> tuple[int, int]:
    created = await (
        await api.post(f"/v1/users/{user_id}/connections", json={"provider": "simulator"}, headers=tenant.auth())
    ).json()
    return created["connection"]["id"], created["sync_run_id"]


async def test_a_sync_is_202_with_the_run_and_an_open_run_is_not_doubled(
    api: TestClient, clinic: Tenant, pool: asyncpg.Pool
) -> None:
    user_id = await make_user(api, clinic)
    connection_id, initial = await _simulator(api, clinic, user_id)
    await pool.execute("UPDATE sync_runs SET status = 'completed' WHERE id = $1", initial)
    url = f"/v1/users/{user_id}/connections/{connection_id}/sync"

    first = await api.post(url, headers=clinic.auth("write"))
    second = await api.post(url, headers=clinic.auth("write"))

    assert first.status == 202 and second.status == 202
    run_id = (await first.json())["sync_run_id"]
    assert (await second.json())["sync_run_id"] == run_id
    assert await pool.fetchval("SELECT trigger FROM sync_runs WHERE id = $1", run_id) == "manual"
    by_source = await api.post(f"/v1/users/{user_id}/sync", json={"source": "simulator"}, headers=clinic.auth("write"))
    assert by_source.status == 202 and (await by_source.json())["sync_run_id"] == run_id


async def test_sync_by_source_is_404_without_that_connection_and_409_when_revoked(
    api: TestClient, clinic: Tenant
) -> None:
    user_id = await make_user(api, clinic)
    url = f"/v1/users/{user_id}/sync"
    assert (await api.post(url, json={"source": "oura"}, headers=clinic.auth())).status == 404
    assert (await api.post(url, json={"source": 1}, headers=clinic.auth())).status == 422
    connection_id, _ = await _simulator(api, clinic, user_id)
    await api.delete(f"/v1/users/{user_id}/connections/{connection_id}", headers=clinic.auth())
    assert (await api.post(url, json={"source": "simulator"}, headers=clinic.auth())).status == 409
    again = await api.post(f"/v1/users/{user_id}/connections/{connection_id}/sync", headers=clinic.auth())
    assert again.status == 409


async def test_scopes_and_tenants_are_checked(api: TestClient, clinic: Tenant, other: Tenant) -> None:
    user_id = await make_user(api, clinic)
    connection_id, run_id = await _simulator(api, clinic, user_id)
    url = f"/v1/users/{user_id}/connections/{connection_id}/sync"
    assert (await api.post(url, headers=clinic.auth("read"))).status == 403
    assert (await api.post(url, headers=other.auth())).status == 404
    assert (await api.get(f"/v1/sync-runs/{run_id}", headers=other.auth())).status == 404
    assert (await api.get(f"/v1/sync-runs/{run_id}", headers=clinic.auth("read"))).status == 200
    theirs = await make_user(api, other, "theirs")
    assert (await api.post(f"/v1/users/{theirs}/connections/{connection_id}/sync", headers=other.auth())).status == 404


async def test_a_run_reports_its_status_and_counts_once_the_worker_has_synced(
    api: TestClient, clinic: Tenant, worker: dramatiq.Worker
) -> None:
    user_id = await make_user(api, clinic)
    _, run_id = await _simulator(api, clinic, user_id)
    run: dict[str, object] = {}
    for _ in range(300):
        run = await (await api.get(f"/v1/sync-runs/{run_id}", headers=clinic.auth("read"))).json()
        if run["status"] in ("completed", "failed"):
            break
        await asyncio.sleep(0.1)
    assert run["status"] == "completed", run
    assert isinstance(run["rows_written"], int) and run["rows_written"] > 0
    assert run["trigger"] == "initial" and run["user_id"] == user_id and run["duration_ms"] is not None
