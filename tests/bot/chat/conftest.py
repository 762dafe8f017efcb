"""The chat front end over real HTTP: the app on a TestServer, Slack's Web API and response_url
as a local fake, requests signed the way Slack signs them, and a clinic with a care team."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import asyncpg
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from bot.app import make_app
from bot.settings import BotSettings
from bot.slack.settings import SlackSettings
from db import chat, notification_channels, notification_rules, tenants
from pipeline import runtime
from tests.fakes.slack_api import CLIENT_ID, CLIENT_SECRET, FakeSlackApi
from tests.helpers import eventually

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
PUBLIC_URL = "https://carebeacon.example"


@pytest.fixture(scope="session")
def slack_api() -> Iterator[FakeSlackApi]:
    server = FakeSlackApi().start()
    yield server
    server.stop()


def slack_settings(api: FakeSlackApi, **overrides: Any) -> SlackSettings:
    values: dict[str, Any] = {
        "signing_secret": SECRET, "bot_token": api.bot("TANY"), "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET, "api_url": f"{api.url}/api/", "authorize_url": api.url,
    } | overrides  # fmt: skip
    return SlackSettings(**values)


@pytest.fixture
async def client(
    pipeline_runtime: runtime.Runtime, pool: asyncpg.Pool, slack_api: FakeSlackApi
) -> AsyncIterator[TestClient]:
    app = make_app(pool, pipeline_runtime.broker, settings=BotSettings(public_url=PUBLIC_URL),
                   slack=slack_settings(slack_api))  # fmt: skip
    async with TestClient(TestServer(app)) as found:
        yield found


@dataclass(frozen=True)
class Person:
    user_id: int
    external_id: str
    chat_user: str  # Slack user id, linked in the clinic's workspace (unless said otherwise)


@dataclass(frozen=True)
class Clinic:
    tenant_id: int
    team: str  # Slack team id bound to the tenant
    patient: Person
    nurse: Person  # acts in the patient's care team
    viewer: Person  # views in the patient's care team
    outsider: Person  # same tenant, no care team
    care_team_id: int
    channel_id: int


async def make_clinic(pool: asyncpg.Pool, keyring_: Any, label: str) -> Clinic:
    slug = f"{label}-{secrets.token_hex(3)}"
    team = "T" + secrets.token_hex(4).upper()
    async with pool.acquire() as conn:
        tenant_id = await tenants.ensure_tenant(conn, slug, slug.title())
        await chat.bind_workspace(conn, "slack", team, tenant_id, "Clinic workspace")
        people = {}
        for role in ("patient", "nurse", "viewer", "outsider"):
            user_id = await tenants.ensure_user(conn, tenant_id, f"{role}-1", role.title())
            chat_user = "U" + secrets.token_hex(4).upper()
            await link(conn, team, chat_user, tenant_id, user_id)
            people[role] = Person(user_id, f"{role}-1", chat_user)
        team_id = await notification_rules.create_care_team(conn, tenant_id=tenant_id, name="Cardio")
        await conn.execute(
            "INSERT INTO care_team_patients (care_team_id, patient_id) VALUES ($1, $2)",
            team_id,
            people["patient"].user_id,
        )
        await conn.executemany(
            "INSERT INTO care_team_members (care_team_id, user_id, role) VALUES ($1, $2, $3)",
            [(team_id, people["nurse"].user_id, "nurse"), (team_id, people["viewer"].user_id, "viewer")],
        )
        channel_id = await notification_channels.create_channel(
            conn, keyring_, tenant_id=tenant_id, kind="console", label="ward", config={"path": "/dev/null"}
        )
    return Clinic(tenant_id, team, people["patient"], people["nurse"], people["viewer"], people["outsider"],
                  team_id, channel_id)  # fmt: skip


async def link(conn: asyncpg.Connection, team: str, chat_user: str, tenant_id: int, user_id: int) -> None:
    await conn.execute(
        "INSERT INTO chat_identities (platform, workspace_id, chat_user_id, tenant_id, user_id, linked_via)"
        " VALUES ('slack', $1, $2, $3, $4, 'test')",
        team,
        chat_user,
        tenant_id,
        user_id,
    )


@pytest.fixture
async def clinic(pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime) -> Clinic:
    return await make_clinic(pool, pipeline_runtime.keyring, "clinic")


@pytest.fixture
async def other_clinic(pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime) -> Clinic:
    return await make_clinic(pool, pipeline_runtime.keyring, "other")


def signed(body: str, *, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    """Headers as Slack sends them: v0 HMAC-SHA256 of ``v0:{ts}:{body}``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


@dataclass
class Sent:
    response: ClientResponse
    elapsed: float
    path: str  # of the response_url on the fake


def command_fields(api: FakeSlackApi, team: str, user: str, command: str, text: str = "",
                   trigger_id: str | None = None) -> tuple[str, dict[str, str]]:  # fmt: skip
    """A slash command's fields as Slack sends them (form-encoded over HTTP, a JSON object over
    Socket Mode), and the path of its response_url on the fake."""
    path, url = api.response_url()
    return path, {
        "token": "deprecated", "team_id": team, "team_domain": "clinic", "channel_id": "C0WARD",
        "channel_name": "ward", "user_id": user, "user_name": "someone", "command": command, "text": text,
        "response_url": url, "trigger_id": api.trigger(trigger_id), "api_app_id": "A0APP",
    }  # fmt: skip


async def slash(client: TestClient, api: FakeSlackApi, team: str, user: str, command: str, text: str = "",
                trigger_id: str | None = None) -> Sent:  # fmt: skip
    path, fields = command_fields(api, team, user, command, text, trigger_id)
    body = urlencode(fields)
    started = time.monotonic()
    response = await client.post("/slack/events", data=body, headers=signed(body))
    return Sent(response, time.monotonic() - started, path)


async def click(client: TestClient, api: FakeSlackApi, team: str, user: str, action: str, alert_id: int) -> Sent:
    path, url = api.response_url()
    payload = {
        "type": "block_actions", "team": {"id": team, "domain": "clinic"}, "user": {"id": user, "team_id": team},
        "api_app_id": "A0APP", "token": "deprecated", "trigger_id": "1.2.3", "response_url": url,
        "channel": {"id": "C0WARD", "name": "ward"}, "container": {"type": "message", "message_ts": "1.1"},
        "message": {"ts": "1.1", "type": "message", "text": "alert"},
        "actions": [{"type": "button", "action_id": action, "block_id": "b1", "value": f"{action}:{alert_id}",
                     "action_ts": "1.1"}],
    }  # fmt: skip
    body = urlencode({"payload": json.dumps(payload)})
    started = time.monotonic()
    response = await client.post("/slack/events", data=body, headers=signed(body))
    return Sent(response, time.monotonic() - started, path)


async def reply_at(api: FakeSlackApi, path: str, count: int = 1, timeout: float = 15) -> list[dict[str, Any]]:
    """The JSON bodies POSTed to the response_url ``path``, once there are ``count``."""

    async def arrived() -> list[dict[str, Any]] | None:
        found = api.replies(path)
        return found if len(found) >= count else None

    found: list[dict[str, Any]] = await eventually(arrived, timeout, f"{count} post(s) to {path}")
    assert api.problems[path] == []
    return found


async def reply_to(api: FakeSlackApi, sent: Sent) -> dict[str, Any]:
    """A command's reply: the ack's message when it carried one (a command done within the answer
    budget), else the one POST to its response_url."""
    acked = await sent.response.text()
    if acked:
        reply: dict[str, Any] = json.loads(acked)
        return reply
    (posted,) = await reply_at(api, sent.path)
    return posted


def text_of(message: dict[str, Any]) -> str:
    """Everything a person would read in a Block Kit message, as one string."""
    parts = [message.get("text", "")]
    for block in message.get("blocks", []):
        if "text" in block:
            parts.append(block["text"]["text"])
        parts += [f["text"] for f in block.get("fields", [])]
        parts += [e.get("text", "") if isinstance(e.get("text"), str) else e.get("text", {}).get("text", "")
                  for e in block.get("elements", [])]  # fmt: skip
    return "\n".join(parts)
