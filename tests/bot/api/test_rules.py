"""Notification rules over the API: every field round-trips, bad ones are 422 naming the
field, every id in a body is checked against the tenant, and routing uses what was written."""

from __future__ import annotations

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from db import alerts, routing
from db.alerts import NewAlert
from tests.bot.api.conftest import Tenant, error_of, make_user

URL = "https://discord.com/api/webhooks/1234/rule-test-token"


@pytest.fixture
def private_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREBEACON_ALLOW_PRIVATE_DESTINATIONS", "true")


async def channel(api: TestClient, tenant: Tenant, label: str = "c") -> int:
    response = await api.post(
        "/v1/channels", json={"kind": "discord", "label": label, "config": {"url": URL}}, headers=tenant.auth("write")
    )
    assert response.status == 201, await response.text()
    found: int = (await response.json())["id"]
    return found


async def team(api: TestClient, tenant: Tenant, name: str = "Cardiology") -> int:
    response = await api.post("/v1/care-teams", json={"name": name}, headers=tenant.auth("write"))
    assert response.status == 201, await response.text()
    found: int = (await response.json())["id"]
    return found


async def test_every_field_round_trips_and_routing_uses_the_rule(
    api: TestClient, clinic: Tenant, pool: asyncpg.Pool, private_ok: None
) -> None:
    notify, escalate = await channel(api, clinic, "n"), await channel(api, clinic, "e")
    patient, team_id = await make_user(api, clinic, "rule-patient"), await team(api, clinic)
    body = {
        "name": "Night cardiology",
        "care_team_id": team_id,
        "patient_id": patient,
        "categories": ["clinical"],
        "metrics": ["heart_rate"],
        "min_severity": "critical",
        "channel_ids": [notify],
        "escalation_channel_ids": [escalate],
        "quiet_hours": {"start": "22:00", "end": "07:00"},
        "cooldown_minutes": 30,
        "group_wait_seconds": 120,
        "escalate_after_minutes": 15,
        "enabled": True,
    }

    response = await api.post("/v1/rules", json=body, headers=clinic.auth("write"))

    assert response.status == 201, await response.text()
    created = await response.json()
    assert {k: created[k] for k in body} == body and created["owner_user_id"] is None
    assert await (await api.get(f"/v1/rules/{created['id']}", headers=clinic.auth("read"))).json() == created
    async with pool.acquire() as conn:
        alert_id = await alerts.insert(
            conn, NewAlert(patient, "clinical", "critical", "heart_rate", "t", "b", 1.0, 1.0, None, f"rule-{patient}")
        )
        assert alert_id is not None
        alert = await alerts.get(conn, alert_id)
        assert alert is not None
        (rule,) = await routing.rules_for(conn, alert)
    assert rule.id == created["id"] and [c.id for c in rule.channels] == [notify]
    assert [c.id for c in rule.escalation_channels] == [escalate]


async def test_defaults_are_a_tenant_wide_warning_rule(api: TestClient, clinic: Tenant, private_ok: None) -> None:
    notify = await channel(api, clinic)
    created = await (
        await api.post("/v1/rules", json={"name": "all", "channel_ids": [notify]}, headers=clinic.auth("write"))
    ).json()
    assert created["min_severity"] == "warning" and created["cooldown_minutes"] == 60
    assert created["quiet_hours"] is None and created["escalation_channel_ids"] == [] and created["enabled"] is True


async def test_invalid_rules_are_422_naming_the_field(api: TestClient, clinic: Tenant, private_ok: None) -> None:
    notify = await channel(api, clinic)
    base = {"name": "r", "channel_ids": [notify]}
    cases = [
        ({"channel_ids": [notify]}, "name"),
        ({"name": "r"}, "channel_ids"),
        (base | {"channel_ids": []}, "channel_ids"),
        (base | {"channel_ids": ["1"]}, "channel_ids"),
        (base | {"channel_ids": [0]}, "channel_ids"),
        (base | {"min_severity": "urgent"}, "min_severity"),
        (base | {"categories": []}, "categories"),
        (base | {"categories": ["weather"]}, "categories"),
        (base | {"metrics": ["mood"]}, "metrics"),
        (base | {"quiet_hours": {"start": "22:00"}}, "quiet_hours"),
        (base | {"quiet_hours": {"start": "25:00", "end": "07:00"}}, "quiet_hours"),
        (base | {"quiet_hours": {"start": "07:00", "end": "07:00"}}, "quiet_hours"),
        (base | {"quiet_hours": "22-07"}, "quiet_hours"),
        (base | {"cooldown_minutes": -1}, "cooldown_minutes"),
        (base | {"group_wait_seconds": 3601}, "group_wait_seconds"),
        (base | {"escalate_after_minutes": 0}, "escalate_after_minutes"),
        (base | {"patient_id": 2**63}, "patient_id"),
        (base | {"enabled": "yes"}, "enabled"),
        (base | {"owner_user_id": 1, "care_team_id": 1}, "care_team_id"),
        (base | {"colour": "red"}, "colour"),
    ]
    for body, field in cases:
        response = await api.post("/v1/rules", json=body, headers=clinic.auth("write"))
        assert response.status == 422, body
        assert (await error_of(response))["details"] == {"field": field}, body


async def test_another_tenant_s_ids_in_the_body_are_404(
    api: TestClient, clinic: Tenant, other: Tenant, private_ok: None
) -> None:
    mine, theirs = await channel(api, clinic), await channel(api, other)
    their_user, their_team = await make_user(api, other, "theirs"), await team(api, other, "Theirs")
    base = {"name": "r", "channel_ids": [mine]}
    for body in (
        {"name": "r", "channel_ids": [mine, theirs]},
        base | {"escalation_channel_ids": [theirs]},
        base | {"patient_id": their_user},
        base | {"owner_user_id": their_user},
        base | {"care_team_id": their_team},
    ):
        response = await api.post("/v1/rules", json=body, headers=clinic.auth("write"))
        assert response.status == 404, body
    rule_id = (await (await api.post("/v1/rules", json=base, headers=clinic.auth("write"))).json())["id"]
    patched = await api.patch(f"/v1/rules/{rule_id}", json={"channel_ids": [theirs]}, headers=clinic.auth("write"))
    assert patched.status == 404
    assert (await api.get(f"/v1/rules/{rule_id}", headers=other.auth())).status == 404
    assert (await api.patch(f"/v1/rules/{rule_id}", json={"name": "x"}, headers=other.auth())).status == 404
    assert (await api.delete(f"/v1/rules/{rule_id}", headers=other.auth())).status == 404


async def test_patch_changes_only_what_it_names_and_replaces_channel_lists(
    api: TestClient, clinic: Tenant, private_ok: None
) -> None:
    first, second = await channel(api, clinic, "1"), await channel(api, clinic, "2")
    owner = await make_user(api, clinic, "owner")
    created = await (
        await api.post("/v1/rules", json={"name": "r", "channel_ids": [first]}, headers=clinic.auth("write"))
    ).json()
    path = f"/v1/rules/{created['id']}"

    changed = await api.patch(
        path,
        json={"enabled": False, "channel_ids": [second], "owner_user_id": owner, "quiet_hours": {"start": "23:30",
              "end": "06:00"}},
        headers=clinic.auth("write"),
    )  # fmt: skip

    assert changed.status == 200
    found = await changed.json()
    assert found["enabled"] is False and found["channel_ids"] == [second] and found["owner_user_id"] == owner
    assert found["quiet_hours"] == {"start": "23:30", "end": "06:00"} and found["name"] == "r"
    two_owners = await api.patch(path, json={"care_team_id": await team(api, clinic)}, headers=clinic.auth("write"))
    assert two_owners.status == 422
    moved = await api.patch(
        path, json={"care_team_id": await team(api, clinic, "B"), "owner_user_id": None}, headers=clinic.auth("write")
    )
    assert moved.status == 200 and (await moved.json())["owner_user_id"] is None
    cleared = await api.patch(path, json={"quiet_hours": None}, headers=clinic.auth("write"))
    assert (await cleared.json())["quiet_hours"] is None


async def test_scopes_pages_and_delete(api: TestClient, clinic: Tenant, private_ok: None) -> None:
    notify = await channel(api, clinic)
    body = {"name": "r", "channel_ids": [notify]}
    assert (await api.post("/v1/rules", json=body, headers=clinic.auth("read"))).status == 403
    ids = [
        (await (await api.post("/v1/rules", json=body, headers=clinic.auth("write"))).json())["id"] for _ in range(3)
    ]
    first = await (await api.get("/v1/rules?limit=2", headers=clinic.auth("read"))).json()
    rest = await (await api.get(f"/v1/rules?cursor={first['next_cursor']}", headers=clinic.auth("read"))).json()
    assert [r["id"] for r in first["data"] + rest["data"]] == ids and rest["next_cursor"] is None
    assert (await api.delete(f"/v1/rules/{ids[0]}", headers=clinic.auth("read"))).status == 403
    assert (await api.patch(f"/v1/rules/{ids[0]}", json={}, headers=clinic.auth("read"))).status == 403
    assert (await api.delete(f"/v1/rules/{ids[0]}", headers=clinic.auth("write"))).status == 204
    assert (await api.get(f"/v1/rules/{ids[0]}", headers=clinic.auth("read"))).status == 404
