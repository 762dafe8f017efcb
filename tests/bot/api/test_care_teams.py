"""Care teams over the API, their members and patients, and the permission questions the chat
front ends ask (db.care_teams.can_view_patient, can_act_on_alert)."""

from __future__ import annotations

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from db import alerts, care_teams
from db.alerts import NewAlert
from tests.bot.api.conftest import Tenant, error_of, make_user


async def new_team(api: TestClient, tenant: Tenant, name: str = "Cardiology", **fields: str) -> dict[str, object]:
    response = await api.post("/v1/care-teams", json={"name": name, **fields}, headers=tenant.auth("write"))
    assert response.status == 201, await response.text()
    found: dict[str, object] = await response.json()
    return found


async def test_a_team_is_created_read_renamed_and_deleted(api: TestClient, clinic: Tenant) -> None:
    created = await new_team(api, clinic, timezone="Europe/London")
    path = f"/v1/care-teams/{created['id']}"
    assert created["timezone"] == "Europe/London"
    assert await (await api.get(path, headers=clinic.auth("read"))).json() == created

    renamed = await api.patch(path, json={"name": "Cardio"}, headers=clinic.auth("write"))

    assert renamed.status == 200 and (await renamed.json())["name"] == "Cardio"
    assert (await renamed.json())["timezone"] == "Europe/London"
    assert (await api.delete(path, headers=clinic.auth("write"))).status == 204
    assert (await api.get(path, headers=clinic.auth("read"))).status == 404


async def test_invalid_teams_are_422_and_a_duplicate_name_409(api: TestClient, clinic: Tenant) -> None:
    await new_team(api, clinic, "Taken")
    for body, field in [({}, "name"), ({"name": ""}, "name"), ({"name": "x", "timezone": "Mars/Base"}, "timezone"),
                        ({"name": "x", "lead": 1}, "lead")]:  # fmt: skip
        response = await api.post("/v1/care-teams", json=body, headers=clinic.auth("write"))
        assert response.status == 422, body
        assert (await error_of(response))["details"] == {"field": field}
    duplicate = await api.post("/v1/care-teams", json={"name": "Taken"}, headers=clinic.auth("write"))
    assert duplicate.status == 409


async def test_members_are_added_with_a_role_changed_and_removed(api: TestClient, clinic: Tenant) -> None:
    team_id = (await new_team(api, clinic))["id"]
    nurse = await make_user(api, clinic, "nurse-1")
    members = f"/v1/care-teams/{team_id}/members"

    added = await api.post(members, json={"user_id": nurse, "role": "nurse"}, headers=clinic.auth("write"))

    assert added.status == 201
    assert (await added.json())["role"] == "nurse" and (await added.json())["display_name"] == "Patient nurse-1"
    changed = await api.patch(f"{members}/{nurse}", json={"role": "viewer"}, headers=clinic.auth("write"))
    assert changed.status == 200 and (await changed.json())["role"] == "viewer"
    listed = await (await api.get(members, headers=clinic.auth("read"))).json()
    assert [(m["user_id"], m["role"]) for m in listed["data"]] == [(nurse, "viewer")]
    for body in ({"user_id": nurse, "role": "surgeon"}, {"user_id": "1", "role": "nurse"}, {"role": "nurse"}):
        assert (await api.post(members, json=body, headers=clinic.auth("write"))).status == 422, body
    assert (await api.delete(f"{members}/{nurse}", headers=clinic.auth("write"))).status == 204
    assert (await api.delete(f"{members}/{nurse}", headers=clinic.auth("write"))).status == 404
    assert (await api.patch(f"{members}/{nurse}", json={"role": "nurse"}, headers=clinic.auth("write"))).status == 404


async def test_patients_are_listed_idempotently_and_removed(api: TestClient, clinic: Tenant) -> None:
    team_id = (await new_team(api, clinic))["id"]
    patient = await make_user(api, clinic, "pt-1")
    patients = f"/v1/care-teams/{team_id}/patients"

    for _ in range(2):
        added = await api.post(patients, json={"patient_id": patient}, headers=clinic.auth("write"))
        assert added.status == 201

    listed = await (await api.get(patients, headers=clinic.auth("read"))).json()
    assert [p["patient_id"] for p in listed["data"]] == [patient]
    assert (await api.delete(f"{patients}/{patient}", headers=clinic.auth("write"))).status == 204
    assert (await (await api.get(patients, headers=clinic.auth("read"))).json())["data"] == []


async def test_another_tenant_s_team_member_or_patient_is_404(api: TestClient, clinic: Tenant, other: Tenant) -> None:
    mine, theirs = (await new_team(api, clinic))["id"], (await new_team(api, other))["id"]
    their_user, my_user = await make_user(api, other, "theirs"), await make_user(api, clinic, "mine")
    write = clinic.auth("write")
    body = {"user_id": their_user, "role": "nurse"}
    assert (await api.post(f"/v1/care-teams/{mine}/members", json=body, headers=write)).status == 404
    assert (
        await api.post(f"/v1/care-teams/{mine}/patients", json={"patient_id": their_user}, headers=write)
    ).status == 404
    ours = {"user_id": my_user, "role": "nurse"}
    assert (await api.post(f"/v1/care-teams/{theirs}/members", json=ours, headers=write)).status == 404
    assert (await api.get(f"/v1/care-teams/{theirs}", headers=clinic.auth())).status == 404
    assert (await api.get(f"/v1/care-teams/{theirs}/members", headers=clinic.auth())).status == 404
    assert (await api.patch(f"/v1/care-teams/{theirs}", json={"name": "x"}, headers=write)).status == 404
    assert (await api.delete(f"/v1/care-teams/{theirs}", headers=write)).status == 404
    assert (await api.delete(f"/v1/care-teams/{theirs}/patients/{their_user}", headers=write)).status == 404
    listed = await (await api.get("/v1/care-teams", headers=clinic.auth("read"))).json()
    assert [t["id"] for t in listed["data"]] == [mine]


async def test_writes_need_write_and_teams_page(api: TestClient, clinic: Tenant) -> None:
    assert (await api.post("/v1/care-teams", json={"name": "x"}, headers=clinic.auth("read"))).status == 403
    ids = [(await new_team(api, clinic, f"t{i}"))["id"] for i in range(3)]
    assert (await api.delete(f"/v1/care-teams/{ids[0]}", headers=clinic.auth("read"))).status == 403
    body = {"user_id": await make_user(api, clinic), "role": "nurse"}
    assert (await api.post(f"/v1/care-teams/{ids[0]}/members", json=body, headers=clinic.auth("read"))).status == 403
    first = await (await api.get("/v1/care-teams?limit=2", headers=clinic.auth("read"))).json()
    rest = await (await api.get(f"/v1/care-teams?cursor={first['next_cursor']}", headers=clinic.auth("read"))).json()
    assert [t["id"] for t in first["data"] + rest["data"]] == ids and rest["next_cursor"] is None


async def test_a_team_that_owns_rules_is_not_deleted_from_under_them(
    api: TestClient, clinic: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAREBEACON_ALLOW_PRIVATE_DESTINATIONS", "true")
    team_id = (await new_team(api, clinic))["id"]
    config = {"url": "https://discord.com/api/webhooks/1/t"}
    channel = await api.post(
        "/v1/channels", json={"kind": "discord", "label": "c", "config": config}, headers=clinic.auth()
    )
    body = {"name": "r", "channel_ids": [(await channel.json())["id"]], "care_team_id": team_id}
    assert (await api.post("/v1/rules", json=body, headers=clinic.auth())).status == 201

    assert (await api.delete(f"/v1/care-teams/{team_id}", headers=clinic.auth("write"))).status == 409


async def test_who_may_view_and_act(api: TestClient, clinic: Tenant, other: Tenant, pool: asyncpg.Pool) -> None:
    team_id = (await new_team(api, clinic))["id"]
    patient, nurse, viewer, stranger = [await make_user(api, clinic, n) for n in ("pt", "nurse", "viewer", "stranger")]
    outsider = await make_user(api, other, "outsider")
    write = clinic.auth("write")
    await api.post(f"/v1/care-teams/{team_id}/patients", json={"patient_id": patient}, headers=write)
    await api.post(f"/v1/care-teams/{team_id}/members", json={"user_id": nurse, "role": "nurse"}, headers=write)
    await api.post(f"/v1/care-teams/{team_id}/members", json={"user_id": viewer, "role": "viewer"}, headers=write)
    async with pool.acquire() as conn:
        alert_id = await alerts.insert(
            conn, NewAlert(patient, "clinical", "warning", None, "t", "b", None, None, None, f"perm-{patient}")
        )
        assert alert_id is not None

        assert await care_teams.can_view_patient(conn, patient, patient)
        assert await care_teams.can_view_patient(conn, nurse, patient)
        assert await care_teams.can_view_patient(conn, viewer, patient)
        assert not await care_teams.can_view_patient(conn, stranger, patient)
        assert not await care_teams.can_view_patient(conn, outsider, patient)
        assert await care_teams.can_act_on_alert(conn, nurse, alert_id)
        assert not await care_teams.can_act_on_alert(conn, viewer, alert_id)
        assert not await care_teams.can_act_on_alert(conn, stranger, alert_id)
        assert [t.id for t in await care_teams.teams_of_patient(conn, patient)] == [team_id]
        assert {m.user_id for m in await care_teams.members(conn, team_id)} == {nurse, viewer}


async def test_erasing_a_member_or_patient_removes_them_from_teams(
    api: TestClient, clinic: Tenant, pool: asyncpg.Pool
) -> None:
    team_id = (await new_team(api, clinic))["id"]
    patient, nurse = await make_user(api, clinic, "gone-pt"), await make_user(api, clinic, "gone-nurse")
    write = clinic.auth("write")
    await api.post(f"/v1/care-teams/{team_id}/patients", json={"patient_id": patient}, headers=write)
    await api.post(f"/v1/care-teams/{team_id}/members", json={"user_id": nurse, "role": "nurse"}, headers=write)

    for user_id in (patient, nurse):
        assert (await api.delete(f"/v1/users/{user_id}", headers=clinic.auth("admin"))).status == 204

    assert await pool.fetchval("SELECT count(*) FROM care_team_members WHERE care_team_id = $1", team_id) == 0
    assert await pool.fetchval("SELECT count(*) FROM care_team_patients WHERE care_team_id = $1", team_id) == 0
