"""Silences over the API: created with at least one matcher, applied by routing, listed by
page, ended by DELETE; tenant-checked, including the patient a body names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
from aiohttp.test_utils import TestClient

from db import alerts, silences
from db.alerts import NewAlert
from tests.bot.api.conftest import Tenant, error_of, make_user


def later(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


async def test_a_silence_mutes_its_patient_s_alerts_until_deleted(
    api: TestClient, clinic: Tenant, pool: asyncpg.Pool
) -> None:
    patient = await make_user(api, clinic, "muted")
    body = {"patient_id": patient, "metric": "heart_rate", "ends_at": later(hours=2), "comment": "sensor swap"}

    response = await api.post("/v1/silences", json=body, headers=clinic.auth("write"))

    assert response.status == 201, await response.text()
    created = await response.json()
    assert created["state"] == "active" and created["patient_id"] == patient and created["comment"] == "sensor swap"
    assert await (await api.get(f"/v1/silences/{created['id']}", headers=clinic.auth("read"))).json() == created
    async with pool.acquire() as conn:
        alert_id = await alerts.insert(
            conn, NewAlert(patient, "clinical", "critical", "heart_rate", "t", "b", 1.0, 1.0, None, f"sil-{patient}")
        )
        assert alert_id is not None
        alert = await alerts.get(conn, alert_id)
        assert alert is not None
        assert await silences.silencing(conn, alert, datetime.now(UTC)) == created["id"]

    assert (await api.delete(f"/v1/silences/{created['id']}", headers=clinic.auth("write"))).status == 204

    async with pool.acquire() as conn:
        assert await silences.silencing(conn, alert, datetime.now(UTC)) is None
    assert (await api.get(f"/v1/silences/{created['id']}", headers=clinic.auth("read"))).status == 404


async def test_a_future_silence_is_pending(api: TestClient, clinic: Tenant) -> None:
    body = {"category": "statistical", "starts_at": later(hours=1), "ends_at": later(hours=3)}
    created = await (await api.post("/v1/silences", json=body, headers=clinic.auth("write"))).json()
    assert created["state"] == "pending" and created["patient_id"] is None


async def test_invalid_silences_are_422_naming_the_field(api: TestClient, clinic: Tenant) -> None:
    cases = [
        ({"ends_at": later(hours=1)}, "patient_id"),
        ({"metric": "heart_rate"}, "ends_at"),
        ({"metric": "heart_rate", "ends_at": "tomorrow"}, "ends_at"),
        ({"metric": "heart_rate", "ends_at": "2030-01-01T00:00:00"}, "ends_at"),
        ({"metric": "heart_rate", "ends_at": later(hours=-1)}, "ends_at"),
        ({"metric": "heart_rate", "ends_at": later(days=400)}, "ends_at"),
        ({"metric": "heart_rate", "starts_at": later(hours=2), "ends_at": later(hours=1)}, "ends_at"),
        ({"metric": "mood", "ends_at": later(hours=1)}, "metric"),
        ({"category": "weather", "ends_at": later(hours=1)}, "category"),
        ({"patient_id": "7", "ends_at": later(hours=1)}, "patient_id"),
        ({"patient_id": 2**63, "ends_at": later(hours=1)}, "patient_id"),
        ({"metric": "heart_rate", "ends_at": later(hours=1), "comment": 5}, "comment"),
        ({"metric": "heart_rate", "ends_at": later(hours=1), "reason": "x"}, "reason"),
    ]
    for body, field in cases:
        response = await api.post("/v1/silences", json=body, headers=clinic.auth("write"))
        assert response.status == 422, body
        assert (await error_of(response))["details"] == {"field": field}, body


async def test_another_tenant_s_silence_or_patient_is_404_and_writes_need_write(
    api: TestClient, clinic: Tenant, other: Tenant
) -> None:
    their_patient = await make_user(api, other, "theirs")
    body = {"patient_id": their_patient, "ends_at": later(hours=1)}
    assert (await api.post("/v1/silences", json=body, headers=clinic.auth("write"))).status == 404
    mine = {"metric": "steps", "ends_at": later(hours=1)}
    assert (await api.post("/v1/silences", json=mine, headers=clinic.auth("read"))).status == 403
    created = await (await api.post("/v1/silences", json=mine, headers=clinic.auth("write"))).json()
    assert (await api.get(f"/v1/silences/{created['id']}", headers=other.auth())).status == 404
    assert (await api.delete(f"/v1/silences/{created['id']}", headers=other.auth())).status == 404
    assert (await api.delete(f"/v1/silences/{created['id']}", headers=clinic.auth("read"))).status == 403
    assert (await (await api.get("/v1/silences", headers=other.auth())).json())["data"] == []


async def test_silences_page_newest_first(api: TestClient, clinic: Tenant) -> None:
    body = {"category": "clinical", "ends_at": later(hours=1)}
    ids = [(await (await api.post("/v1/silences", json=body, headers=clinic.auth())).json())["id"] for _ in range(3)]
    first = await (await api.get("/v1/silences?limit=2", headers=clinic.auth("read"))).json()
    rest = await (await api.get(f"/v1/silences?cursor={first['next_cursor']}", headers=clinic.auth("read"))).json()
    assert [s["id"] for s in first["data"] + rest["data"]] == ids[::-1] and rest["next_cursor"] is None
