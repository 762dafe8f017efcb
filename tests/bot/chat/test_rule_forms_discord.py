"""/rules add and /rules edit as Discord modals, through the real Ed25519-signed endpoint: a
MODAL response (type 9) with text inputs in action rows, then MODAL_SUBMIT (type 5) validated by
the core; errors come back in an ephemeral message.  Authorised and audited as typed commands."""

# The fixtures are shared by importing them from test_discord (see test_discord_more).
# ruff: noqa: F811

from __future__ import annotations

from datetime import time as clock
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from bot.discord import DiscordRest, Interactions
from bot.discord.gateway import relay
from bot.discord.interaction import Incoming
from db import notification_channels, notification_rules
from pipeline import runtime
from tests.bot.chat.conftest import PUBLIC_URL
from tests.bot.chat.test_discord import (  # noqa: F401  (fixtures)
    Guild,
    discord_api,
    discord_client,
    discord_client_factory,
    discord_settings,
    edited,
    guild,
    interaction,
    other_guild,
    post,
    slash,
    snowflake,
    text_of,
)
from tests.fakes.discord_api import API, APP_ID, FakeDiscordApi, modal_problems


async def channel_of(pool: asyncpg.Pool, keyring: Any, guild: Guild) -> int:
    async with pool.acquire() as conn:
        channel_id: int = await notification_channels.create_channel(
            conn, keyring, tenant_id=guild.tenant_id, kind="console", label="ward", config={"path": "/dev/null"}
        )
    return channel_id


async def open_modal(client: TestClient, api: FakeDiscordApi, guild: Guild, user: str, **options: str) -> dict:
    sent = await slash(client, api, guild.guild_id, user, "rules", **options)
    assert sent.response.status == 200 and sent.elapsed < 3.0
    answer: dict[str, Any] = await sent.json()
    assert answer["type"] == 9, answer
    assert modal_problems(answer["data"]) == []
    return answer["data"]


async def send(client: TestClient, api: FakeDiscordApi, guild: Guild, user: str, form_id: str,
               values: dict[str, str], *, labels: bool = False) -> dict[str, Any]:  # fmt: skip
    """A MODAL_SUBMIT with ``values``: text inputs in action rows, or (``labels``) in label components."""
    if labels:
        rows = [{"type": 18, "id": i, "component": {"type": 4, "id": i + 10, "custom_id": k, "value": v}}
                for i, (k, v) in enumerate(values.items())]  # fmt: skip
    else:
        rows = [{"type": 1, "components": [{"type": 4, "custom_id": k, "value": v}]} for k, v in values.items()]
    sent = await post(client, interaction(5, guild.guild_id, user, api.interaction(),
                                          {"custom_id": form_id, "components": rows}))  # fmt: skip
    assert sent.response.status == 200 and sent.elapsed < 3.0
    answer: dict[str, Any] = await sent.json()
    return answer


async def rules_of(pool: asyncpg.Pool, tenant_id: int) -> list[notification_rules.RuleRow]:
    async with pool.acquire() as conn:
        return await notification_rules.rule_page(conn, tenant_id, 0, 100)


async def test_rules_add_answers_a_modal_of_five_text_inputs(
    discord_client: TestClient, discord_api: FakeDiscordApi, guild: Guild
) -> None:
    modal = await open_modal(discord_client, discord_api, guild, guild.nurse.snowflake, action="add")

    assert modal["custom_id"] == "rules:add" and modal["title"] == "New alert rule"
    inputs = [row["components"][0] for row in modal["components"]]
    assert [i["custom_id"] for i in inputs] == ["name", "channels", "severity", "quiet", "metrics"]
    assert inputs[0]["required"] is True and inputs[2]["value"] == "warning"


async def test_an_invalid_submission_is_answered_privately_with_each_error_and_saves_nothing(
    discord_client: TestClient, discord_api: FakeDiscordApi, guild: Guild, pool: asyncpg.Pool
) -> None:
    bad = {"name": "", "channels": "ward", "severity": "loud", "quiet": "22:00", "metrics": ""}
    answer = await send(discord_client, discord_api, guild, guild.nurse.snowflake, "rules:add", bad)

    assert answer["type"] == 4 and answer["data"]["flags"] == 64
    shown = text_of(answer["data"])
    assert "Please correct the form" in shown
    for label in ("Name", "Channels", "Minimum severity", "Quiet hours"):
        assert label in shown
    assert "must be one of info, warning, critical" in shown and "Metrics" not in shown
    assert await rules_of(pool, guild.tenant_id) == []


async def test_a_valid_submission_adds_the_rule_in_either_component_layout(
    discord_client: TestClient, discord_api: FakeDiscordApi, guild: Guild, pool: asyncpg.Pool,
    pipeline_runtime: runtime.Runtime,
) -> None:  # fmt: skip
    channel_id = await channel_of(pool, pipeline_runtime.keyring, guild)
    first = await send(discord_client, discord_api, guild, guild.nurse.snowflake, "rules:add",
                       {"name": "Night", "channels": str(channel_id), "severity": "critical",
                        "quiet": "22:00-07:00", "metrics": "heart_rate"})  # fmt: skip
    second = await send(discord_client, discord_api, guild, guild.nurse.snowflake, "rules:add",
                        {"name": "Labels", "channels": str(channel_id)}, labels=True)  # fmt: skip

    night, labels = await rules_of(pool, guild.tenant_id)
    assert first["type"] == 4 and first["data"]["flags"] == 64
    assert f"Rule #{night.id} added" in text_of(first["data"]) and f"Rule #{labels.id} added" in text_of(second["data"])
    assert (night.name, night.min_severity, night.quiet_start, night.metrics) == ("Night", "critical", clock(22),
                                                                                  ["heart_rate"])  # fmt: skip
    assert (labels.name, labels.channel_ids, labels.min_severity) == ("Labels", [channel_id], "warning")
    assert night.owner_user_id == guild.nurse.user_id
    async with pool.acquire() as conn:
        via = await conn.fetchval("SELECT details->>'via' FROM audit_events WHERE action = 'chat.rule_added'"
                                  " AND subject_id = $1", night.id)  # fmt: skip
    assert via == "form"


async def test_rules_edit_answers_the_rule_prefilled_and_a_submission_updates_it(
    discord_client: TestClient, discord_api: FakeDiscordApi, guild: Guild, pool: asyncpg.Pool,
    pipeline_runtime: runtime.Runtime,
) -> None:  # fmt: skip
    channel_id = await channel_of(pool, pipeline_runtime.keyring, guild)
    async with pool.acquire() as conn:
        rule_id = await notification_rules.create_rule(
            conn, tenant_id=guild.tenant_id, name="Mine", channel_id=channel_id, owner_user_id=guild.nurse.user_id
        )
    modal = await open_modal(discord_client, discord_api, guild, guild.nurse.snowflake, action="edit",
                             arguments=str(rule_id))  # fmt: skip
    values = {row["components"][0]["custom_id"]: row["components"][0].get("value", "") for row in modal["components"]}
    answer = await send(discord_client, discord_api, guild, guild.nurse.snowflake, modal["custom_id"],
                        values | {"name": "Renamed", "quiet": "21:30-06:00"})  # fmt: skip

    assert modal["custom_id"] == f"rules:edit:{rule_id}" and values["name"] == "Mine"
    assert values["channels"] == str(channel_id)
    assert "updated" in text_of(answer["data"])
    (rule,) = await rules_of(pool, guild.tenant_id)
    assert (rule.name, rule.quiet_start, rule.quiet_end) == ("Renamed", clock(21, 30), clock(6))


async def test_someone_elses_rule_gets_no_modal_and_a_forged_submission_is_refused(
    discord_client: TestClient, discord_api: FakeDiscordApi, guild: Guild, other_guild: Guild, pool: asyncpg.Pool,
    pipeline_runtime: runtime.Runtime,
) -> None:  # fmt: skip
    channel_id = await channel_of(pool, pipeline_runtime.keyring, guild)
    async with pool.acquire() as conn:
        rule_id = await notification_rules.create_rule(
            conn, tenant_id=guild.tenant_id, name="Nurse's", channel_id=channel_id, owner_user_id=guild.nurse.user_id
        )
    opened = await slash(discord_client, discord_api, guild.guild_id, guild.outsider.snowflake, "rules",
                         action="edit", arguments=str(rule_id))  # fmt: skip
    forged = [
        await send(discord_client, discord_api, g, user, f"rules:edit:{rule_id}", {"name": "Taken"})
        for g, user in ((guild, guild.outsider.snowflake), (other_guild, other_guild.nurse.snowflake))
    ]

    answer = await opened.json()
    assert answer["type"] == 4 and answer["data"]["flags"] == 64 and "Not allowed" in text_of(answer["data"])
    for refused in forged:
        assert refused["data"]["flags"] == 64 and "Not allowed" in text_of(refused["data"])
    (rule,) = await rules_of(pool, guild.tenant_id)
    assert rule.name == "Nurse's"
    async with pool.acquire() as conn:
        denied = await conn.fetchval(
            "SELECT count(*) FROM audit_events WHERE action = 'chat.denied' AND tenant_id = ANY($1::bigint[])",
            [guild.tenant_id, other_guild.tenant_id],
        )
    assert denied == 3


async def test_typed_arguments_are_answered_with_a_message_not_a_modal(
    discord_client: TestClient, discord_api: FakeDiscordApi, guild: Guild
) -> None:
    sent = await slash(discord_client, discord_api, guild.guild_id, guild.nurse.snowflake, "rules",
                       action="add", arguments="name=x")  # fmt: skip
    answer = await sent.json()
    assert answer["type"] == 4 and answer["data"]["flags"] == 64 and discord_api.answer_problems(answer) == []


async def test_over_the_gateway_the_modal_goes_to_the_callback_endpoint_in_the_documented_shape(
    discord_api: FakeDiscordApi, guild: Guild, pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime
) -> None:
    rest = DiscordRest(discord_settings(discord_api))
    handlers = Interactions(pool, pipeline_runtime.keyring, PUBLIC_URL, rest)
    token, interaction_id = discord_api.interaction(), snowflake()
    data = {"name": "rules", "type": 1, "options": [{"name": "action", "type": 3, "value": "add"}]}
    found = Incoming(
        interaction_id, 2, token, APP_ID, guild.guild_id, guild.nurse.snowflake, "938391701561679903", data
    )

    await relay(handlers, rest, found)
    await handlers.close()
    await rest.close()

    callback = f"{API}/interactions/{interaction_id}/{token}/callback"
    (body,) = discord_api.bodies(callback)
    assert body["type"] == 9 and body["data"]["custom_id"] == "rules:add"
    assert discord_api.problems[callback] == []


async def test_a_form_that_takes_over_the_budget_is_deferred_and_its_reply_says_how_to_type_it(
    discord_client: TestClient, discord_api: FakeDiscordApi, guild: Guild, pool: asyncpg.Pool,
    pipeline_runtime: runtime.Runtime,
) -> None:  # fmt: skip
    channel_id = await channel_of(pool, pipeline_runtime.keyring, guild)
    async with pool.acquire() as conn:
        rule_id = await notification_rules.create_rule(
            conn, tenant_id=guild.tenant_id, name="Busy", channel_id=channel_id, owner_user_id=guild.nurse.user_id
        )
    # Another writer holds the rule's row: opening its form waits past the 2 s budget.
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM notification_rules WHERE id = $1 FOR UPDATE", rule_id)
        sent = await slash(discord_client, discord_api, guild.guild_id, guild.nurse.snowflake, "rules",
                           action="edit", arguments=str(rule_id))  # fmt: skip
        first = await sent.json()

    reply = await edited(discord_api, sent.token)
    assert sent.elapsed < 3.0 and first == {"type": 5, "data": {"flags": 64}}
    assert f"/rules edit {rule_id} key=value" in text_of(reply) and reply["flags"] == 64
