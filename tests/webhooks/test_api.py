"""The webhook endpoints API: secrets shown once, tenant scoping, test events, deliveries with
their attempts, replay, and re-enabling with a replay of what failed."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.bot.api.conftest import Tenant
from tests.webhooks.conftest import finished
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.usefixtures("webhook_env", "worker")


async def _create(api: TestClient, tenant: Tenant, url: str, events: list[str] | None = None) -> dict[str, Any]:
    resp = await api.post(
        "/v1/webhooks",
        json={"url": url, "events": events or ["sync.completed"], "description": "ehr"},
        headers=tenant.auth("admin"),
    )
    assert resp.status == 201, await resp.text()
    found: dict[str, Any] = await resp.json()
    return found


async def test_the_secret_is_shown_at_creation_and_rotation_only(
    api: TestClient, clinic: Tenant, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = await _create(api, clinic, receiver.endpoint("api-secret"))
    secret, hook = created["secret"], f"/v1/webhooks/{created['id']}"
    assert secret.startswith("whsec_")

    later = [
        await api.get("/v1/webhooks", headers=clinic.auth("read")),
        await api.get(hook, headers=clinic.auth("read")),
        await api.patch(hook, json={"description": "changed"}, headers=clinic.auth("admin")),
        await api.post(hook + "/test", headers=clinic.auth("admin")),
        await api.get(hook + "/deliveries", headers=clinic.auth("read")),
    ]
    rotated = await api.post(hook + "/rotate-secret", headers=clinic.auth("admin"))
    after = await api.get(hook, headers=clinic.auth("read"))

    texts = [await r.text() for r in later]
    assert all(r.status < 300 for r in later), texts
    assert all(secret not in t and "whsec_" not in t for t in texts)
    new = (await rotated.json())["secret"]
    assert new.startswith("whsec_") and new != secret and secret not in await rotated.text()
    body = await after.json()
    assert "secret" not in body and body["previous_secret_expires_at"] is not None
    assert secret not in caplog.text and new not in caplog.text


async def test_writes_need_admin_and_another_tenants_endpoint_is_not_found(
    api: TestClient, clinic: Tenant, other: Tenant, receiver: Receiver
) -> None:
    refused = await api.post(
        "/v1/webhooks", json={"url": receiver.endpoint("x"), "events": ["sync.completed"]}, headers=clinic.auth("read")
    )
    created = await _create(api, clinic, receiver.endpoint("api-scope"))
    foreign = await api.get(f"/v1/webhooks/{created['id']}", headers=other.auth("admin"))
    deleted = await api.delete(f"/v1/webhooks/{created['id']}", headers=clinic.auth("admin"))
    gone = await api.get(f"/v1/webhooks/{created['id']}", headers=clinic.auth("admin"))

    assert (refused.status, foreign.status, deleted.status, gone.status) == (403, 404, 204, 404)


INVALID = [
    ({"url": "ftp://example.com/hook", "events": ["sync.completed"]}, "url"),
    ({"url": "https://user:pw@example.com/hook", "events": ["sync.completed"]}, "url"),
    ({"events": ["sync.completed"]}, "url"),
    ({"url": "https://example.com/hook", "events": []}, "events"),
    ({"url": "https://example.com/hook", "events": ["user.deleted"]}, "events"),
    ({"url": "https://example.com/hook", "events": [{"a": 1}]}, "events"),
    ({"url": "https://example.com/hook", "events": ["sync.completed"], "description": 7}, "description"),
]


async def test_an_invalid_endpoint_is_a_422_naming_the_field(api: TestClient, clinic: Tenant) -> None:
    # One tenant for the table: the clinic fixture names its tenant after the test.
    for body, field in INVALID:
        resp = await api.post("/v1/webhooks", json=body, headers=clinic.auth("admin"))

        assert resp.status == 422, body
        assert (await resp.json())["error"]["details"] == {"field": field}, body


async def test_a_private_url_is_refused_unless_private_destinations_are_allowed(
    api: TestClient, clinic: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAREBEACON_ALLOW_PRIVATE_DESTINATIONS", "false")
    resp = await api.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["sync.completed"]}, headers=clinic.auth()
    )
    assert resp.status == 422 and "https" in (await resp.json())["error"]["message"]


async def test_a_test_event_arrives_signed_and_a_replay_resends_it_with_the_same_webhook_id(
    api: TestClient, clinic: Tenant, receiver: Receiver, pool: asyncpg.Pool
) -> None:
    created = await _create(api, clinic, receiver.endpoint("api-test"))
    hook = f"/v1/webhooks/{created['id']}"

    sent = await (await api.post(hook + "/test", headers=clinic.auth("admin"))).json()
    delivery_id = sent["delivery_ids"][0]
    await finished(pool, delivery_id)
    replay = await api.post(f"{hook}/deliveries/{delivery_id}/replay", headers=clinic.auth("admin"))
    assert replay.status == 202
    await finished(pool, delivery_id)
    listed = await (await api.get(hook + "/deliveries", headers=clinic.auth("read"))).json()

    first, second = receiver.got["api-test"]
    assert first.verifies(created["secret"]) and second.verifies(created["secret"])
    assert first.json()["type"] == "webhook.test" and first.msg_id == second.msg_id
    delivery = listed["data"][0]
    assert delivery["msg_id"] == first.msg_id and delivery["status"] == "succeeded"
    assert [a["http_status"] for a in delivery["attempt_log"]] == [200, 200]


async def test_re_enabling_with_replay_failed_sends_what_failed_while_it_was_gone(
    api: TestClient, clinic: Tenant, receiver: Receiver, pool: asyncpg.Pool
) -> None:
    created = await _create(api, clinic, receiver.endpoint("api-reenable"))
    hook = f"/v1/webhooks/{created['id']}"
    receiver.answer("api-reenable", 410)
    delivery_id = (await (await api.post(hook + "/test", headers=clinic.auth())).json())["delivery_ids"][0]
    await finished(pool, delivery_id)
    disabled = await (await api.get(hook, headers=clinic.auth("read"))).json()

    resp = await api.patch(hook + "?replay=failed", json={"enabled": True}, headers=clinic.auth("admin"))

    assert disabled["enabled"] is False and "410" in disabled["disabled_reason"]
    body = await resp.json()
    assert resp.status == 200 and body["enabled"] is True and body["replayed"] == [delivery_id]
    done = await finished(pool, delivery_id)
    assert done["status"] == "succeeded" and done["attempts"] == 2
