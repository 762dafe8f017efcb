"""Account linking: /connect's one-time link, the enrolment code, and Sign in with Slack proving
the chat identity in the same browser.  A forwarded link is refused."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import asyncpg
from aiohttp.test_utils import TestClient

from db import chat, tenants
from tests.bot.chat.conftest import Clinic, reply_to, slash
from tests.fakes.slack_api import FakeSlackApi

COOKIE = "cb-chat-link"


async def link_url(client: TestClient, api: FakeSlackApi, team: str, user: str) -> str:
    sent = await slash(client, api, team, user, "/connect")
    reply = await reply_to(api, sent)
    (url,) = [e["url"] for b in reply["blocks"] if b["type"] == "actions" for e in b["elements"] if "url" in e]
    return url


async def new_patient_code(pool: asyncpg.Pool, clinic: Clinic, external_id: str) -> tuple[int, str]:
    async with pool.acquire() as conn:
        user_id = await tenants.ensure_user(conn, clinic.tenant_id, external_id, "Newcomer")
        return user_id, await chat.create_enrolment_code(conn, clinic.tenant_id, user_id, "test")


async def start(client: TestClient, url: str, code: str) -> tuple[str, dict[str, list[str]]]:
    """Open the link, submit the code; returns the flow cookie and the sign-in redirect's query."""
    token = parse_qs(urlsplit(url).query)["token"][0]
    page = await client.get(f"/chat/link?token={token}")
    assert page.status == 200 and "Link Slack user" in await page.text()
    response = await client.post("/chat/link", data={"token": token, "code": code}, allow_redirects=False)
    assert response.status == 302
    cookie = response.cookies[COOKIE]
    assert cookie["httponly"] and cookie["secure"] and cookie["samesite"] == "Lax"
    location = urlsplit(response.headers["Location"])
    assert location.path == "/openid/connect/authorize"
    return cookie.value, parse_qs(location.query)


async def finish(client: TestClient, state: str, code: str) -> tuple[int, str]:
    response = await client.get(
        f"/chat/link/callback?code={code}&state={state}", headers={"Cookie": f"{COOKIE}={state}"}
    )
    return response.status, await response.text()


async def live_link(pool: asyncpg.Pool, team: str, chat_user: str) -> int | None:
    async with pool.acquire() as conn:
        found = await chat.linked_user(conn, "slack", team, chat_user)
    return found.user_id if found else None


async def test_the_owner_of_the_link_proves_their_slack_identity_and_is_linked(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, pool: asyncpg.Pool
) -> None:
    user_id, code = await new_patient_code(pool, clinic, "newcomer")
    url = await link_url(client, slack_api, clinic.team, "UNEWCOMER")
    state, query = await start(client, url, code)
    assert query["team"] == [clinic.team] and query["scope"] == ["openid"] and query["state"] == [state]

    signed_in = slack_api.sign_in(query["nonce"][0], clinic.team, "UNEWCOMER")
    status, text = await finish(client, state, signed_in)

    assert status == 200 and "linked" in text
    assert await live_link(pool, clinic.team, "UNEWCOMER") == user_id


async def test_a_forwarded_link_is_refused_and_burnt(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, pool: asyncpg.Pool
) -> None:
    # The attacker makes a link for their own chat identity and sends it to a victim, who has a code.
    _, victim_code = await new_patient_code(pool, clinic, "victim")
    url = await link_url(client, slack_api, clinic.team, "UATTACKER")
    state, query = await start(client, url, victim_code)

    victim_signed_in = slack_api.sign_in(query["nonce"][0], clinic.team, "UVICTIM")
    status, text = await finish(client, state, victim_signed_in)

    assert status == 403 and "another chat account" in text
    assert await live_link(pool, clinic.team, "UATTACKER") is None
    assert await live_link(pool, clinic.team, "UVICTIM") is None
    token = parse_qs(urlsplit(url).query)["token"][0]
    assert (await client.get(f"/chat/link?token={token}")).status == 410
    async with pool.acquire() as conn:
        assert await conn.fetchval(
            "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = 'chat.link_refused'", clinic.tenant_id
        ) == 1  # fmt: skip


async def test_a_callback_without_the_flow_cookie_is_refused(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, pool: asyncpg.Pool
) -> None:
    _, code = await new_patient_code(pool, clinic, "nocookie")
    url = await link_url(client, slack_api, clinic.team, "UNOCOOKIE")
    state, query = await start(client, url, code)
    signed_in = slack_api.sign_in(query["nonce"][0], clinic.team, "UNOCOOKIE")

    response = await client.get(f"/chat/link/callback?code={signed_in}&state={state}")

    assert response.status == 400
    assert await live_link(pool, clinic.team, "UNOCOOKIE") is None


async def test_a_wrong_enrolment_code_starts_nothing(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic
) -> None:
    url = await link_url(client, slack_api, clinic.team, "UGUESSER")
    token = parse_qs(urlsplit(url).query)["token"][0]
    response = await client.post("/chat/link", data={"token": token, "code": "guess"}, allow_redirects=False)
    assert response.status == 400


async def test_a_code_of_another_tenant_cannot_link_here(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, other_clinic: Clinic, pool: asyncpg.Pool
) -> None:
    _, foreign_code = await new_patient_code(pool, other_clinic, "foreign")
    url = await link_url(client, slack_api, clinic.team, "UFOREIGN")
    token = parse_qs(urlsplit(url).query)["token"][0]
    response = await client.post("/chat/link", data={"token": token, "code": foreign_code}, allow_redirects=False)
    assert response.status == 400
