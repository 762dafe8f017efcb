"""Multi-workspace install: Bolt's OAuth flow on our asyncpg stores (token sealed, state single
use), and app_uninstalled / tokens_revoked."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import make_app
from bot.settings import BotSettings
from bot.slack.stores import PgInstallationStore
from db import chat
from pipeline import runtime
from tests.bot.chat.conftest import PUBLIC_URL, Clinic, reply_to, signed, slack_settings, slash, text_of
from tests.fakes.slack_api import CLIENT_ID, FakeSlackApi
from tests.helpers import eventually

STATE_COOKIE = "slack-app-oauth-state"


@pytest.fixture
async def oauth_client(
    pipeline_runtime: runtime.Runtime, pool: asyncpg.Pool, slack_api: FakeSlackApi
) -> AsyncIterator[TestClient]:
    settings = slack_settings(slack_api, bot_token=None)
    app = make_app(pool, pipeline_runtime.broker, settings=BotSettings(public_url=PUBLIC_URL), slack=settings)
    async with TestClient(TestServer(app)) as found:
        yield found


async def install(client: TestClient, api: FakeSlackApi, team: str) -> str:
    page = await client.get("/slack/install", allow_redirects=False)
    assert page.status in (200, 302)
    state = page.cookies[STATE_COOKIE].value
    code, token = api.install_code(team)
    done = await client.get(
        f"/slack/oauth_redirect?code={code}&state={state}", headers={"Cookie": f"{STATE_COOKIE}={state}"}
    )
    assert done.status == 200, await done.text()
    return token


async def test_an_install_stores_the_bot_token_sealed_and_commands_then_work(
    oauth_client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, pool: asyncpg.Pool,
    pipeline_runtime: runtime.Runtime,
) -> None:  # fmt: skip
    token = await install(oauth_client, slack_api, clinic.team)

    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM slack_installations WHERE team_id = $1", clinic.team)
    assert row["bot_token_sealed"].startswith("cb1.") and token not in row["bot_token_sealed"]
    store = PgInstallationStore(pool, pipeline_runtime.keyring, CLIENT_ID)
    bot = await store.async_find_bot(enterprise_id=None, team_id=clinic.team)
    assert bot is not None and bot.bot_token == token

    sent = await slash(oauth_client, slack_api, clinic.team, clinic.patient.chat_user, "/help")
    assert sent.response.status == 200
    assert "/score" in text_of(await reply_to(slack_api, sent))


async def test_a_replayed_oauth_state_is_refused(
    oauth_client: TestClient, slack_api: FakeSlackApi, clinic: Clinic
) -> None:
    page = await oauth_client.get("/slack/install", allow_redirects=False)
    state = page.cookies[STATE_COOKIE].value
    headers = {"Cookie": f"{STATE_COOKIE}={state}"}
    first, _ = slack_api.install_code(clinic.team)
    second, _ = slack_api.install_code(clinic.team)
    assert (await oauth_client.get(f"/slack/oauth_redirect?code={first}&state={state}", headers=headers)).status == 200
    again = await oauth_client.get(f"/slack/oauth_redirect?code={second}&state={state}", headers=headers)
    assert again.status != 200


async def test_app_uninstalled_deletes_the_installation_and_revokes_the_workspaces_links(
    oauth_client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, pool: asyncpg.Pool
) -> None:
    await install(oauth_client, slack_api, clinic.team)
    event = {
        "token": "deprecated", "team_id": clinic.team, "api_app_id": "A0APP", "type": "event_callback",
        "event": {"type": "app_uninstalled"}, "event_id": "Ev1", "event_time": int(time.time()),
        "authorizations": [{"team_id": clinic.team, "enterprise_id": None, "is_enterprise_install": False,
                            "user_id": "UBOT", "is_bot": True}],
    }  # fmt: skip
    body = json.dumps(event)
    response = await oauth_client.post(
        "/slack/events", data=body, headers=signed(body) | {"Content-Type": "application/json"}
    )
    assert response.status == 200

    async def gone() -> bool:
        async with pool.acquire() as conn:
            left = await conn.fetchval("SELECT count(*) FROM slack_installations WHERE team_id = $1", clinic.team)
            return left == 0 and await chat.linked_user(conn, "slack", clinic.team, clinic.nurse.chat_user) is None

    await eventually(gone, 10, "the uninstall to take effect")
    async with pool.acquire() as conn:
        assert await chat.workspace_tenant(conn, "slack", clinic.team) is None


async def test_tokens_revoked_deletes_the_bot_token(
    oauth_client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, pool: asyncpg.Pool
) -> None:
    await install(oauth_client, slack_api, clinic.team)
    event = {
        "token": "deprecated", "team_id": clinic.team, "api_app_id": "A0APP", "type": "event_callback",
        "event": {"type": "tokens_revoked", "tokens": {"bot": ["UBOT"]}}, "event_id": "Ev2",
        "event_time": int(time.time()),
        "authorizations": [{"team_id": clinic.team, "enterprise_id": None, "is_enterprise_install": False,
                            "user_id": "UBOT", "is_bot": True}],
    }  # fmt: skip
    body = json.dumps(event)
    response = await oauth_client.post(
        "/slack/events", data=body, headers=signed(body) | {"Content-Type": "application/json"}
    )
    assert response.status == 200

    async def gone() -> bool:
        async with pool.acquire() as conn:
            return await conn.fetchval("SELECT count(*) FROM slack_installations WHERE team_id = $1", clinic.team) == 0

    await eventually(gone, 10, "the bot token to be deleted")
