"""Users: create, page, read, change, scopes, tenant isolation, and the GDPR erase."""

from __future__ import annotations

import asyncpg
from aiohttp.test_utils import TestClient

from tests.bot.api.conftest import Tenant, error_of, make_user


async def test_a_created_user_reads_back_and_defaults_to_utc(api: TestClient, clinic: Tenant) -> None:
    response = await api.post(
        "/v1/users", json={"external_id": "ehr-1", "display_name": "Ada"}, headers=clinic.auth("write")
    )
    assert response.status == 201
    created = await response.json()
    assert created["timezone"] == "UTC" and created["external_id"] == "ehr-1"

    fetched = await api.get(f"/v1/users/{created['id']}", headers=clinic.auth("read"))
    assert await fetched.json() == created


async def test_invalid_fields_are_422_naming_the_field_never_500(api: TestClient, clinic: Tenant) -> None:
    cases = [
        ({"external_id": "x", "display_name": "y", "timezone": "Mars/Olympus"}, "timezone"),
        ({"external_id": "x", "display_name": "y", "timezone": 5}, "timezone"),
        ({"display_name": "y"}, "external_id"),
        ({"external_id": "  ", "display_name": "y"}, "external_id"),
        ({"external_id": "a\x00b", "display_name": "y"}, "external_id"),
        ({"external_id": "\ud800", "display_name": "y"}, "external_id"),
        ({"external_id": "x" * 201, "display_name": "y"}, "external_id"),
        ({"external_id": "x", "display_name": "y", "nickname": "z"}, "nickname"),
    ]
    for body, field in cases:
        response = await api.post("/v1/users", json=body, headers=clinic.auth("write"))
        assert response.status == 422, body
        assert (await error_of(response))["details"] == {"field": field}


async def test_a_body_that_is_not_a_json_object_is_a_clear_4xx(api: TestClient, clinic: Tenant) -> None:
    headers = clinic.auth("write")
    assert (await api.post("/v1/users", data="x=1", headers=headers)).status == 415
    bad = await api.post("/v1/users", data="{", headers=headers | {"Content-Type": "application/json"})
    assert bad.status == 400 and (await error_of(bad))["code"] == "malformed_json"
    huge = await api.post("/v1/users", data="1" * 5000, headers=headers | {"Content-Type": "application/json"})
    assert huge.status == 400
    assert (await api.post("/v1/users", json=[1], headers=headers)).status == 400


async def test_a_duplicate_external_id_is_409(api: TestClient, clinic: Tenant) -> None:
    await make_user(api, clinic, "dup")
    response = await api.post("/v1/users", json={"external_id": "dup", "display_name": "B"}, headers=clinic.auth())
    assert response.status == 409


async def test_users_page_by_cursor_without_gaps_or_repeats(api: TestClient, clinic: Tenant) -> None:
    made = [await make_user(api, clinic, f"page-{i}") for i in range(5)]
    seen: list[int] = []
    url = "/v1/users?limit=2"
    while True:
        page = await (await api.get(url, headers=clinic.auth("read"))).json()
        assert len(page["data"]) <= 2
        seen += [u["id"] for u in page["data"]]
        if page["next_cursor"] is None:
            break
        url = f"/v1/users?limit=2&cursor={page['next_cursor']}"
    assert seen == made
    for query in ("limit=0", "limit=1001", "limit=x", "cursor=!!", "cursor=WzFd%3D%3Dx"):
        assert (await api.get(f"/v1/users?{query}", headers=clinic.auth("read"))).status == 422, query


async def test_patch_changes_only_the_given_fields(api: TestClient, clinic: Tenant) -> None:
    user_id = await make_user(api, clinic, "patch-me")
    response = await api.patch(f"/v1/users/{user_id}", json={"timezone": "Europe/London"}, headers=clinic.auth("write"))
    assert response.status == 200
    assert (await response.json())["timezone"] == "Europe/London"
    assert (await response.json())["external_id"] == "patch-me"
    bad = await api.patch(f"/v1/users/{user_id}", json={"display_name": ""}, headers=clinic.auth("write"))
    assert bad.status == 422


async def test_scopes_are_enforced_per_route(api: TestClient, clinic: Tenant) -> None:
    user_id = await make_user(api, clinic, "scoped")
    body = {"external_id": "n", "display_name": "n"}
    assert (await api.post("/v1/users", json=body, headers=clinic.auth("read"))).status == 403
    assert (await api.patch(f"/v1/users/{user_id}", json={}, headers=clinic.auth("read"))).status == 403
    assert (await api.delete(f"/v1/users/{user_id}", headers=clinic.auth("write"))).status == 403
    assert (await api.get(f"/v1/users/{user_id}", headers=clinic.auth("read"))).status == 200


async def test_another_tenant_s_user_is_404_on_every_verb(api: TestClient, clinic: Tenant, other: Tenant) -> None:
    user_id = await make_user(api, clinic, "mine")
    assert (await api.get(f"/v1/users/{user_id}", headers=other.auth())).status == 404
    assert (await api.patch(f"/v1/users/{user_id}", json={"display_name": "x"}, headers=other.auth())).status == 404
    assert (await api.delete(f"/v1/users/{user_id}", headers=other.auth())).status == 404
    assert user_id not in [u["id"] for u in (await (await api.get("/v1/users", headers=other.auth())).json())["data"]]
    for bad in ("abc", "0", "99999999999999999999", "-1"):
        assert (await api.get(f"/v1/users/{bad}", headers=clinic.auth())).status == 404


async def _user_references(pool: asyncpg.Pool) -> list[tuple[str, str]]:
    """Every (table, column) that can hold a user id: foreign keys to users, and any column
    named like one, so a new table without a foreign key is walked too."""
    rows = await pool.fetch(
        """
        SELECT c.conrelid::regclass::text AS tab, a.attname AS col
          FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)
         WHERE c.contype = 'f' AND c.confrelid = 'users'::regclass
        UNION
        SELECT k.table_name, k.column_name FROM information_schema.columns k
          JOIN information_schema.tables t USING (table_schema, table_name)
         WHERE k.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
           AND k.column_name IN ('user_id', 'patient_id', 'owner_user_id')
        """
    )
    return sorted((r["tab"], r["col"]) for r in rows)


async def _fill(pool: asyncpg.Pool, tenant_id: int, user_id: int) -> None:
    """A row for the user in every table that holds user data."""
    async with pool.acquire() as conn:
        connection_id = await conn.fetchval(
            "INSERT INTO connections (user_id, provider) VALUES ($1, 'simulator') RETURNING id", user_id
        )
        run_id = await conn.fetchval(
            "INSERT INTO sync_runs (connection_id, trigger) VALUES ($1, 'manual') RETURNING id", connection_id
        )
        await conn.execute(
            "INSERT INTO metrics (user_id, provider, metric, recorded_at, value, unit, connection_id)"
            " VALUES ($1, 'simulator', 'steps', now(), 10, 'count', $2)",
            user_id,
            connection_id,
        )
        await conn.execute(
            "INSERT INTO sessions (user_id, provider, kind, started_at, ended_at)"
            " VALUES ($1, 'simulator', 'sleep', now() - interval '8 hours', now())",
            user_id,
        )
        await conn.execute(
            "INSERT INTO health_scores (user_id, day, domain, score, contributors)"
            " VALUES ($1, current_date, 'sleep', 80, '{}')",
            user_id,
        )
        await conn.execute("INSERT INTO daily_stats VALUES ($1, 'steps', current_date, 1, 1, 1, 1, 1, 1)", user_id)
        await conn.execute(
            "INSERT INTO correlations VALUES ($1, 'steps', 'hrv_rmssd', 0, 30, 0.5, 0.5, 0.01, 0.02, 0.2, 0.7, 'x',"
            " current_date)",
            user_id,
        )
        await conn.execute("INSERT INTO cgm_summaries VALUES ($1, current_date, 14, '{}')", user_id)
        alert_id = await conn.fetchval(
            "INSERT INTO alerts (user_id, category, severity, title, body, dedupe_key)"
            " VALUES ($1, 'vitals', 'warning', 't', 'b', $2) RETURNING id",
            user_id,
            f"gdpr-{user_id}",
        )
        channel_id = await conn.fetchval(
            "INSERT INTO notification_channels (tenant_id, kind, label, config_sealed) VALUES ($1, 'console', 'c', 'x')"
            " RETURNING id",
            tenant_id,
        )
        await conn.execute(
            "INSERT INTO notification_logs (alert_id, channel_id, attempt, status) VALUES ($1, $2, 1, 'delivered')",
            alert_id,
            channel_id,
        )
        await conn.execute(
            "INSERT INTO notification_rules (tenant_id, name, patient_id, owner_user_id) VALUES ($1, 'r', $2, $2)",
            tenant_id,
            user_id,
        )
        await conn.execute(
            "INSERT INTO silences (tenant_id, patient_id, ends_at, created_by)"
            " VALUES ($1, $2, now() + interval '1 day', 't')",
            tenant_id,
            user_id,
        )
        await conn.execute(
            "INSERT INTO reports (user_id, period_start, period_end) VALUES ($1, current_date - 7, current_date)",
            user_id,
        )
        await conn.execute(
            "INSERT INTO events (tenant_id, type, payload) VALUES ($1, 'sync.completed', $2)",
            tenant_id,
            {"type": "sync.completed", "data": {"user_id": user_id, "sync_run_id": run_id}},
        )
        await conn.execute(
            "INSERT INTO audit_events (tenant_id, actor, action, subject_type, subject_id, details)"
            " VALUES ($1, 'pipeline', 'wearable_sync', 'sync_run', $2, $3)",
            tenant_id,
            run_id,
            {"user_id": user_id},
        )


async def test_delete_erases_the_user_from_every_table_and_keeps_the_neighbours(
    api: TestClient, clinic: Tenant, pool: asyncpg.Pool
) -> None:
    doomed, neighbour = await make_user(api, clinic, "gdpr-doomed"), await make_user(api, clinic, "gdpr-stays")
    await _fill(pool, clinic.id, doomed)
    await _fill(pool, clinic.id, neighbour)
    connect = await api.post(f"/v1/users/{doomed}/connections", json={"provider": "oura"}, headers=clinic.auth())
    assert connect.status == 200  # an OAuth state row, bound to the user
    references = await _user_references(pool)
    assert ("metrics", "user_id") in references and ("silences", "patient_id") in references

    response = await api.delete(f"/v1/users/{doomed}", headers=clinic.auth("admin"))

    assert response.status == 204
    left = {f"{t}.{c}": await pool.fetchval(f"SELECT count(*) FROM {t} WHERE {c} = $1", doomed) for t, c in references}
    assert set(left.values()) == {0}, left
    assert await pool.fetchval("SELECT count(*) FROM users WHERE id = $1", doomed) == 0
    assert await pool.fetchval("SELECT count(*) FROM events WHERE payload::text LIKE $1", f'%"user_id": {doomed}%') == 0
    assert await pool.fetchval("SELECT count(*) FROM audit_events WHERE details ->> 'user_id' = $1", str(doomed)) == 0
    erased = await pool.fetchrow(
        "SELECT actor, details FROM audit_events WHERE action = 'user_erased' AND subject_id = $1", doomed
    )
    assert erased["details"] == {} and erased["actor"].startswith("api_key:")
    kept = {
        f"{t}.{c}": await pool.fetchval(f"SELECT count(*) FROM {t} WHERE {c} = $1", neighbour) for t, c in references
    }
    assert kept["metrics.user_id"] == 1 and kept["alerts.user_id"] == 1 and kept["silences.patient_id"] == 1
    assert (await api.get(f"/v1/users/{doomed}", headers=clinic.auth())).status == 404
    assert (await api.delete(f"/v1/users/{doomed}", headers=clinic.auth())).status == 404
