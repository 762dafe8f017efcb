"""Notification channels over the API: validated and sealed at creation, secrets never shown,
changed, deleted only when nothing refers to them, and tested against a real local peer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.bot.api.conftest import Tenant, error_of

TOKEN = "Zx9-discord-webhook-token-never-shown"
DISCORD = f"https://discord.com/api/webhooks/123456789/{TOKEN}"


@pytest.fixture
def private_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local peers on 127.0.0.1 over http, as in development (and no DNS for discord.com)."""
    monkeypatch.setenv("CAREBEACON_ALLOW_PRIVATE_DESTINATIONS", "true")


@pytest.fixture
async def discord_peer() -> AsyncIterator[tuple[str, list[dict[str, object]]]]:
    """A local Discord that accepts webhook executes and keeps their bodies."""
    received: list[dict[str, object]] = []

    async def execute(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"id": "1"})

    app = web.Application()
    app.router.add_post("/api/webhooks/{id}/{token}", execute)
    async with TestServer(app) as server:
        yield str(server.make_url(f"/api/webhooks/42/{TOKEN}")), received


async def create(api: TestClient, tenant: Tenant, url: str = DISCORD, label: str = "Ward 3") -> dict[str, object]:
    response = await api.post(
        "/v1/channels", json={"kind": "discord", "label": label, "config": {"url": url}}, headers=tenant.auth("write")
    )
    assert response.status == 201, await response.text()
    found: dict[str, object] = await response.json()
    return found


async def test_a_discord_token_is_never_in_any_answer(api: TestClient, clinic: Tenant, private_ok: None) -> None:
    created = await create(api, clinic)

    one = await api.get(f"/v1/channels/{created['id']}", headers=clinic.auth("read"))
    listed = await api.get("/v1/channels", headers=clinic.auth("read"))

    for response in (one, listed):
        assert response.status == 200
        assert TOKEN not in await response.text() and "123456789" not in await response.text()
    assert created["config"] == {"url": "https://discord.com/********"}
    assert (await one.json()) == created
    assert created["kind"] == "discord" and created["enabled"] is True and created["disabled_reason"] is None


async def test_the_config_is_sealed_at_rest(
    api: TestClient, clinic: Tenant, pool: asyncpg.Pool, private_ok: None
) -> None:
    created = await create(api, clinic)
    stored = await pool.fetchval("SELECT config_sealed FROM notification_channels WHERE id = $1", created["id"])
    assert TOKEN not in stored


async def test_secret_fields_of_every_shape_are_masked(api: TestClient, clinic: Tenant, private_ok: None) -> None:
    config = {
        "url": "https://hooks.example.org/in/abc123secretpath",
        "secret": "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    }
    response = await api.post(
        "/v1/channels", json={"kind": "webhook", "label": "EHR", "config": config}, headers=clinic.auth("write")
    )
    assert response.status == 201, await response.text()
    shown = (await response.json())["config"]
    assert shown == {"url": "https://hooks.example.org/********", "secret": "********"}
    ntfy = {"server": "https://ntfy.example.org", "topic": "ward-3-secret-topic", "token": "tk_secret"}
    response = await api.post(
        "/v1/channels", json={"kind": "ntfy", "label": "n", "config": ntfy}, headers=clinic.auth("write")
    )
    assert (await response.json())["config"] == {"server": "https://ntfy.example.org", "topic": "********",
                                                  "token": "********"}  # fmt: skip


async def test_invalid_channels_are_422_with_the_channel_s_message(api: TestClient, clinic: Tenant) -> None:
    cases = [
        ({"kind": "pager", "label": "x", "config": {}}, "kind", "kind must be one of"),
        ({"kind": "console", "label": "x", "config": {"path": "/etc/passwd"}}, "kind", "CLI"),
        ({"kind": "discord", "label": "x", "config": {}}, "config", "discord: url"),
        ({"kind": "discord", "label": "x", "config": {"url": "https://example.org/x"}}, "config", "discord"),
        ({"kind": "discord", "label": "x", "config": "https://discord.com"}, "config", "JSON object"),
        ({"kind": "discord", "label": " ", "config": {"url": DISCORD}}, "label", "label"),
        ({"kind": "discord", "config": {"url": DISCORD}}, "label", "label"),
        ({"kind": "discord", "label": "x", "config": {"url": DISCORD}, "extra": 1}, "extra", "extra"),
        ({"kind": "webhook", "label": "x", "config": {"url": "https://127.0.0.1/hook", "secret": "whsec_x"}},
         "config", "webhook"),
    ]  # fmt: skip
    for body, field, message in cases:
        response = await api.post("/v1/channels", json=body, headers=clinic.auth("write"))
        assert response.status == 422, body
        error = await error_of(response)
        assert error["details"] == {"field": field} and message in error["message"], (body, error)


async def test_a_destination_that_resolves_to_a_private_address_is_refused_at_creation(
    api: TestClient, clinic: Tenant
) -> None:
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = {"kind": "webhook", "label": "x", "config": {"url": "https://127.0.0.1/hook", "secret": secret}}
    response = await api.post("/v1/channels", json=body, headers=clinic.auth("write"))
    assert response.status == 422
    assert "non-public" in (await error_of(response))["message"]


async def test_patch_renames_pauses_resumes_and_replaces_the_config(
    api: TestClient, clinic: Tenant, private_ok: None
) -> None:
    channel_id = (await create(api, clinic))["id"]
    path, write = f"/v1/channels/{channel_id}", clinic.auth("write")

    paused = await (await api.patch(path, json={"enabled": False, "label": "Ward 4"}, headers=write)).json()
    assert (
        paused["enabled"] is False
        and paused["label"] == "Ward 4"
        and paused["disabled_reason"].startswith("disabled by")
    )
    resumed = await (await api.patch(path, json={"enabled": True}, headers=write)).json()
    assert resumed["enabled"] is True and resumed["disabled_reason"] is None
    bad = await api.patch(path, json={"config": {"url": "https://discord.com/nope"}}, headers=write)
    assert bad.status == 422 and (await error_of(bad))["details"] == {"field": "config"}
    other_url = "https://discord.com/api/webhooks/987/another-token"
    replaced = await api.patch(
        path, json={"config": {"url": other_url, "critical_mention": "role:123456"}}, headers=write
    )
    assert replaced.status == 200
    assert (await replaced.json())["config"] == {
        "url": "https://discord.com/********",
        "critical_mention": "role:123456",
    }
    for body in ({"enabled": "no"}, {"label": ""}, {"kind": "slack"}):
        assert (await api.patch(path, json=body, headers=write)).status == 422, body


async def test_a_channel_a_rule_uses_cannot_be_deleted_but_an_unused_one_can(
    api: TestClient, clinic: Tenant, private_ok: None
) -> None:
    used, unused = (await create(api, clinic))["id"], (await create(api, clinic, label="spare"))["id"]
    rule = await api.post("/v1/rules", json={"name": "r", "channel_ids": [used]}, headers=clinic.auth("write"))
    assert rule.status == 201

    assert (await api.delete(f"/v1/channels/{used}", headers=clinic.auth("write"))).status == 409
    assert (await api.delete(f"/v1/channels/{unused}", headers=clinic.auth("write"))).status == 204
    assert (await api.get(f"/v1/channels/{unused}", headers=clinic.auth("read"))).status == 404


async def test_a_test_message_reaches_the_peer_and_reports_how_it_went(
    api: TestClient, clinic: Tenant, private_ok: None, discord_peer: tuple[str, list[dict[str, object]]]
) -> None:
    url, received = discord_peer
    channel_id = (await create(api, clinic, url=url))["id"]

    response = await api.post(f"/v1/channels/{channel_id}/test", headers=clinic.auth("write"))

    assert response.status == 200
    assert await response.json() == {"status": "delivered", "detail": None, "http_status": 200, "retry_after": None}
    assert len(received) == 1 and received[0]["embeds"]


async def test_scopes_and_another_tenant_s_channel(
    api: TestClient, clinic: Tenant, other: Tenant, private_ok: None
) -> None:
    channel_id = (await create(api, clinic))["id"]
    path = f"/v1/channels/{channel_id}"
    body = {"kind": "discord", "label": "x", "config": {"url": DISCORD}}
    assert (await api.post("/v1/channels", json=body, headers=clinic.auth("read"))).status == 403
    assert (await api.patch(path, json={"label": "y"}, headers=clinic.auth("read"))).status == 403
    assert (await api.delete(path, headers=clinic.auth("read"))).status == 403
    assert (await api.post(path + "/test", headers=clinic.auth("read"))).status == 403
    assert (await api.get(path, headers=other.auth())).status == 404
    assert (await api.patch(path, json={"label": "y"}, headers=other.auth())).status == 404
    assert (await api.delete(path, headers=other.auth())).status == 404
    assert (await api.post(path + "/test", headers=other.auth())).status == 404
    assert (await (await api.get("/v1/channels", headers=other.auth())).json())["data"] == []


async def test_channels_page_by_cursor(api: TestClient, clinic: Tenant, private_ok: None) -> None:
    ids = [(await create(api, clinic, label=f"c{i}"))["id"] for i in range(3)]
    first = await (await api.get("/v1/channels?limit=2", headers=clinic.auth("read"))).json()
    second = await (
        await api.get(f"/v1/channels?limit=2&cursor={first['next_cursor']}", headers=clinic.auth("read"))
    ).json()
    assert [c["id"] for c in first["data"] + second["data"]] == ids and second["next_cursor"] is None
    assert (await api.get("/v1/channels?cursor=nope", headers=clinic.auth("read"))).status == 422
