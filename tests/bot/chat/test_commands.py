"""Every command through the real /slack/events endpoint: an ack within 3 s carrying the reply, or
an empty one and the reply at the response_url (checked against Block Kit's limits by the fake),
ephemeral where it must be."""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta
from urllib.parse import parse_qs, urlsplit

import asyncpg
import dramatiq
import pytest
from aiohttp.test_utils import TestClient

from bot.commands import background
from db import connections
from pipeline import actors, runtime
from pipeline.providers.simulator import issue_tokens
from pipeline.sync import run_sync
from tests.bot.chat.conftest import PUBLIC_URL, Clinic, reply_at, reply_to, slash, text_of
from tests.fakes.slack_api import FakeSlackApi
from tests.helpers import eventually


async def run(client: TestClient, api: FakeSlackApi, clinic: Clinic, user: str, command: str, text: str = "") -> dict:
    sent = await slash(client, api, clinic.team, user, command, text)
    assert sent.response.status == 200
    assert sent.elapsed < 3.0  # Slack's deadline for the ack
    return await reply_to(api, sent)


async def test_help_is_generated_from_the_definitions_and_shows_an_unlinked_user_only_help_and_connect(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic
) -> None:
    linked = await run(client, slack_api, clinic, clinic.nurse.chat_user, "/help")
    unlinked = await run(client, slack_api, clinic, "UNOBODY", "/help")

    assert linked["response_type"] == "ephemeral"
    for name in ("/help", "/connect", "/sync", "/score", "/alerts", "/rules"):
        assert name in text_of(linked)
    assert "/connect" in text_of(unlinked) and "/score" not in text_of(unlinked)


async def test_a_quick_command_answers_in_its_ack_and_a_slow_one_acks_empty_and_answers_at_the_response_url(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    quick = await slash(client, slack_api, clinic.team, clinic.nurse.chat_user, "/help")
    assert "CareBeacon commands" in text_of(json.loads(await quick.response.text()))

    monkeypatch.setattr(background, "ANSWER_BUDGET", 0)  # no command is that quick
    slow = await slash(client, slack_api, clinic.team, clinic.nurse.chat_user, "/help")
    assert await slow.response.text() == ""
    (posted,) = await reply_at(slack_api, slow.path)

    assert "CareBeacon commands" in text_of(posted) and posted["response_type"] == "ephemeral"
    assert slack_api.replies(quick.path) == []  # the quick one was answered once: in its ack


async def test_connect_for_an_unlinked_identity_gives_a_one_time_link_to_our_link_page(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic
) -> None:
    reply = await run(client, slack_api, clinic, "UNEWCOMER", "/connect")

    assert reply["response_type"] == "ephemeral"
    urls = [e["url"] for b in reply["blocks"] if b["type"] == "actions" for e in b["elements"] if "url" in e]
    assert len(urls) == 1 and urls[0].startswith(f"{PUBLIC_URL}/chat/link?token=")


async def test_connect_lists_providers_and_a_provider_gets_a_connect_start_link_never_an_authorize_url(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic
) -> None:
    listing = await run(client, slack_api, clinic, clinic.patient.chat_user, "/connect")
    start = await run(client, slack_api, clinic, clinic.patient.chat_user, "/connect", "oura")

    assert "Oura" in text_of(listing) and "not connected" in text_of(listing)
    assert start["response_type"] == "ephemeral"
    urls = [e["url"] for b in start["blocks"] if b["type"] == "actions" for e in b["elements"] if "url" in e]
    assert len(urls) == 1 and urlsplit(urls[0]).path == "/connect/start"
    assert urls[0].startswith(PUBLIC_URL) and "token" in parse_qs(urlsplit(urls[0]).query)
    assert "authorize" not in text_of(start)


async def test_connect_revoke_disconnects_and_wipes_the_tokens(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime
) -> None:
    async with pool.acquire() as conn:
        connection_id = await connections.upsert(
            conn,
            pipeline_runtime.keyring,
            user_id=clinic.patient.user_id,
            provider="oura",
            tokens={"access_token": "a"},
        )
    reply = await run(client, slack_api, clinic, clinic.patient.chat_user, "/connect", "revoke oura")

    assert "disconnected" in text_of(reply)
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT status, tokens_sealed FROM connections WHERE id = $1", connection_id)
    assert row["status"] == "revoked" and row["tokens_sealed"] is None


async def test_sync_acks_at_once_and_a_follow_up_reports_rows_and_duration(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, pool: asyncpg.Pool,
    pipeline_runtime: runtime.Runtime, worker: dramatiq.Worker,
) -> None:  # fmt: skip
    async with pool.acquire() as conn:
        await connections.upsert(conn, pipeline_runtime.keyring, user_id=clinic.patient.user_id,
                                 provider="simulator", tokens=issue_tokens(), settings={"seed": "chat"})  # fmt: skip
    sent = await slash(client, slack_api, clinic.team, clinic.patient.chat_user, "/sync")
    assert sent.response.status == 200 and sent.elapsed < 3.0
    started = await reply_to(slack_api, sent)
    assert "Sync started" in text_of(started) and started["response_type"] == "ephemeral"

    await settle_followup(pool, pipeline_runtime, clinic.tenant_id)
    (finished,) = await reply_at(slack_api, sent.path, timeout=30)
    assert finished["response_type"] == "ephemeral" and finished["replace_original"] is False
    assert "Sync finished" in text_of(finished) and "rows stored" in text_of(finished)
    assert " s." in text_of(finished)  # the duration


async def settle_followup(pool: asyncpg.Pool, rt: runtime.Runtime, tenant_id: int) -> None:
    """Let the worker finish the runs and post the follow-up; where its messages were taken by
    another test session's worker on the shared Redis (see tests/conftest.py), do the same work
    here, through the same functions the actors call."""
    async with pool.acquire() as conn:
        followup_id, run_ids = await conn.fetchrow(
            "SELECT id, sync_run_ids FROM chat_followups WHERE tenant_id = $1", tenant_id
        )

    async def posted() -> bool:
        async with pool.acquire() as conn:
            return bool(
                await conn.fetchval("SELECT posted_at IS NOT NULL FROM chat_followups WHERE id = $1", followup_id)
            )

    try:
        await eventually(posted, 20, "the follow-up")
        return
    except AssertionError:
        pass
    for run_id in run_ids:
        await run_sync(pool, rt.keyring, rt.settings, run_id)
    await asyncio.to_thread(actors.chat_followup.fn, followup_id)


async def test_score_shows_todays_scores_with_contributors_and_a_chart_only_to_the_invoker(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, pool: asyncpg.Pool
) -> None:
    today = date.today()
    async with pool.acquire() as conn:
        for days_ago in range(10):
            await conn.execute(
                "INSERT INTO health_scores (user_id, day, domain, score, contributors)"
                " VALUES ($1, $2, 'sleep', $3, $4)",
                clinic.patient.user_id, today - timedelta(days=days_ago), 60.0 + days_ago,
                {"duration": {"input": 7.1, "score": 80, "weight": 0.6}, "partial": False},
            )  # fmt: skip
    reply = await run(client, slack_api, clinic, clinic.patient.chat_user, "/score")

    assert reply["response_type"] == "ephemeral"
    assert "Sleep" in text_of(reply) and "60" in text_of(reply) and "duration 80 (60%)" in text_of(reply)
    images = [b for b in reply["blocks"] if b["type"] == "image"]
    assert len(images) == 1 and images[0]["image_url"].startswith(f"{PUBLIC_URL}/chat/charts/")
    chart = await client.get(urlsplit(images[0]["image_url"]).path)
    assert chart.status == 200 and chart.content_type == "image/png"
    assert (await chart.read()).startswith(b"\x89PNG\r\n\x1a\n")


async def test_a_nurse_sees_the_patients_alerts_and_deliveries(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, pool: asyncpg.Pool
) -> None:
    alert_id = await raise_alert(pool, clinic)
    reply = await run(client, slack_api, clinic, clinic.nurse.chat_user, "/alerts", clinic.patient.external_id)

    assert reply["response_type"] == "ephemeral"
    assert f"#{alert_id}" in text_of(reply) and "Heart rate high" in text_of(reply)


async def test_rules_list_add_pause_edit_and_delete_with_inline_validation(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, pool: asyncpg.Pool
) -> None:
    user = clinic.nurse.chat_user
    bad = await run(
        client, slack_api, clinic, user, "/rules", f"add name=night channel={clinic.channel_id} severity=loud"
    )
    form = f'add name="night watch" channel={clinic.channel_id} severity=critical quiet=22:00-07:00'
    added = await run(client, slack_api, clinic, user, "/rules", form)
    async with pool.acquire() as conn:
        rule_id = await conn.fetchval("SELECT id FROM notification_rules WHERE tenant_id = $1", clinic.tenant_id)
    listed = await run(client, slack_api, clinic, user, "/rules")
    paused = await run(client, slack_api, clinic, user, "/rules", f"pause {rule_id}")
    edited = await run(client, slack_api, clinic, user, "/rules", f"edit {rule_id} severity=warning")
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT enabled, min_severity, owner_user_id FROM notification_rules WHERE id = $1",
                                  rule_id)  # fmt: skip
    deleted = await run(client, slack_api, clinic, user, "/rules", f"delete {rule_id}")

    assert "severity= must be one of" in text_of(bad)
    assert f"Rule #{rule_id} added" in text_of(added)
    assert "night watch" in text_of(listed)
    assert "paused" in text_of(paused) and "updated" in text_of(edited)
    assert (row["enabled"], row["min_severity"], row["owner_user_id"]) == (False, "warning", clinic.nurse.user_id)
    assert "deleted" in text_of(deleted)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM notification_rules WHERE id = $1", rule_id) == 0


async def raise_alert(pool: asyncpg.Pool, clinic: Clinic, severity: str = "critical") -> int:
    async with pool.acquire() as conn:
        alert_id: int = await conn.fetchval(
            "INSERT INTO alerts (user_id, category, severity, metric, title, body, dedupe_key)"
            " VALUES ($1, 'vitals', $2, 'heart_rate', 'Heart rate high', 'HR 150 at rest', $3) RETURNING id",
            clinic.patient.user_id,
            severity,
            f"chat-test:{clinic.team}:{severity}",
        )
    return alert_id
