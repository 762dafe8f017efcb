"""The Discord front end over real HTTP: /discord/interactions on a TestServer, requests signed
with Ed25519 the way Discord signs them, Discord's API as a local fake that checks the
documented shapes, and a clinic whose guild is bound to its tenant."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import asyncpg
import dramatiq
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bot.app import make_app
from bot.commands import background
from bot.discord.endpoint import VERIFIER
from bot.discord.settings import DiscordSettings
from bot.discord.verify import Verifier
from bot.settings import BotSettings
from bot.slack.settings import SlackSettings
from db import chat, notification_rules, tenants
from pipeline import runtime
from tests.bot.chat.conftest import PUBLIC_URL
from tests.fakes.discord_api import APP_ID, BOT_TOKEN, CLIENT_SECRET, FakeDiscordApi
from tests.helpers import eventually

# RFC 8032 §7.1 TEST 1: a published key pair (reference §5.2); never used outside tests.
RFC_SECRET = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
RFC_EMPTY_SIGNATURE = (
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)
PING_TIMESTAMP, PING_BODY = "1700000000", b'{"type":1}'
PING_SIGNATURE = (
    "1695961a47c91a1ec033b819b7e87e3dbc583dd0cee6d1fd0216f58ac87b6228"
    "ae531ddbf91fb7bc28d7edf7f08604da16f54624f38a6bc0614e4dc13cd47f0f"
)
SIGNER = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(RFC_SECRET))


@pytest.fixture(scope="session")
def discord_api() -> Iterator[FakeDiscordApi]:
    server = FakeDiscordApi().start()
    yield server
    server.stop()


def discord_settings(api: FakeDiscordApi, **overrides: Any) -> DiscordSettings:
    values: dict[str, Any] = {
        "public_key": RFC_PUBLIC, "application_id": APP_ID, "bot_token": BOT_TOKEN, "client_secret": CLIENT_SECRET,
        "api_url": api.api_url, "authorize_url": f"{api.url}/oauth2/authorize",
    } | overrides  # fmt: skip
    return DiscordSettings(**values)


AppFactory = Callable[..., Any]


@pytest.fixture
async def discord_client_factory(
    pipeline_runtime: runtime.Runtime, pool: asyncpg.Pool, discord_api: FakeDiscordApi
) -> AsyncIterator[Callable[..., Any]]:
    """Opens TestClients on the app with Discord on (Slack off); ``clock`` fixes the verifier's time."""
    opened: list[TestClient] = []

    async def open_client(clock: Callable[[], float] | None = None) -> TestClient:
        app = make_app(pool, pipeline_runtime.broker, settings=BotSettings(public_url=PUBLIC_URL),
                       slack=SlackSettings(), discord=discord_settings(discord_api))  # fmt: skip
        if clock is not None:
            app[VERIFIER] = Verifier(RFC_PUBLIC, clock=clock)
        client = TestClient(TestServer(app))
        await client.start_server()
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        await client.close()


@pytest.fixture
async def discord_client(discord_client_factory: Callable[..., Any]) -> TestClient:
    client: TestClient = await discord_client_factory()
    return client


@dataclass(frozen=True)
class Member:
    user_id: int
    external_id: str
    snowflake: str  # linked in the clinic's guild


@dataclass(frozen=True)
class Guild:
    tenant_id: int
    guild_id: str
    patient: Member
    nurse: Member  # acts in the patient's care team
    viewer: Member
    outsider: Member  # same tenant, no care team


def snowflake() -> str:
    return str(secrets.randbelow(10**18) + 10**17)


async def make_guild(pool: asyncpg.Pool, label: str) -> Guild:
    slug = f"{label}-{secrets.token_hex(3)}"
    guild_id = snowflake()
    async with pool.acquire() as conn:
        tenant_id = await tenants.ensure_tenant(conn, slug, slug.title())
        await chat.bind_workspace(conn, "discord", guild_id, tenant_id, "Clinic server")
        people = {}
        for role in ("patient", "nurse", "viewer", "outsider"):
            user_id = await tenants.ensure_user(conn, tenant_id, f"{role}-1", role.title())
            member = snowflake()
            await conn.execute(
                "INSERT INTO chat_identities (platform, workspace_id, chat_user_id, tenant_id, user_id, linked_via)"
                " VALUES ('discord', $1, $2, $3, $4, 'test')",
                guild_id, member, tenant_id, user_id,
            )  # fmt: skip
            people[role] = Member(user_id, f"{role}-1", member)
        team_id = await notification_rules.create_care_team(conn, tenant_id=tenant_id, name="Cardio")
        await conn.execute("INSERT INTO care_team_patients (care_team_id, patient_id) VALUES ($1, $2)",
                           team_id, people["patient"].user_id)  # fmt: skip
        await conn.executemany(
            "INSERT INTO care_team_members (care_team_id, user_id, role) VALUES ($1, $2, $3)",
            [(team_id, people["nurse"].user_id, "nurse"), (team_id, people["viewer"].user_id, "viewer")],
        )
    return Guild(tenant_id, guild_id, people["patient"], people["nurse"], people["viewer"], people["outsider"])


@pytest.fixture
async def guild(pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime) -> Guild:
    return await make_guild(pool, "guild")


@pytest.fixture
async def other_guild(pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime) -> Guild:
    return await make_guild(pool, "otherguild")


def signed(body: bytes, *, timestamp: int | None = None, key: Ed25519PrivateKey = SIGNER) -> dict[str, str]:
    """Headers as Discord sends them: Ed25519 over ``timestamp + body``, hex."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "X-Signature-Ed25519": key.sign(ts.encode() + body).hex(),
        "X-Signature-Timestamp": ts,
        "Content-Type": "application/json",
    }


def interaction(kind: int, guild_id: str, user: str, token: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": snowflake(), "application_id": APP_ID, "type": kind, "token": token, "version": 1,
        "guild_id": guild_id, "channel_id": "938391701561679903", "locale": "en-GB",
        "member": {"user": {"id": user, "username": "someone", "discriminator": "0"}, "roles": [],
                   "permissions": "0"},
        "data": data,
    }  # fmt: skip


@dataclass
class Sent:
    response: ClientResponse
    elapsed: float
    token: str

    async def json(self) -> dict[str, Any]:
        found: dict[str, Any] = await self.response.json()
        return found


async def post(client: TestClient, payload: dict[str, Any]) -> Sent:
    body = json.dumps(payload).encode()
    started = time.monotonic()
    response = await client.post("/discord/interactions", data=body, headers=signed(body))
    return Sent(response, time.monotonic() - started, payload["token"])


async def slash(client: TestClient, api: FakeDiscordApi, guild_id: str, user: str, name: str, **options: str) -> Sent:
    data = {"id": snowflake(), "name": name, "type": 1,
            "options": [{"name": k, "type": 3, "value": v} for k, v in options.items()]}  # fmt: skip
    return await post(client, interaction(2, guild_id, user, api.interaction(), data))


async def press(client: TestClient, api: FakeDiscordApi, guild_id: str, user: str, custom_id: str) -> Sent:
    payload = interaction(3, guild_id, user, api.interaction(), {"custom_id": custom_id, "component_type": 2})
    payload["message"] = {"id": snowflake(), "channel_id": "938391701561679903", "content": "", "embeds": []}
    return await post(client, payload)


async def edited(api: FakeDiscordApi, token: str, timeout: float = 15) -> dict[str, Any]:
    """The reply PATCHed over the deferred one; the fake found nothing wrong with it."""
    path = api.original(token)

    async def arrived() -> list[dict[str, Any]] | None:
        return api.bodies(path) or None

    (found,) = await eventually(arrived, timeout, f"the reply at {path}")
    assert api.problems[path] == []
    return found


def text_of(message: dict[str, Any]) -> str:
    parts = [message.get("content", "")]
    for embed in message.get("embeds", []):
        parts += [embed.get("title", ""), embed.get("description", ""), embed.get("footer", {}).get("text", "")]
        parts += [f"{f['name']}\n{f['value']}" for f in embed.get("fields", [])]
    return "\n".join(parts)


def buttons_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for row in message.get("components", []) for b in row["components"]]


async def reply_to(api: FakeDiscordApi, sent: Sent) -> dict[str, Any]:
    """A command's reply: the initial response's message (type 4) when the command was done within
    the answer budget, else the one PATCHed over the deferral (type 5, ephemeral)."""
    first = await sent.json()
    if first["type"] == 4:
        assert api.answer_problems(first) == []
        reply: dict[str, Any] = first["data"]
        return reply
    assert first == {"type": 5, "data": {"flags": 64}}
    return await edited(api, sent.token)


async def run(client: TestClient, api: FakeDiscordApi, guild: Guild, user: str, name: str, **options: str) -> dict:
    """A command through the endpoint: answered within 3 s, ephemeral, mentioning nobody."""
    sent = await slash(client, api, guild.guild_id, user, name, **options)
    assert sent.response.status == 200 and sent.elapsed < 3.0  # Discord's deadline for the initial response
    reply = await reply_to(api, sent)
    assert reply["flags"] == 64 and reply["allowed_mentions"] == {"parse": []}
    return reply


# -- signatures -------------------------------------------------------------------------------------


def test_the_published_vectors_verify() -> None:
    # RFC 8032 TEST 1: the empty message, and the PING derived from it (reference §5.2).
    assert SIGNER.sign(b"").hex() == RFC_EMPTY_SIGNATURE
    assert SIGNER.sign(PING_TIMESTAMP.encode() + PING_BODY).hex() == PING_SIGNATURE
    at_ping = Verifier(RFC_PUBLIC, clock=lambda: int(PING_TIMESTAMP))
    assert at_ping.valid(PING_SIGNATURE, PING_TIMESTAMP, PING_BODY)
    # A real Discord-signed interaction (hikari's suite), and that suite's negative vector.
    assert len(HIKARI_BODY) == 891
    assert hashlib.sha256(HIKARI_BODY).hexdigest() == "33149f5b66a1eb20c3b37917195bb1c40b2f2c14e99f1c57d9dbe6afb39339e6"
    hikari = Verifier(HIKARI_KEY, clock=lambda: 1643807576)
    assert hikari.valid(HIKARI_SIGNATURE, "1643807576", HIKARI_BODY)
    assert not hikari.valid(HIKARI_SIGNATURE, "1643807576", HIKARI_BODY[:-2] + b"2}")
    assert not Verifier(HIKARI_KEY, clock=lambda: 1619885620).valid(INVALID_SIGNATURE, "1619885620", INVALID_BODY)


async def test_the_derived_ping_vector_gets_a_pong_at_its_time_and_401_today(
    discord_client_factory: Callable[..., Any],
) -> None:
    headers = {"X-Signature-Ed25519": PING_SIGNATURE, "X-Signature-Timestamp": PING_TIMESTAMP,
               "Content-Type": "application/json"}  # fmt: skip
    then = await discord_client_factory(clock=lambda: int(PING_TIMESTAMP))
    now = await discord_client_factory()

    at_its_time = await then.post("/discord/interactions", data=PING_BODY, headers=headers)
    today = await now.post("/discord/interactions", data=PING_BODY, headers=headers)

    assert at_its_time.status == 200 and at_its_time.content_type == "application/json"
    assert await at_its_time.json() == {"type": 1}
    assert today.status == 401  # five minutes is our window; the vector is from 2023


async def test_a_ping_signed_now_gets_a_pong(discord_client: TestClient) -> None:
    response = await discord_client.post("/discord/interactions", data=PING_BODY, headers=signed(PING_BODY))
    assert response.status == 200 and await response.json() == {"type": 1}


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda body, headers: (body + b" ", headers), id="tampered body"),
        pytest.param(lambda body, headers: (body, signed(body, timestamp=int(time.time()) - 301)), id="stale"),
        pytest.param(lambda body, headers: (body, signed(body, timestamp=int(time.time()) + 301)), id="future"),
        pytest.param(lambda body, headers: (body, signed(body, key=Ed25519PrivateKey.generate())), id="wrong key"),
        pytest.param(lambda body, headers: (body, {"Content-Type": "application/json"}), id="unsigned"),
        pytest.param(lambda body, headers: (body, headers | {"X-Signature-Ed25519": "zz"}), id="not hex"),
    ],
)
async def test_a_request_not_signed_by_discord_now_gets_401(
    discord_client: TestClient, discord_api: FakeDiscordApi, spoil: Callable[..., Any]
) -> None:
    body = json.dumps(interaction(2, snowflake(), snowflake(), discord_api.interaction(), {"name": "help"})).encode()
    spoilt_body, headers = spoil(body, signed(body))
    response = await discord_client.post("/discord/interactions", data=spoilt_body, headers=headers)
    assert response.status == 401


async def test_a_replayed_interaction_is_refused(discord_client: TestClient, discord_api: FakeDiscordApi) -> None:
    payload = interaction(2, snowflake(), snowflake(), discord_api.interaction(), {"name": "help"})
    first = await post(discord_client, payload)
    again = await post(discord_client, payload)
    assert (first.response.status, again.response.status) == (200, 401)


# -- every command ---------------------------------------------------------------------------------


async def test_help_lists_the_commands_a_linked_member_may_use_and_only_help_and_connect_unlinked(
    discord_client: TestClient, discord_api: FakeDiscordApi, guild: Guild
) -> None:
    linked = await run(discord_client, discord_api, guild, guild.nurse.snowflake, "help")
    unlinked = await run(discord_client, discord_api, guild, snowflake(), "help")

    for name in ("/help", "/connect", "/sync", "/score", "/alerts", "/rules"):
        assert name in text_of(linked)
    assert "/connect" in text_of(unlinked) and "/score" not in text_of(unlinked)


async def test_a_quick_command_is_the_initial_response_and_a_slow_one_is_deferred_then_patched(
    discord_client: TestClient, discord_api: FakeDiscordApi, guild: Guild, monkeypatch: pytest.MonkeyPatch
) -> None:
    quick = await slash(discord_client, discord_api, guild.guild_id, guild.nurse.snowflake, "help")
    answer = await quick.json()
    assert answer["type"] == 4 and "/score" in text_of(answer["data"]) and answer["data"]["flags"] == 64

    monkeypatch.setattr(background, "ANSWER_BUDGET", 0)  # no command is that quick
    slow = await slash(discord_client, discord_api, guild.guild_id, guild.nurse.snowflake, "help")
    assert await slow.json() == {"type": 5, "data": {"flags": 64}}
    assert "/score" in text_of(await edited(discord_api, slow.token))
    assert discord_api.bodies(discord_api.original(quick.token)) == []  # answered once: in the response


async def test_connect_gives_an_unlinked_member_a_link_button_to_our_link_page(
    discord_client: TestClient, discord_api: FakeDiscordApi, guild: Guild
) -> None:
    reply = await run(discord_client, discord_api, guild, snowflake(), "connect")
    (button,) = buttons_of(reply)
    assert button["style"] == 5 and button["url"].startswith(f"{PUBLIC_URL}/chat/link?token=")


async def test_connect_with_a_provider_links_to_connect_start_never_to_an_authorize_url(
    discord_client: TestClient, discord_api: FakeDiscordApi, guild: Guild
) -> None:
    listing = await run(discord_client, discord_api, guild, guild.patient.snowflake, "connect")
    start = await run(discord_client, discord_api, guild, guild.patient.snowflake, "connect", provider="oura")

    assert "Oura" in text_of(listing) and "not connected" in text_of(listing)
    (button,) = buttons_of(start)
    assert button["url"].startswith(f"{PUBLIC_URL}/connect/start?")
    assert "authorize" not in json.dumps(start)


async def test_sync_acks_at_once_and_the_follow_up_webhook_gets_the_result(
    discord_client: TestClient, discord_api: FakeDiscordApi, guild: Guild, pool: asyncpg.Pool,
    pipeline_runtime: runtime.Runtime, worker: dramatiq.Worker,
) -> None:  # fmt: skip
    from db import connections
    from pipeline.providers.simulator import issue_tokens
    from tests.bot.chat.test_commands import settle_followup

    async with pool.acquire() as conn:
        await connections.upsert(conn, pipeline_runtime.keyring, user_id=guild.patient.user_id,
                                 provider="simulator", tokens=issue_tokens(), settings={"seed": "discord"})  # fmt: skip
    sent = await slash(discord_client, discord_api, guild.guild_id, guild.patient.snowflake, "sync")
    assert sent.response.status == 200 and sent.elapsed < 3.0
    started = await reply_to(discord_api, sent)
    assert "Sync started" in text_of(started) and started["flags"] == 64

    await settle_followup(pool, pipeline_runtime, guild.tenant_id)
    path = discord_api.followups(sent.token)
    (finished,) = await eventually(lambda: _bodies(discord_api, path), 30, "the /sync follow-up")
    assert finished["flags"] == 64 and "Sync finished" in finished["content"] and "rows stored" in finished["content"]
    assert discord_api.problems[path] == []


async def _bodies(api: FakeDiscordApi, path: str) -> list[dict[str, Any]] | None:
    return api.bodies(path) or None


async def test_score_replies_with_an_embed_and_the_chart_attached_as_files_0(
    discord_client: TestClient, discord_api: FakeDiscordApi, guild: Guild, pool: asyncpg.Pool
) -> None:
    today = date.today()
    async with pool.acquire() as conn:
        for days_ago in range(10):
            await conn.execute(
                "INSERT INTO health_scores (user_id, day, domain, score, contributors)"
                " VALUES ($1, $2, 'sleep', $3, $4)",
                guild.patient.user_id, today - timedelta(days=days_ago), 60.0 + days_ago,
                {"duration": {"input": 7.1, "score": 80, "weight": 0.6}, "partial": False},
            )  # fmt: skip
    sent = await slash(discord_client, discord_api, guild.guild_id, guild.patient.snowflake, "score", domain="sleep")
    assert sent.elapsed < 3.0 and await sent.json() == {"type": 5, "data": {"flags": 64}}
    reply = await edited(discord_api, sent.token)

    (embed,) = reply["embeds"]
    assert embed["title"] == "Your scores: sleep" and "duration 80 (60%)" in text_of(reply)
    assert embed["image"] == {"url": "attachment://trend.png"} and reply["flags"] == 64
    (png,) = discord_api.files[discord_api.original(sent.token)]
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


async def test_score_of_a_patient_outside_the_invokers_care_teams_is_refused(
    discord_client: TestClient, discord_api: FakeDiscordApi, guild: Guild
) -> None:
    reply = await run(discord_client, discord_api, guild, guild.outsider.snowflake, "score",
                      patient=guild.patient.external_id)  # fmt: skip
    assert "Not allowed" in text_of(reply) or "not" in text_of(reply).lower()
    assert "scores" not in reply["embeds"][0]["title"].lower()


async def test_alerts_shows_a_nurse_the_patients_open_alerts(
    discord_client: TestClient, discord_api: FakeDiscordApi, guild: Guild, pool: asyncpg.Pool
) -> None:
    alert_id = await raise_alert(pool, guild)
    reply = await run(discord_client, discord_api, guild, guild.nurse.snowflake, "alerts",
                      patient=guild.patient.external_id)  # fmt: skip
    assert f"#{alert_id}" in text_of(reply) and "Heart rate high" in text_of(reply)


async def test_rules_take_an_action_choice_and_free_arguments(
    discord_client: TestClient, discord_api: FakeDiscordApi, guild: Guild, pool: asyncpg.Pool,
    pipeline_runtime: runtime.Runtime,
) -> None:  # fmt: skip
    from db import notification_channels

    async with pool.acquire() as conn:
        channel_id = await notification_channels.create_channel(
            conn, pipeline_runtime.keyring, tenant_id=guild.tenant_id, kind="console", label="ward",
            config={"path": "/dev/null"},
        )  # fmt: skip
    user = guild.nurse.snowflake
    bad = await run(discord_client, discord_api, guild, user, "rules", action="add",
                    arguments=f"name=night channel={channel_id} severity=loud")  # fmt: skip
    added = await run(discord_client, discord_api, guild, user, "rules", action="add",
                      arguments=f'name="night watch" channel={channel_id} severity=critical')  # fmt: skip
    listed = await run(discord_client, discord_api, guild, user, "rules")

    assert "severity= must be one of" in text_of(bad)
    assert "added" in text_of(added) and "night watch" in text_of(listed)


async def test_a_guild_bound_to_no_tenant_gets_nothing(discord_client: TestClient, discord_api: FakeDiscordApi) -> None:
    stranger = Guild(0, snowflake(), *(Member(0, "", snowflake()) for _ in range(4)))
    reply = await run(discord_client, discord_api, stranger, stranger.nurse.snowflake, "score")
    assert "not set up" in text_of(reply)


# -- alert buttons -------------------------------------------------------------------------------------


async def raise_alert(pool: asyncpg.Pool, guild: Guild) -> int:
    async with pool.acquire() as conn:
        alert_id: int = await conn.fetchval(
            "INSERT INTO alerts (user_id, category, severity, metric, title, body, dedupe_key)"
            " VALUES ($1, 'vitals', 'critical', 'heart_rate', 'Heart rate high', 'HR 150 at rest', $2) RETURNING id",
            guild.patient.user_id,
            f"discord-test:{guild.guild_id}:{secrets.token_hex(3)}",
        )
    return alert_id


async def count(pool: asyncpg.Pool, sql: str, *args: Any) -> int:
    async with pool.acquire() as conn:
        found: int = await conn.fetchval(sql, *args)
    return found


async def test_a_nurses_click_updates_the_message_with_the_redrawn_card_and_a_second_is_harmless(
    discord_client: TestClient, discord_api: FakeDiscordApi, guild: Guild, pool: asyncpg.Pool
) -> None:
    alert_id = await raise_alert(pool, guild)
    first = await press(discord_client, discord_api, guild.guild_id, guild.nurse.snowflake, f"ack:{alert_id}")
    second = await press(discord_client, discord_api, guild.guild_id, guild.nurse.snowflake, f"ack:{alert_id}")

    assert first.response.status == 200 and first.elapsed < 3.0
    answer = await first.json()
    assert answer["type"] == 7 and "flags" not in answer["data"]  # UPDATE_MESSAGE, in the channel
    assert "Acknowledged by Nurse" in text_of(answer["data"])
    labels = [b["label"] for b in buttons_of(answer["data"])]
    assert "Acknowledge" not in labels and "Resolve" in labels
    assert {b["custom_id"] for b in buttons_of(answer["data"])} >= {f"resolve:{alert_id}", f"snooze4h:{alert_id}"}
    assert (await second.json())["type"] == 7
    assert await count(pool, "SELECT count(*) FROM events WHERE tenant_id = $1 AND type = 'alert.acknowledged'",
                       guild.tenant_id) == 1  # fmt: skip


async def test_resolve_removes_the_buttons(
    discord_client: TestClient, discord_api: FakeDiscordApi, guild: Guild, pool: asyncpg.Pool
) -> None:
    alert_id = await raise_alert(pool, guild)
    sent = await press(discord_client, discord_api, guild.guild_id, guild.nurse.snowflake, f"resolve:{alert_id}")
    answer = await sent.json()
    assert answer["type"] == 7 and "Resolved by Nurse" in text_of(answer["data"])
    assert answer["data"]["components"] == []


async def test_a_viewer_an_outsider_the_patient_and_an_unlinked_member_are_refused_privately(
    discord_client: TestClient, discord_api: FakeDiscordApi, guild: Guild, pool: asyncpg.Pool
) -> None:
    alert_id = await raise_alert(pool, guild)
    for user in (guild.viewer.snowflake, guild.outsider.snowflake, guild.patient.snowflake, snowflake()):
        sent = await press(discord_client, discord_api, guild.guild_id, user, f"ack:{alert_id}")
        answer = await sent.json()
        assert answer["type"] == 4 and answer["data"]["flags"] == 64 and "Not allowed" in text_of(answer["data"])

    assert await count(pool, "SELECT count(*) FROM alerts WHERE id = $1 AND status = 'open'", alert_id) == 1
    assert await count(pool, "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = 'chat.denied'"
                       " AND subject_id = $2", guild.tenant_id, alert_id) == 4  # fmt: skip


async def test_a_nurse_of_another_tenant_cannot_act_on_this_tenants_alert(
    discord_client: TestClient, discord_api: FakeDiscordApi, guild: Guild, other_guild: Guild, pool: asyncpg.Pool
) -> None:
    alert_id = await raise_alert(pool, guild)
    sent = await press(discord_client, discord_api, other_guild.guild_id, other_guild.nurse.snowflake,
                       f"ack:{alert_id}")  # fmt: skip
    answer = await sent.json()
    assert answer["type"] == 4 and "Not allowed" in text_of(answer["data"])
    assert await count(pool, "SELECT count(*) FROM alerts WHERE id = $1 AND status = 'open'", alert_id) == 1


async def test_a_custom_id_that_is_not_ours_changes_nothing(
    discord_client: TestClient, discord_api: FakeDiscordApi, guild: Guild
) -> None:
    sent = await press(discord_client, discord_api, guild.guild_id, guild.nurse.snowflake, "ack:drop table")
    assert await sent.json() == {"type": 6}


# -- the vectors' bytes -----------------------------------------------------------------------------

HIKARI_KEY = "122ddf58a895d7e1b76ff5d071b0aac9b7765e2ab515e11b7fcaf964db5490c6"
HIKARI_SIGNATURE = (
    "8c2ab29e050c536763c97d41bd022e272d5bb0a9be674ed55a12a620c50b21d8"
    "634299f5578007f297ba97cc17204cc5336b47a01c118e7c58055081402eb504"
)
# hikari-py/hikari tests/hikari/impl/test_interaction_server.py, fixture valid_edd25519 (file commit e5abd56e).
HIKARI_BODY = (
    b'{"application_id":"658822586720976907","channel_id":"938391701561679903","data":{"id":"870616445036421159","'
    b'name":"ping","type":1},"guild_id":"561884984214814744","guild_locale":"en-GB","id":"938421734825140264","loc'
    b'ale":"en-GB","member":{"avatar":null,"communication_disabled_until":null,"deaf":false,"is_pending":false,"jo'
    b'ined_at":"2019-03-31T12:10:19.616000+00:00","mute":false,"nick":"Snab","pending":false,"permissions":"219902'
    b'3255551","premium_since":null,"roles":["561885635074457600"],"user":{"avatar":"2549318b6a5f514a6c4a4379ed89a'
    b'469","discriminator":"6127","id":"115590097100865541","public_flags":131072,"username":"Faster Speeding"}},"'
    b'token":"aW50ZXJhY3Rpb246OTM4NDIxNzM0ODI1MTQwMjY0Ok1pR0t6dGt3T1Q4SkhHMnREQmJ2RXI4Vk5vaXZ0UzVMRTBqdVRLcmhnd1dY'
    b"dEd6d2dlTUZGMlNQRkRybGZJaHVuWHZva2lKaWQzcjh1ZEt5NzJtVTFKNzdGOVREOWtoNE5BYnlCdGlGaEZDMDVMY3VhbkF1a0ZZMnhGeU9q"
    b'OHY4","type":2,"version":1}'
)
# The same file's invalid_ed25519 fixture: a body whose signature does not verify under HIKARI_KEY.
INVALID_SIGNATURE = (
    "0c34da21d9d5083c7b610cfae6d29eb3e0177283a8b5daaa970ab5e192417c94"
    "bb8a4775dbd619d5949808b41afa4640bb78c9a38f1f1309d831a33aa925700c"
)
INVALID_BODY = (
    b'{"application_id":"658822586720976907","id":"838085779104202754","token":"aW50ZXJhY3Rpb246ODM4MDg1Nzc5MTA0MjA'
    b"yNzU0OmNhSk9QUU4wa1BKV21nTjFvSGhIbUp0QnQ1NjNGZFRtMlJVRlNjR0ttaDhtUGJrWUNvcmxYZnd2NTRLeUQ2c0hGS1YzTU03dFJ0V0s5"
    b'RWRBY0ltZTRTS0NneFFSYW1BbDZxSkpnMkEwejlkTldXZUh2OGwzbnBrMzhscURIMXUz","type":1,"user":{"avatar":"b333580bd947'
    b'4630226ff7b0a9696231","discriminator":"6127","id":"115590097100865541","public_flags":13'
    b'1072,"username":"Faster Speeding"},"version":1}'
)
