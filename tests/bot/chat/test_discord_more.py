"""Discord beyond the endpoint: linking with OAuth2 ``identify``, command registration, the
gateway's shared handler path, alerts posted by the bot with buttons (and Slack's), and the
tenancy admin API."""

# The fixtures are shared by importing them from test_discord (a conftest here is not ours to
# change); a fixture parameter then "redefines" the imported name, which is how pytest works.
# ruff: noqa: F811

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from bot import cli
from bot.commands import COMMANDS, Action, Button
from bot.discord import DiscordRest, Interactions, application_commands
from bot.discord.gateway import relay
from bot.discord.interaction import Incoming
from channels.destinations import DestinationPolicy
from channels.discord import Discord
from channels.http import Transport
from channels.slack import ALERT_ACTIONS, Slack
from db import api_keys, chat, tenants
from db.alerts import Alert
from pipeline import runtime
from tests.bot.chat.conftest import PUBLIC_URL
from tests.bot.chat.test_discord import (  # noqa: F401  (fixtures)
    Guild,
    buttons_of,
    discord_api,
    discord_client,
    discord_client_factory,
    discord_settings,
    guild,
    other_guild,
    press,
    raise_alert,
    reply_to,
    slash,
    snowflake,
    text_of,
)
from tests.fakes.discord_api import API, APP_ID, BOT_TOKEN, FakeDiscordApi

COOKIE = "cb-chat-link"
LOCAL = Transport(DestinationPolicy(allow_private=True), timeout=2.0)


# -- linking ------------------------------------------------------------------------------------------


async def _link_flow(client: TestClient, api: FakeDiscordApi, guild: Guild, owner: str, code: str) -> tuple[str, str]:
    """/connect as ``owner``, open the link, give the code: the state cookie and redirect URI."""
    sent = await slash(client, api, guild.guild_id, owner, "connect")
    (button,) = buttons_of(await reply_to(api, sent))
    token = parse_qs(urlsplit(button["url"]).query)["token"][0]
    page = await client.get(f"/chat/link?token={token}")
    assert page.status == 200 and "Link Discord user" in await page.text()
    response = await client.post("/chat/link", data={"token": token, "code": code}, allow_redirects=False)
    assert response.status == 302
    location = urlsplit(response.headers["Location"])
    query = parse_qs(location.query)
    assert location.path == "/oauth2/authorize" and query["scope"] == ["identify"] and query["client_id"] == [APP_ID]
    return response.cookies[COOKIE].value, query["redirect_uri"][0]


async def _code(pool: asyncpg.Pool, guild: Guild, external_id: str) -> tuple[int, str]:
    async with pool.acquire() as conn:
        user_id = await tenants.ensure_user(conn, guild.tenant_id, external_id, "Newcomer")
        return user_id, await chat.create_enrolment_code(conn, guild.tenant_id, user_id, "test")


async def _linked(pool: asyncpg.Pool, guild: Guild, member: str) -> int | None:
    async with pool.acquire() as conn:
        found = await chat.linked_user(conn, "discord", guild.guild_id, member)
    return found.user_id if found else None


async def test_the_link_owner_proves_their_discord_identity_and_is_linked(
    discord_client: TestClient, discord_api: FakeDiscordApi, guild: Guild, pool: asyncpg.Pool
) -> None:
    user_id, code = await _code(pool, guild, "discord-newcomer")
    owner = snowflake()
    state, redirect = await _link_flow(discord_client, discord_api, guild, owner, code)

    signed_in = discord_api.sign_in(owner, redirect)
    response = await discord_client.get(f"/chat/link/callback?code={signed_in}&state={state}",
                                        headers={"Cookie": f"{COOKIE}={state}"})  # fmt: skip

    assert response.status == 200
    assert await _linked(pool, guild, owner) == user_id


async def test_a_forwarded_discord_link_is_refused_and_burnt(
    discord_client: TestClient, discord_api: FakeDiscordApi, guild: Guild, pool: asyncpg.Pool
) -> None:
    _, victim_code = await _code(pool, guild, "discord-victim")
    attacker, victim = snowflake(), snowflake()
    state, redirect = await _link_flow(discord_client, discord_api, guild, attacker, victim_code)

    victim_signed_in = discord_api.sign_in(victim, redirect)
    response = await discord_client.get(f"/chat/link/callback?code={victim_signed_in}&state={state}",
                                        headers={"Cookie": f"{COOKIE}={state}"})  # fmt: skip

    assert response.status == 403 and "another chat account" in await response.text()
    assert await _linked(pool, guild, attacker) is None and await _linked(pool, guild, victim) is None
    async with pool.acquire() as conn:
        refused = await conn.fetchval(
            "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = 'chat.link_refused'", guild.tenant_id
        )
    assert refused == 1


# -- registration ---------------------------------------------------------------------------------------


def test_the_commands_are_built_from_the_core_definitions_within_discords_limits() -> None:
    built = {c["name"]: c for c in application_commands(COMMANDS.values())}
    assert set(built) == set(COMMANDS)
    score = built["score"]
    assert score["contexts"] == [0] and 1 <= len(score["description"]) <= 100
    (domain,) = [o for o in score["options"] if o["name"] == "domain"]
    assert domain["type"] == 3 and {c["value"] for c in domain["choices"]} >= {"sleep", "glycemic"}


@pytest.mark.parametrize("guild_arg", [["--guild", "561884984214814744"], []], ids=["guild", "global"])
def test_discord_register_puts_the_commands_in_one_bulk_overwrite(
    discord_api: FakeDiscordApi,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    guild_arg: list[str],
) -> None:
    for name, value in {"DISCORD_APPLICATION_ID": APP_ID, "DISCORD_BOT_TOKEN": BOT_TOKEN,
                        "DISCORD_API_URL": discord_api.api_url}.items():  # fmt: skip
        monkeypatch.setenv(name, value)

    assert cli.main(["discord-register", *guild_arg]) == 0

    where = guild_arg[1] if guild_arg else "global"
    path = f"{API}/applications/{APP_ID}" + (f"/guilds/{where}" if guild_arg else "") + "/commands"
    (request,) = discord_api.received(path)
    assert request.method == "PUT" and discord_api.problems[path] == []
    assert {c["name"] for c in discord_api.registered[where]} == set(COMMANDS)
    assert "registered 6 command(s)" in capsys.readouterr().out


# -- gateway mode ------------------------------------------------------------------------------------


async def test_a_gateway_interaction_goes_through_the_same_handlers_and_is_answered_by_callback(
    discord_api: FakeDiscordApi, guild: Guild, pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime
) -> None:
    """No live gateway: this drives ``relay``, the function ``Gateway.on_interaction`` calls with
    the interaction discord.py parsed, from an ``Incoming`` built as ``gateway.incoming`` builds it."""
    rest = DiscordRest(discord_settings(discord_api))
    handlers = Interactions(pool, pipeline_runtime.keyring, PUBLIC_URL, rest)
    token, interaction_id = discord_api.interaction(), snowflake()
    found = Incoming(interaction_id, 2, token, APP_ID, guild.guild_id, guild.nurse.snowflake, "938391701561679903",
                     {"name": "help", "type": 1})  # fmt: skip

    await relay(handlers, rest, found)
    await handlers.close()
    await rest.close()

    callback = f"{API}/interactions/{interaction_id}/{token}/callback"
    (answer,) = discord_api.bodies(callback)
    assert discord_api.problems[callback] == []
    assert answer["type"] == 4 and "/score" in text_of(answer["data"]) and answer["data"]["flags"] == 64


# -- alerts with buttons -------------------------------------------------------------------------------

ALERT = Alert(
    id=7, user_id=3, tenant_id=1, patient="Pat One", category="clinical", severity="critical", metric="spo2",
    title="Blood oxygen below 90 %", body="spo2 86 %", observed_value=86.0, threshold=90.0,
    recorded_at=datetime(2026, 11, 22, 7, tzinfo=UTC), created_at=datetime(2026, 11, 22, 7, 5, tzinfo=UTC),
)  # fmt: skip


def test_the_channel_button_ids_are_the_command_cores() -> None:
    assert tuple(a.value for a in Action) == ALERT_ACTIONS
    for action in ALERT_ACTIONS:
        assert Button.parse(f"{action}:7") == (Action(action), 7)


def test_slack_bot_token_alerts_carry_the_cores_buttons_and_webhooks_do_not() -> None:
    by_bot = Slack.parse_config({"token": "xoxb-1-2", "channel": "C0123ABCDEF", "buttons": True}, transport=LOCAL)
    plain = Slack.parse_config({"token": "xoxb-1-2", "channel": "C0123ABCDEF"}, transport=LOCAL)

    (actions,) = [b for b in by_bot.render(ALERT).payload["blocks"] if b["type"] == "actions"]
    assert [(e["action_id"], e["value"]) for e in actions["elements"]] == [(a, f"{a}:7") for a in ALERT_ACTIONS]
    assert actions["elements"][-1]["style"] == "danger" and "confirm" in actions["elements"][-1]
    assert not [b for b in plain.render(ALERT).payload["blocks"] if b["type"] == "actions"]
    acked = [
        b for b in by_bot.render(replace(ALERT, status="acknowledged")).payload["blocks"] if b["type"] == "actions"
    ]
    assert "ack" not in [e["action_id"] for e in acked[0]["elements"]]
    with pytest.raises(Exception, match="buttons need a bot token"):
        Slack.parse_config({"webhook_url": "https://hooks.slack.com/services/T/B/x", "buttons": True}, transport=LOCAL)


async def test_the_discord_bot_posts_an_alert_with_buttons_and_a_click_on_it_acts(
    discord_api: FakeDiscordApi, discord_client: TestClient, guild: Guild, pool: asyncpg.Pool
) -> None:
    channel_id = snowflake()
    channel = Discord.parse_config(
        {"bot_token": BOT_TOKEN, "channel_id": channel_id, "api_base": discord_api.api_url}, transport=LOCAL
    )
    alert_id = await raise_alert(pool, guild)

    outcome = await channel.send(channel.render(replace(ALERT, id=alert_id)))

    path = f"{API}/channels/{channel_id}/messages"
    assert outcome.status.value == "delivered" and discord_api.problems[path] == []
    (posted,) = discord_api.bodies(path)
    ids = [b["custom_id"] for b in buttons_of(posted)]
    assert ids == [f"{a}:{alert_id}" for a in ALERT_ACTIONS]
    assert BOT_TOKEN not in repr(channel.config)

    clicked = await press(discord_client, discord_api, guild.guild_id, guild.nurse.snowflake, ids[2])  # snooze 4h
    answer = await clicked.json()
    assert answer["type"] == 7 and "Snoozed by Nurse" in text_of(answer["data"])


def test_a_discord_channel_takes_a_webhook_or_a_bot_not_both() -> None:
    with pytest.raises(Exception, match="not both"):
        Discord.parse_config({"url": "https://discord.com/api/webhooks/1/x", "bot_token": "t", "channel_id": "123456"},
                             transport=LOCAL)  # fmt: skip
    with pytest.raises(Exception, match="channel_id must be"):
        Discord.parse_config({"bot_token": "t", "channel_id": "#general"}, transport=LOCAL)


# -- tenancy admin API ------------------------------------------------------------------------------------


async def test_an_admin_key_binds_a_guild_and_issues_an_enrolment_code(
    discord_client: TestClient, guild: Guild, other_guild: Guild, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        _, admin = await api_keys.create(conn, guild.tenant_id, "chat-admin", ["admin"])
        _, reader = await api_keys.create(conn, guild.tenant_id, "reader", ["read"])
    headers = {"Authorization": f"Bearer {admin}"}
    new_guild = snowflake()

    new = {"platform": "discord", "workspace_id": new_guild, "name": "Ward 2"}
    bound = await discord_client.post("/v1/chat/workspaces", headers=headers, json=new)
    taken = await discord_client.post("/v1/chat/workspaces", headers=headers,
                                      json={"platform": "discord", "workspace_id": other_guild.guild_id})  # fmt: skip
    listed = await discord_client.get("/v1/chat/workspaces", headers=headers)
    code = await discord_client.post("/v1/chat/enrolment-codes", headers=headers,
                                     json={"user_id": guild.patient.user_id})  # fmt: skip
    foreign = await discord_client.post("/v1/chat/enrolment-codes", headers=headers,
                                        json={"user_id": other_guild.patient.user_id})  # fmt: skip
    forbidden = await discord_client.get("/v1/chat/workspaces", headers={"Authorization": f"Bearer {reader}"})

    assert bound.status == 201 and (await bound.json())["workspace_id"] == new_guild
    assert taken.status == 409
    assert {w["workspace_id"] for w in (await listed.json())["data"]} == {guild.guild_id, new_guild}
    assert code.status == 201 and len((await code.json())["code"]) >= 12
    assert foreign.status == 404 and forbidden.status == 403
    async with pool.acquire() as conn:
        assert await chat.workspace_tenant(conn, "discord", new_guild) == guild.tenant_id
