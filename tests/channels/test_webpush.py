"""The Web Push channel against a local push service that verifies VAPID and decrypts like a browser;
and the deployment's VAPID key pair, made once and sealed in a real database.

(A GONE outcome is acted on by channels/sending.py, which disables the channel: tested there.)"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from channels import CHANNELS, ConfigError, DeliveryStatus, build_channel
from channels.destinations import DestinationPolicy
from channels.http import Transport
from channels.webpush import DEFAULT_TTL, MAX_PLAINTEXT, Vapid, WebPush
from db import push
from db.alerts import Alert
from db.env import SettingError
from db.pool import connect
from db.sealing import Keyring
from tests.fakes.push import FakePushService, Subscription

LOCAL = Transport(DestinationPolicy(allow_private=True))
KEYS = push.VapidKeys.generate()
VAPID = Vapid(KEYS, "mailto:ops@carebeacon.test")
ALERT = Alert(
    id=42,
    user_id=3,
    tenant_id=1,
    patient="Pat One",
    category="clinical",
    severity="critical",
    metric="spo2",
    title="Blood oxygen below 90 %",
    body="spo2 86 % on 2026-11-22 (threshold 90)",
    observed_value=86.0,
    threshold=90.0,
    recorded_at=datetime(2026, 11, 22, 7, tzinfo=UTC),
    created_at=datetime(2026, 11, 22, 7, 5, tzinfo=UTC),
)


@pytest.fixture(scope="session")
async def push_service() -> AsyncIterator[FakePushService]:
    service = await FakePushService().start()
    yield service
    await service.stop()


@pytest.fixture
def browser(push_service: FakePushService) -> Subscription:
    return push_service.subscribe(KEYS.application_server_key)


def channel(sub: Subscription, transport: Transport = LOCAL, **changes: Any) -> WebPush:
    return WebPush.parse_config(sub.to_json() | changes, transport=transport).with_vapid(VAPID)


def valid_keys() -> dict[str, str]:
    return FakePushService().subscribe(KEYS.application_server_key).to_json()["keys"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"keys": valid_keys()}, "webpush: endpoint must be a non-empty string"),
        ({"endpoint": "http://push.example.com/x", "keys": valid_keys()}, "webpush: endpoint: the URL must use https"),
        ({"endpoint": "https://push.example.com/x"}, "webpush: keys must hold p256dh and auth"),
        ({"endpoint": "https://push.example.com/x", "keys": valid_keys() | {"p256dh": "AAAA"}}, "keys.p256dh is not"),
        (
            {"endpoint": "https://push.example.com/x", "keys": valid_keys() | {"auth": "c2hvcnQ"}},
            "keys.auth must be 16",
        ),
        ({"endpoint": "https://push.example.com/x", "keys": valid_keys(), "ttl": -1}, "webpush: ttl must be whole"),
        ({"endpoint": "https://push.example.com/x", "keys": valid_keys(), "ttl": "1d"}, "webpush: ttl must be whole"),
        ({"endpoint": "https://push.example.com/x", "keys": valid_keys(), "vapid": "k"}, "unknown field(s) vapid"),
    ],
)
def test_invalid_config_is_refused_with_a_message_fit_for_the_user(raw: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_channel("webpush", raw)
    assert str(caught.value).startswith("webpush: ") and error in str(caught.value)


def test_webpush_is_registered_and_keeps_its_secrets_out_of_repr() -> None:
    keys = valid_keys()
    built = build_channel("webpush", {"endpoint": "https://push.example.com/secret-path", "keys": keys})
    assert CHANNELS["webpush"] is WebPush and isinstance(built, WebPush)
    assert built.config.ttl == DEFAULT_TTL == 86400
    assert keys["auth"] not in repr(built.config) and "secret-path" not in repr(built.config)
    assert "private" not in repr(KEYS) and repr(KEYS.private_key) not in repr(VAPID)


@pytest.mark.parametrize(("severity", "urgency"), [("info", "low"), ("warning", "normal"), ("critical", "high")])
def test_render_maps_severity_to_urgency_and_topics_by_alert(severity: str, urgency: str) -> None:
    rendered = build_channel("webpush", {"endpoint": "https://p.example.com/x", "keys": valid_keys()}).render(
        dataclasses.replace(ALERT, severity=severity)
    )
    assert rendered.payload["urgency"] == urgency and rendered.payload["topic"] == "alert-42"
    assert rendered.payload["data"]["title"] == ALERT.title and rendered.payload["data"]["patient"] == "Pat One"


def test_render_shortens_a_long_body_to_fit_a_push_message() -> None:
    long = dataclasses.replace(ALERT, body="ü" * 5000)
    rendered = build_channel("webpush", {"endpoint": "https://p.example.com/x", "keys": valid_keys()}).render(long)
    data = rendered.payload["data"]
    assert len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()) <= MAX_PLAINTEXT
    assert data["body"].startswith("üüü") and data["title"] == ALERT.title


async def test_a_critical_alert_arrives_decrypted_signed_and_with_ttl_urgency_and_topic(
    push_service: FakePushService, browser: Subscription
) -> None:
    sender = channel(browser)

    outcome = await sender.send(sender.render(ALERT))

    assert outcome.status is DeliveryStatus.DELIVERED and outcome.http_status == 201, push_service.refusals
    [got] = browser.received
    assert got.data["alert_id"] == 42 and got.data["title"] == ALERT.title and got.data["severity"] == "critical"
    assert got.headers["TTL"] == "86400" and got.headers["Urgency"] == "high" and got.headers["Topic"] == "alert-42"
    assert got.vapid_key == KEYS.application_server_key
    assert got.claims["aud"] == push_service.origin and got.claims["sub"] == "mailto:ops@carebeacon.test"
    assert time.time() < got.claims["exp"] <= time.time() + 24 * 3600


async def test_the_configured_ttl_and_an_info_urgency_are_sent(browser: Subscription) -> None:
    sender = channel(browser, ttl=600)

    outcome = await sender.send(sender.render(dataclasses.replace(ALERT, severity="info")))

    assert outcome.status is DeliveryStatus.DELIVERED
    assert browser.received[0].headers["TTL"] == "600" and browser.received[0].headers["Urgency"] == "low"


@pytest.mark.parametrize(
    ("answer", "retry_after", "status", "seconds"),
    [
        (410, None, DeliveryStatus.GONE, None),
        (404, None, DeliveryStatus.GONE, None),
        (429, "120", DeliveryStatus.RATE_LIMITED, 120.0),
        (500, None, DeliveryStatus.TRANSIENT, None),
        (503, "30", DeliveryStatus.TRANSIENT, 30.0),
        (413, None, DeliveryStatus.PERMANENT, None),
    ],
)
async def test_each_push_service_answer_maps_to_a_delivery_naming_the_host_only(
    browser: Subscription, answer: int, retry_after: str | None, status: DeliveryStatus, seconds: float | None
) -> None:
    browser.answer, browser.retry_after = answer, retry_after
    sender = channel(browser)

    outcome = await sender.send(sender.render(ALERT))

    assert (outcome.status, outcome.retry_after, outcome.http_status) == (status, seconds, answer)
    assert outcome.detail is not None and outcome.detail.startswith(f"webpush: HTTP {answer}")
    assert browser.token not in outcome.detail


async def test_an_unknown_subscription_is_gone(push_service: FakePushService) -> None:
    sub = push_service.subscribe(KEYS.application_server_key)
    del push_service.subscriptions[sub.token]  # the browser unsubscribed
    sender = channel(sub)

    assert (await sender.send(sender.render(ALERT))).status is DeliveryStatus.GONE


async def test_a_vapid_key_other_than_the_subscriptions_is_an_auth_failure(
    push_service: FakePushService, browser: Subscription
) -> None:
    other = WebPush.parse_config(browser.to_json(), transport=LOCAL).with_vapid(
        Vapid(push.VapidKeys.generate(), "mailto:ops@carebeacon.test")
    )

    outcome = await other.send(other.render(ALERT))

    assert outcome.status is DeliveryStatus.AUTH and outcome.http_status == 403
    assert browser.received == []


async def test_a_channel_without_the_vapid_key_fails_permanently_without_sending(browser: Subscription) -> None:
    unsigned = WebPush.parse_config(browser.to_json(), transport=LOCAL)

    outcome = await unsigned.send(unsigned.render(ALERT))

    assert outcome.status is DeliveryStatus.PERMANENT and outcome.detail is not None and "with_vapid" in outcome.detail
    assert browser.received == []


async def test_a_slow_push_service_is_a_transient_timeout(browser: Subscription) -> None:
    browser.delay = 2.0
    sender = channel(browser, Transport(LOCAL.policy, timeout=0.3))

    outcome = await sender.send(sender.render(ALERT))

    assert (
        outcome.status is DeliveryStatus.TRANSIENT
        and outcome.detail == "webpush: no answer from 127.0.0.1 within 0.3 s"
    )


async def test_a_private_endpoint_is_refused_at_send_time_by_the_strict_policy(browser: Subscription) -> None:
    strict = WebPush(channel(browser).config, Transport(), VAPID)

    outcome = await strict.send(strict.render(ALERT))

    assert outcome.status is DeliveryStatus.PERMANENT and browser.received == []
    assert outcome.detail == "webpush: destination refused: the URL must use https"


def test_the_vapid_subject_comes_from_the_environment_as_mailto_or_https() -> None:
    assert Vapid.subject_from_env({"VAPID_SUBJECT": "https://carebeacon.test"}) == "https://carebeacon.test"
    assert Vapid.subject_from_env({}) is None
    with pytest.raises(SettingError, match="VAPID_SUBJECT"):
        Vapid.subject_from_env({"VAPID_SUBJECT": "ops@carebeacon.test"})
    with pytest.raises(ValueError, match="mailto: or https:"):
        Vapid(KEYS, "ops@carebeacon.test")


async def test_the_vapid_key_pair_is_made_once_sealed_and_served_as_an_application_server_key(
    conn: asyncpg.Connection, fresh_db: str, keyring: Keyring
) -> None:
    others = [await connect(fresh_db) for _ in range(3)]
    try:
        made = await asyncio.gather(*(push.vapid_keys(c, keyring) for c in others))
    finally:
        for other in others:
            await other.close()

    assert len({k.private_key for k in made}) == 1  # racing workers all read back the one that won
    again = await push.vapid_keys(conn, keyring)
    assert again == made[0] and await push.application_server_key(conn, keyring) == again.application_server_key
    point = base64.urlsafe_b64decode(again.application_server_key + "=")
    assert len(point) == 65 and point[0] == 4
    row = await conn.fetchrow("SELECT id, secret_sealed FROM deployment_keys WHERE name = 'vapid'")
    assert row["secret_sealed"].startswith("cb1.test.") and again.private_key.hex() not in row["secret_sealed"]
    assert await conn.fetchval("SELECT count(*) FROM deployment_keys") == 1
