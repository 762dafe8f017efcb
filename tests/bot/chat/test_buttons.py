"""Alert buttons: every click is authorised for the clicker, changes the alert once, redraws the
card to say who acted, and a second click is harmless."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
from aiohttp.test_utils import TestClient

from tests.bot.chat.conftest import Clinic, click, reply_at, text_of
from tests.bot.chat.test_commands import raise_alert
from tests.fakes.slack_api import FakeSlackApi


async def events_of(pool: asyncpg.Pool, tenant_id: int, kind: str) -> int:
    async with pool.acquire() as conn:
        found: int = await conn.fetchval(
            "SELECT count(*) FROM events WHERE tenant_id = $1 AND type = $2", tenant_id, kind
        )
    return found


async def test_a_nurse_acknowledges_and_the_card_shows_who_and_stops_escalation(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, pool: asyncpg.Pool
) -> None:
    alert_id = await raise_alert(pool, clinic)
    first = await click(client, slack_api, clinic.team, clinic.nurse.chat_user, "ack", alert_id)
    second = await click(client, slack_api, clinic.team, clinic.nurse.chat_user, "ack", alert_id)

    assert first.response.status == 200 and first.elapsed < 3.0
    (card,) = await reply_at(slack_api, first.path)
    assert card["replace_original"] is True and card["response_type"] == "in_channel"
    assert "Acknowledged by Nurse" in text_of(card)
    labels = [e["text"]["text"] for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert "Acknowledge" not in labels and "Resolve" in labels
    await reply_at(slack_api, second.path)
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT status, acknowledged_by FROM alerts WHERE id = $1", alert_id)
    assert (row["status"], row["acknowledged_by"]) == ("acknowledged", f"user:{clinic.nurse.user_id}")
    assert await events_of(pool, clinic.tenant_id, "alert.acknowledged") == 1  # clicking twice is harmless


async def test_snooze_4h_and_resolve_update_the_alert_and_resolve_removes_the_buttons(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, pool: asyncpg.Pool
) -> None:
    alert_id = await raise_alert(pool, clinic)
    snoozed = await click(client, slack_api, clinic.team, clinic.nurse.chat_user, "snooze4h", alert_id)
    (card,) = await reply_at(slack_api, snoozed.path)
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT status, snoozed_until FROM alerts WHERE id = $1", alert_id)
    assert row["status"] == "snoozed" and "Snoozed by Nurse" in text_of(card)
    assert abs(row["snoozed_until"] - (datetime.now(UTC) + timedelta(hours=4))) < timedelta(minutes=1)

    resolved = await click(client, slack_api, clinic.team, clinic.nurse.chat_user, "resolve", alert_id)
    (card,) = await reply_at(slack_api, resolved.path)
    assert "Resolved by Nurse" in text_of(card)
    assert not [b for b in card["blocks"] if b["type"] == "actions"]
    assert await events_of(pool, clinic.tenant_id, "alert.resolved") == 1


async def _refused(client: TestClient, api: FakeSlackApi, team: str, user: str, alert_id: int) -> dict:
    sent = await click(client, api, team, user, "ack", alert_id)
    assert sent.response.status == 200
    (notice,) = await reply_at(api, sent.path)
    assert notice["replace_original"] is False and notice["response_type"] == "ephemeral"
    assert "Not allowed" in text_of(notice)
    return notice


async def test_a_viewer_an_outsider_and_an_unlinked_user_cannot_act(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, pool: asyncpg.Pool
) -> None:
    alert_id = await raise_alert(pool, clinic)
    for user in (clinic.viewer.chat_user, clinic.outsider.chat_user, "UNOBODY", clinic.patient.chat_user):
        await _refused(client, slack_api, clinic.team, user, alert_id)

    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT status FROM alerts WHERE id = $1", alert_id) == "open"
        denied = await conn.fetchval(
            "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = 'chat.denied' AND subject_id = $2",
            clinic.tenant_id, alert_id,
        )  # fmt: skip
    assert denied == 4


async def test_a_nurse_of_another_tenant_cannot_act_on_this_tenants_alert(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, other_clinic: Clinic, pool: asyncpg.Pool
) -> None:
    alert_id = await raise_alert(pool, clinic)
    await _refused(client, slack_api, other_clinic.team, other_clinic.nurse.chat_user, alert_id)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT status FROM alerts WHERE id = $1", alert_id) == "open"
