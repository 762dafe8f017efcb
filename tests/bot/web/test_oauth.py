"""Connecting a wearable in the browser: connect link → provider sign-in → callback → connection."""

from __future__ import annotations

import base64
import hashlib
import html
import re
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from db import connect_links
from db.connections import load
from db.sealing import Keyring
from pipeline import runtime
from pipeline.providers.oura import Oura
from pipeline.providers.whoop import Whoop
from tests.bot.api.conftest import Tenant, error_of, make_user
from tests.fakes.oura import FakeOura
from tests.fakes.whoop import FakeWhoop

CALLBACK = "http://127.0.0.1:8080/oauth/{}/callback"  # PUBLIC_URL's default


async def new_link(client: TestClient, tenant: Tenant, user_id: int, provider: str) -> str:
    """The path and query of a fresh connect link."""
    response = await client.post(
        f"/v1/users/{user_id}/connect-links", json={"provider": provider}, headers=tenant.auth("write")
    )
    assert response.status == 201, await response.text()
    url = urlsplit((await response.json())["url"])
    assert url.path == "/connect/start"
    return f"{url.path}?{url.query}"


HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)">')


async def confirm_form(client: TestClient, link: str) -> dict[str, str]:
    """Open the link: the hidden fields of the confirm page's form."""
    page = await client.get(link, allow_redirects=False)
    assert page.status == 200, await page.text()
    return {name: html.unescape(value) for name, value in HIDDEN.findall(await page.text())}


async def authorize(client: TestClient, link: str) -> dict[str, str]:
    """Open the link and press its button; the query of the authorize URL it redirects to."""
    response = await client.post("/connect/start", data=await confirm_form(client, link), allow_redirects=False)
    assert response.status == 303, await response.text()
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


async def test_a_link_leads_through_oura_sign_in_to_sealed_tokens_and_an_initial_sync(
    client: TestClient, clinic: Tenant, pool: asyncpg.Pool, fake_oura: FakeOura, pipeline_runtime: runtime.Runtime
) -> None:
    user_id = await make_user(client, clinic, "oura-flow")
    account = fake_oura.add_account()
    query = await authorize(client, await new_link(client, clinic, user_id, "oura"))

    assert query["client_id"] == fake_oura.client_id
    assert query["redirect_uri"] == CALLBACK.format("oura")
    assert query["response_type"] == "code" and query["scope"] == "daily heartrate spo2"
    assert query["code_challenge_method"] == "S256" and len(query["state"]) >= 32

    page = await client.get("/oauth/oura/callback", params={"code": account.name, "state": query["state"]})
    assert page.status == 200 and "Oura is connected" in await page.text()
    assert page.headers["Content-Type"].startswith("text/html")

    form = next(f for f in fake_oura.token_forms if f.get("code") == account.name)
    assert s256(form["code_verifier"]) == query["code_challenge"]  # the verifier of this flow's challenge
    assert form["redirect_uri"] == CALLBACK.format("oura")
    row = await pool.fetchrow("SELECT id, tokens_sealed FROM connections WHERE user_id = $1", user_id)
    assert account.access_token not in row["tokens_sealed"] and account.refresh_token not in row["tokens_sealed"]
    keyring: Keyring = pipeline_runtime.keyring
    async with pool.acquire() as conn:
        connection = await load(conn, row["id"])
    assert connection is not None and connection.tokens(keyring)["access_token"] == account.access_token
    run = await pool.fetchrow("SELECT trigger, status FROM sync_runs WHERE connection_id = $1", row["id"])
    assert run["trigger"] == "initial"
    event = await pool.fetchval(
        "SELECT payload FROM events WHERE tenant_id = $1 AND type = 'connection.created'", clinic.id
    )
    assert event["data"] == {"connection_id": row["id"], "user_id": user_id, "provider": "oura"}


async def test_whoop_stores_the_account_id_its_webhooks_carry(
    client: TestClient, clinic: Tenant, pool: asyncpg.Pool, fake_whoop: FakeWhoop, whoop: Whoop
) -> None:
    user_id = await make_user(client, clinic, "whoop-flow")
    account = fake_whoop.add_account()
    query = await authorize(client, await new_link(client, clinic, user_id, "whoop"))
    assert query["client_id"] == fake_whoop.client_id and query["redirect_uri"] == CALLBACK.format("whoop")
    assert "offline" in query["scope"].split() and query["code_challenge_method"] == "S256"

    page = await client.get("/oauth/whoop/callback", params={"code": account.name, "state": query["state"]})

    assert page.status == 200, await page.text()
    form = next(f for f in fake_whoop.token_forms if f.get("code") == account.name)
    assert s256(form["code_verifier"]) == query["code_challenge"]
    row = await pool.fetchrow("SELECT provider, provider_user_id FROM connections WHERE user_id = $1", user_id)
    assert (row["provider"], row["provider_user_id"]) == ("whoop", str(account.user_id))


async def test_a_state_works_once_and_only_for_its_own_provider(
    client: TestClient, clinic: Tenant, pool: asyncpg.Pool, fake_oura: FakeOura
) -> None:
    user_id = await make_user(client, clinic, "reuse")
    account = fake_oura.add_account()
    state = (await authorize(client, await new_link(client, clinic, user_id, "oura")))["state"]
    first = await client.get("/oauth/oura/callback", params={"code": account.name, "state": state})
    assert first.status == 200

    again = await client.get("/oauth/oura/callback", params={"code": account.name, "state": state})
    assert again.status == 400 and "already used" in await again.text()
    other = (await authorize(client, await new_link(client, clinic, user_id, "oura")))["state"]
    wrong = await client.get("/oauth/whoop/callback", params={"code": account.name, "state": other})
    assert wrong.status == 400
    # The wrong provider's callback spent it: the right one cannot use it afterwards.
    assert (await client.get("/oauth/oura/callback", params={"code": "x", "state": other})).status == 400
    assert (await client.get("/oauth/oura/callback", params={"code": "x", "state": "made-up"})).status == 400
    assert (await client.get("/oauth/oura/callback", params={"state": "no-code"})).status == 400
    assert await pool.fetchval("SELECT count(*) FROM connections WHERE user_id = $1", user_id) == 1


async def test_an_expired_or_used_link_is_a_400_page(client: TestClient, clinic: Tenant, pool: asyncpg.Pool) -> None:
    user_id = await make_user(client, clinic, "expired")
    used = await new_link(client, clinic, user_id, "oura")
    await authorize(client, used)
    again = await client.get(used, allow_redirects=False)
    assert again.status == 400 and "expired or has already been used" in await again.text()

    stale = await new_link(client, clinic, user_id, "oura")
    form = await confirm_form(client, stale)
    await pool.execute("UPDATE connect_links SET expires_at = now() - interval '1 second' WHERE user_id = $1", user_id)
    assert (await client.get(stale, allow_redirects=False)).status == 400
    assert (await client.post("/connect/start", data=form, allow_redirects=False)).status == 400
    assert (await client.get("/connect/start?token=forged", allow_redirects=False)).status == 400
    assert (await client.get("/connect/start", allow_redirects=False)).status == 400
    assert (await client.post("/connect/start", data={"token": "forged", "form_token": "x"})).status == 400
    assert (await client.post("/connect/start", data=b"{}", allow_redirects=False)).status == 400
    assert await pool.fetchval("SELECT count(*) FROM oauth_states WHERE user_id = $1", user_id) == 1


async def test_opening_a_link_spends_nothing_until_its_button_is_pressed(
    client: TestClient, clinic: Tenant, pool: asyncpg.Pool, fake_oura: FakeOura
) -> None:
    user_id = await make_user(client, clinic, "preview")
    link = await new_link(client, clinic, user_id, "oura")
    # A chat app unfurling the link (Slackbot, Discordbot) fetches it before the person does.
    preview = await client.get(link, headers={"User-Agent": "Slackbot-LinkExpanding 1.0"}, allow_redirects=False)
    page = await client.get(link, allow_redirects=False)

    assert preview.status == page.status == 200
    text = await page.text()
    assert "Connect Oura" in text and '<form method="post" action="/connect/start">' in text
    policy = page.headers["Content-Security-Policy"]
    assert "form-action 'self' https://cloud.ouraring.com;" in policy and "script-src" not in policy
    assert page.headers["Cache-Control"] == "no-store" and page.headers["Referrer-Policy"] == "no-referrer"
    assert await pool.fetchval("SELECT count(*) FROM connect_links WHERE user_id = $1", user_id) == 1
    assert await pool.fetchval("SELECT count(*) FROM oauth_states WHERE user_id = $1", user_id) == 0
    # Every look gives the same form token, so the page opened after a preview still works.
    assert HIDDEN.findall(await preview.text()) == HIDDEN.findall(text)

    form = await confirm_form(client, link)
    pressed = await client.post("/connect/start", data=form, allow_redirects=False)
    assert pressed.status == 303
    location = urlsplit(pressed.headers["Location"])
    query = parse_qs(location.query)
    assert (location.scheme, location.netloc) == ("https", "cloud.ouraring.com")
    assert len(query["state"][0]) >= 32 and query["code_challenge_method"] == ["S256"]
    assert query["code_challenge"][0] and query["client_id"] == [fake_oura.client_id]

    replayed = await client.post("/connect/start", data=form, allow_redirects=False)
    assert replayed.status == 400 and "Location" not in replayed.headers
    assert await pool.fetchval("SELECT count(*) FROM oauth_states WHERE user_id = $1", user_id) == 1


async def test_the_button_works_only_with_the_form_token_of_its_own_link(
    client: TestClient, clinic: Tenant, pool: asyncpg.Pool
) -> None:
    user_id = await make_user(client, clinic, "csrf")
    mine, other = [await new_link(client, clinic, user_id, "oura") for _ in range(2)]
    form, other_form = await confirm_form(client, mine), await confirm_form(client, other)
    unopened = parse_qs(urlsplit(await new_link(client, clinic, user_id, "oura")).query)["token"][0]

    for forged in (
        form | {"form_token": other_form["form_token"]},  # another link's page
        form | {"form_token": "guess"},
        {"token": form["token"]},  # no form token
        {"token": unopened, "form_token": form["form_token"]},  # a link whose page was never shown
    ):
        refused = await client.post("/connect/start", data=forged, allow_redirects=False)
        assert refused.status in (400, 403) and "Location" not in refused.headers, forged
    # A forged confirmation leaves the link alone: the real button still works.
    assert await pool.fetchval("SELECT count(*) FROM connect_links WHERE user_id = $1", user_id) == 3
    assert (await client.post("/connect/start", data=form, allow_redirects=False)).status == 303


async def test_a_link_page_shows_an_escaped_provider_name(
    client: TestClient, clinic: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_id = await make_user(client, clinic, "escaped")
    link = await new_link(client, clinic, user_id, "oura")
    monkeypatch.setattr(Oura, "display_name", "<b>Oura</b>")
    text = await (await client.get(link, allow_redirects=False)).text()
    assert "<b>" not in text and "Connect &lt;b&gt;Oura&lt;/b&gt;" in text


async def test_reflected_values_are_escaped(client: TestClient) -> None:
    script = "<script>alert(document.cookie)</script>"
    page = await client.get(
        "/oauth/oura/callback", params={"error": "server_error", "error_description": script, "state": script}
    )
    text = await page.text()
    assert page.status == 400
    assert "<script" not in text and "&lt;script&gt;alert(document.cookie)&lt;/script&gt;" in text
    assert "script-src" not in page.headers["Content-Security-Policy"]  # default-src 'none' forbids scripts
    assert page.headers["Referrer-Policy"] == "no-referrer"
    odd = await client.get("/oauth/oura/callback", params={"error": script, "state": script})
    assert "<script" not in await odd.text()
    state = await client.get("/oauth/oura/callback", params={"code": script, "state": script})
    assert state.status == 400 and "<script" not in await state.text()


async def test_a_user_who_declines_gets_a_friendly_page(client: TestClient, clinic: Tenant) -> None:
    user_id = await make_user(client, clinic, "declines")
    state = (await authorize(client, await new_link(client, clinic, user_id, "oura")))["state"]
    page = await client.get(
        "/oauth/oura/callback",
        params={"error": "access_denied", "error_description": "The user denied", "state": state},
    )
    assert page.status == 200 and "Oura was not connected" in await page.text()
    # The declined flow's state is spent.
    assert (await client.get("/oauth/oura/callback", params={"code": "x", "state": state})).status == 400


async def test_an_unknown_provider_is_a_404_page(client: TestClient) -> None:
    for provider in ("fitbit", "simulator"):
        page = await client.get(f"/oauth/{provider}/callback", params={"code": "c", "state": "s"})
        assert page.status == 404 and page.headers["Content-Type"].startswith("text/html")


async def test_connect_links_are_checked_like_every_api_route(
    client: TestClient, clinic: Tenant, other: Tenant, pool: asyncpg.Pool
) -> None:
    user_id = await make_user(client, clinic, "api-checks")
    url = f"/v1/users/{user_id}/connect-links"
    assert (await client.post(url, json={"provider": "oura"}, headers=clinic.auth("read"))).status == 403
    assert (await client.post(url, json={"provider": "oura"}, headers=other.auth())).status == 404
    for body in ({"provider": "simulator"}, {"provider": "fitbit"}, {}, {"provider": "oura", "x": 1}):
        response = await client.post(url, json=body, headers=clinic.auth("write"))
        assert response.status == 422, body
        await error_of(response)
    unconfigured = await client.post(url, json={"provider": "dexcom"}, headers=clinic.auth("write"))
    assert unconfigured.status == 409
    created = await (await client.post(url, json={"provider": "oura"}, headers=clinic.auth("write"))).json()
    token = parse_qs(urlsplit(created["url"]).query)["token"][0]
    async with pool.acquire() as conn:
        stored = await conn.fetchval("SELECT token_hash FROM connect_links WHERE user_id = $1", user_id)
        assert stored == hashlib.sha256(token.encode()).digest()  # the token itself is never stored
        link = await connect_links.consume(conn, token)
    assert link is not None and (link.user_id, link.provider) == (user_id, "oura")
