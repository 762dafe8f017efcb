"""Slack over Socket Mode, for real: the web app's Bolt app connects with slack_sdk's aiohttp
client to the fake's ``apps.connections.open`` and WebSocket, which sends envelopes as Slack
does; the acks come back over the socket within 3 s, and the answers go to the response_url."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import make_app
from bot.settings import BotSettings
from bot.slack.settings import SlackSettings
from db import SettingError
from pipeline import runtime
from tests.bot.chat.conftest import PUBLIC_URL, Clinic, command_fields, slack_settings, text_of
from tests.fakes.slack_api import FakeSlackApi
from tests.helpers import eventually


@pytest.fixture
async def socket_client(
    pipeline_runtime: runtime.Runtime, pool: asyncpg.Pool, slack_api: FakeSlackApi
) -> AsyncIterator[TestClient]:
    """The app with Socket Mode on and no signing secret, connected to the fake's socket."""
    opened = slack_api.connections
    settings = slack_settings(slack_api, signing_secret=None, socket_mode=True, app_token=slack_api.app_token())
    app = make_app(pool, pipeline_runtime.broker, settings=BotSettings(public_url=PUBLIC_URL), slack=settings)
    async with TestClient(TestServer(app)) as found:
        await eventually(lambda: _connected(slack_api, opened), 15, "a Socket Mode connection")
        yield found
    await eventually(lambda: _closed(slack_api), 15, "the socket closed")


async def _connected(api: FakeSlackApi, before: int) -> bool:
    """A connection newer than the ``before``-th is open (envelopes go down the newest)."""
    return api.connections > before and bool(api.sockets) and not api.sockets[-1].closed


async def _closed(api: FakeSlackApi) -> bool:
    return not api.sockets


async def acked(api: FakeSlackApi, envelope_id: str) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        return api.acks.get(envelope_id)

    ack: dict[str, Any] = await eventually(found, 5, f"the ack of {envelope_id}")
    assert api.problems["/link"] == []  # acked within 3 s, and only envelopes that awaited one
    return ack


async def test_a_slash_command_envelope_is_answered_in_its_ack_over_the_socket(
    socket_client: TestClient, slack_api: FakeSlackApi, clinic: Clinic
) -> None:
    path, fields = command_fields(slack_api, clinic.team, clinic.nurse.chat_user, "/help")
    envelope_id = slack_api.envelope("slash_commands", fields)

    ack = await acked(slack_api, envelope_id)

    assert ack["envelope_id"] == envelope_id
    reply = ack["payload"]
    assert reply["response_type"] == "ephemeral" and "/rules" in text_of(reply)
    assert slack_api.replies(path) == []  # answered once, in the ack
    open_call = slack_api.received("/api/apps.connections.open")[-1]
    assert open_call.method == "POST" and open_call.headers["authorization"].startswith("Bearer xapp-")


async def test_without_a_signing_secret_there_is_no_http_endpoint(socket_client: TestClient) -> None:
    response = await socket_client.post("/slack/events", data="command=%2Fhelp")
    assert response.status in (404, 405)


async def test_a_modal_submission_over_the_socket_carries_its_errors_in_the_ack(
    socket_client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, pool: asyncpg.Pool
) -> None:
    path, fields = command_fields(slack_api, clinic.team, clinic.nurse.chat_user, "/rules", "add")
    slack_api.envelope("slash_commands", fields)
    view = await eventually(lambda: _view(slack_api, fields["trigger_id"]), 15, "views.open")
    payload = {
        "type": "view_submission", "team": {"id": clinic.team}, "user": {"id": clinic.nurse.chat_user,
        "team_id": clinic.team}, "api_app_id": "A0APP", "trigger_id": "9.9.9",
        "view": view | {"state": {"values": {"name": {"name": {"type": "plain_text_input", "value": None}}}}},
    }  # fmt: skip
    envelope_id = slack_api.envelope("interactive", payload)

    ack = await acked(slack_api, envelope_id)

    assert ack["payload"]["response_action"] == "errors"
    assert set(ack["payload"]["errors"]) == {"name", "channels"}
    async with pool.acquire() as conn:
        saved = await conn.fetchval("SELECT count(*) FROM notification_rules WHERE tenant_id = $1", clinic.tenant_id)
    assert saved == 0


async def _view(api: FakeSlackApi, trigger: str) -> dict[str, Any] | None:
    return api.views.get(trigger)


async def test_after_slack_asks_for_a_refresh_the_client_reconnects_and_carries_on(
    socket_client: TestClient, slack_api: FakeSlackApi, clinic: Clinic
) -> None:
    before, opened = slack_api.connections, len(slack_api.received("/api/apps.connections.open"))
    slack_api.disconnect("refresh_requested")
    await eventually(lambda: _connected(slack_api, before), 15, "a new Socket Mode connection")
    assert len(slack_api.received("/api/apps.connections.open")) == opened + 1  # a fresh URL, not the used one

    _, fields = command_fields(slack_api, clinic.team, clinic.patient.chat_user, "/help")
    ack = await acked(slack_api, slack_api.envelope("slash_commands", fields))
    assert "CareBeacon commands" in text_of(ack["payload"])


async def test_an_events_api_envelope_reaches_the_event_listeners(
    socket_client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, pool: asyncpg.Pool
) -> None:
    event = {
        "token": "deprecated", "team_id": clinic.team, "api_app_id": "A0APP", "type": "event_callback",
        "event": {"type": "app_uninstalled", "event_ts": "1700000000.000100"}, "event_id": "Ev0SOCKET",
        "event_time": 1700000000, "authorizations": [{"team_id": clinic.team, "user_id": "UBOT", "is_bot": True}],
    }  # fmt: skip
    ack = await acked(slack_api, slack_api.envelope("events_api", event))

    async def revoked() -> bool:
        async with pool.acquire() as conn:
            live = await conn.fetchval(
                "SELECT count(*) FROM chat_identities WHERE workspace_id = $1 AND revoked_at IS NULL", clinic.team
            )
        return live == 0

    assert set(ack) == {"envelope_id"}  # an event takes a bare ack
    await eventually(revoked, 10, "the workspace's links revoked")


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"SLACK_SOCKET_MODE": "true", "SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_APP_TOKEN"),
        ({"SLACK_SOCKET_MODE": "yes", "SLACK_APP_TOKEN": "xapp-1"}, "SLACK_SOCKET_MODE"),
        ({"SLACK_SOCKET_MODE": "true", "SLACK_APP_TOKEN": "xoxb-not-an-app-token"}, "SLACK_APP_TOKEN"),
    ],
)
def test_socket_mode_settings_fail_at_boot_naming_the_variable(env: dict[str, str], problem: str) -> None:
    with pytest.raises(SettingError) as caught:
        SlackSettings.from_env(env)
    assert caught.value.name == problem and "xoxb-not" not in str(caught.value)


def test_socket_mode_with_a_bot_token_is_on_without_a_signing_secret() -> None:
    settings = SlackSettings.from_env({"SLACK_SOCKET_MODE": "true", "SLACK_APP_TOKEN": "xapp-1-A-1-x",
                                       "SLACK_BOT_TOKEN": "xoxb-1"})  # fmt: skip
    assert settings.off_reason is None and settings.socket_mode and "xapp" not in repr(settings)
    assert SlackSettings.from_env({"SLACK_BOT_TOKEN": "xoxb-1"}).off_reason == "SLACK_SIGNING_SECRET is not set"
