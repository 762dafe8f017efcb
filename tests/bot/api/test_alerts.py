"""One alert over the API: read, acknowledge, snooze, resolve (idempotent, evented, stopping
escalation), and its delivery log without secrets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from db import alerts, events
from db.alerts import NewAlert
from tests.bot.api.conftest import Tenant, error_of, make_user


async def raise_alert(pool: asyncpg.Pool, user_id: int, severity: str = "critical", key: str = "a") -> int:
    """A routed alert whose escalation timer is armed and already due."""
    async with pool.acquire() as conn:
        alert = NewAlert(user_id, "clinical", severity, "heart_rate", "High heart rate", "b", 150.0, 120.0, None,
                         f"api-alert-{user_id}-{key}")  # fmt: skip
        alert_id = await alerts.insert(conn, alert)
        assert alert_id is not None
        past = datetime.now(UTC) - timedelta(hours=1)
        await alerts.mark_routed(conn, alert_id, past, escalate_at=past)
    return alert_id


async def event_count(pool: asyncpg.Pool, event_type: str, alert_id: int) -> int:
    found: int = await pool.fetchval(
        "SELECT count(*) FROM events WHERE type = $1 AND payload -> 'data' ->> 'alert_id' = $2",
        event_type,
        str(alert_id),
    )
    return found


async def test_an_alert_reads_back_with_its_state(api: TestClient, clinic: Tenant, pool: asyncpg.Pool) -> None:
    alert_id = await raise_alert(pool, await make_user(api, clinic))

    response = await api.get(f"/v1/alerts/{alert_id}", headers=clinic.auth("read"))

    assert response.status == 200
    found = await response.json()
    assert found["id"] == alert_id and found["status"] == "open" and found["severity"] == "critical"
    assert found["acknowledged_at"] is None and found["snoozed_until"] is None and found["escalate_at"] is not None


async def test_acknowledge_twice_is_harmless_publishes_once_and_stops_escalation(
    api: TestClient, clinic: Tenant, pool: asyncpg.Pool
) -> None:
    alert_id = await raise_alert(pool, await make_user(api, clinic))
    async with pool.acquire() as conn:
        assert alert_id in await alerts.escalations_due(conn, timedelta(0))

    first = await api.post(f"/v1/alerts/{alert_id}/acknowledge", headers=clinic.auth("write"))
    second = await api.post(f"/v1/alerts/{alert_id}/acknowledge", headers=clinic.auth("write"))

    assert first.status == second.status == 200
    one, two = await first.json(), await second.json()
    assert one["status"] == two["status"] == "acknowledged"
    assert one["acknowledged_at"] == two["acknowledged_at"] and one["acknowledged_by"].startswith("api_key:")
    assert await event_count(pool, events.ALERT_ACKNOWLEDGED, alert_id) == 1
    async with pool.acquire() as conn:
        assert alert_id not in await alerts.escalations_due(conn, timedelta(0))


async def test_resolve_twice_is_harmless_publishes_once_and_is_final(
    api: TestClient, clinic: Tenant, pool: asyncpg.Pool
) -> None:
    alert_id = await raise_alert(pool, await make_user(api, clinic))

    first = await api.post(f"/v1/alerts/{alert_id}/resolve", headers=clinic.auth("write"))
    second = await api.post(f"/v1/alerts/{alert_id}/resolve", headers=clinic.auth("write"))

    assert first.status == second.status == 200
    assert (await first.json())["resolved_at"] == (await second.json())["resolved_at"]
    assert (await second.json())["status"] == "resolved"
    assert await event_count(pool, events.ALERT_RESOLVED, alert_id) == 1
    async with pool.acquire() as conn:
        assert alert_id not in await alerts.escalations_due(conn, timedelta(0))
    snooze = await api.post(f"/v1/alerts/{alert_id}/snooze", json={"minutes": 60}, headers=clinic.auth("write"))
    assert snooze.status == 409
    acknowledged = await api.post(f"/v1/alerts/{alert_id}/acknowledge", headers=clinic.auth("write"))
    assert (await acknowledged.json())["status"] == "resolved"


async def test_a_snoozed_alert_does_not_escalate_until_it_wakes_then_escalation_is_armed_again(
    api: TestClient, clinic: Tenant, pool: asyncpg.Pool
) -> None:
    alert_id = await raise_alert(pool, await make_user(api, clinic))

    response = await api.post(f"/v1/alerts/{alert_id}/snooze", json={"minutes": 240}, headers=clinic.auth("write"))

    assert response.status == 200
    found = await response.json()
    until = datetime.fromisoformat(found["snoozed_until"])
    assert found["status"] == "snoozed" and timedelta(minutes=239) < until - datetime.now(UTC) <= timedelta(minutes=240)
    async with pool.acquire() as conn:
        assert alert_id not in await alerts.escalations_due(conn, timedelta(0))
        # The escalation timer fires during the snooze: it stands down.
        await alerts.mark_escalated(conn, alert_id)
        await conn.execute("UPDATE alerts SET snoozed_until = now() - interval '1 second' WHERE id = $1", alert_id)

    woken = await (await api.get(f"/v1/alerts/{alert_id}", headers=clinic.auth("read"))).json()

    assert woken["status"] == "open" and woken["snoozed_until"] is None and woken["escalated_at"] is None
    async with pool.acquire() as conn:
        assert alert_id in await alerts.escalations_due(conn, timedelta(0))


async def test_a_snoozed_acknowledged_alert_wakes_acknowledged_and_unarmed(
    api: TestClient, clinic: Tenant, pool: asyncpg.Pool
) -> None:
    alert_id = await raise_alert(pool, await make_user(api, clinic))
    await api.post(f"/v1/alerts/{alert_id}/acknowledge", headers=clinic.auth("write"))
    await api.post(f"/v1/alerts/{alert_id}/snooze", json={"minutes": 60}, headers=clinic.auth("write"))
    async with pool.acquire() as conn:
        await conn.execute("UPDATE alerts SET snoozed_until = now() - interval '1 second' WHERE id = $1", alert_id)
        assert await alerts.wake_snoozed(conn, datetime.now(UTC)) == [alert_id]
        assert alert_id not in await alerts.escalations_due(conn, timedelta(0))

    woken = await (await api.get(f"/v1/alerts/{alert_id}", headers=clinic.auth("read"))).json()
    assert woken["status"] == "acknowledged"


async def test_a_bad_snooze_is_422_naming_the_field(api: TestClient, clinic: Tenant, pool: asyncpg.Pool) -> None:
    alert_id = await raise_alert(pool, await make_user(api, clinic))
    cases = [
        ({}, "minutes"),
        ({"minutes": 0}, "minutes"),
        ({"minutes": 10081}, "minutes"),
        ({"minutes": "60"}, "minutes"),
        ({"minutes": True}, "minutes"),
        ({"minutes": 60.5}, "minutes"),
        ({"minutes": 60, "until": "x"}, "until"),
    ]
    for body, field in cases:
        response = await api.post(f"/v1/alerts/{alert_id}/snooze", json=body, headers=clinic.auth("write"))
        assert response.status == 422, body
        assert (await error_of(response))["details"] == {"field": field}


async def test_actions_need_write_and_another_tenant_s_alert_is_404(
    api: TestClient, clinic: Tenant, other: Tenant, pool: asyncpg.Pool
) -> None:
    alert_id = await raise_alert(pool, await make_user(api, clinic))
    for action in ("acknowledge", "resolve"):
        assert (await api.post(f"/v1/alerts/{alert_id}/{action}", headers=clinic.auth("read"))).status == 403
        assert (await api.post(f"/v1/alerts/{alert_id}/{action}", headers=other.auth())).status == 404
    snooze = {"minutes": 60}
    assert (await api.post(f"/v1/alerts/{alert_id}/snooze", json=snooze, headers=clinic.auth("read"))).status == 403
    assert (await api.post(f"/v1/alerts/{alert_id}/snooze", json=snooze, headers=other.auth())).status == 404
    assert (await api.get(f"/v1/alerts/{alert_id}", headers=other.auth())).status == 404
    assert (await api.get(f"/v1/alerts/{alert_id}/deliveries", headers=other.auth())).status == 404
    assert (await api.get("/v1/alerts/99999999999999999999", headers=clinic.auth())).status == 404
    unchanged = await (await api.get(f"/v1/alerts/{alert_id}", headers=clinic.auth())).json()
    assert unchanged["status"] == "open"


async def test_deliveries_name_the_channel_never_its_url(
    api: TestClient, clinic: Tenant, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAREBEACON_ALLOW_PRIVATE_DESTINATIONS", "true")
    alert_id = await raise_alert(pool, await make_user(api, clinic))
    url = "https://discord.com/api/webhooks/123456/TOKEN-in-the-delivery-test"
    created = await api.post(
        "/v1/channels", json={"kind": "discord", "label": "Ward 3", "config": {"url": url}}, headers=clinic.auth()
    )
    channel_id = (await created.json())["id"]
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO notification_logs (alert_id, channel_id, attempt, status, http_status, detail)"
            " VALUES ($1, $2, 1, 'delivered', 204, 'ok')",
            alert_id,
            channel_id,
        )

    response = await api.get(f"/v1/alerts/{alert_id}/deliveries", headers=clinic.auth("read"))

    assert response.status == 200
    text = await response.text()
    assert "TOKEN-in-the-delivery-test" not in text and "webhooks/123456" not in text
    (row,) = (await response.json())["data"]
    assert row["channel_kind"] == "discord" and row["channel_label"] == "Ward 3" and row["status"] == "delivered"
