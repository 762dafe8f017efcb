"""The Webhook channel: Standard Webhooks signatures checked by the official library in a local receiver."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from channels import CHANNELS, ConfigError, DeliveryStatus
from channels.destinations import DestinationPolicy
from channels.http import Transport
from channels.signing import verify
from channels.webhook import Webhook
from db.alerts import Alert
from tests.fakes.receiver import Receiver

LOCAL = Transport(DestinationPolicy(allow_private=True), timeout=1.0)
ALERT = Alert(
    id=7,
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


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


SECRET = new_secret()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def channel_for(receiver: Receiver, **config: Any) -> tuple[str, str, Webhook]:
    secret = new_secret()
    path, url = receiver.path(secret)
    raw = {"url": url, "secret": secret, "channel_id": 3} | config
    return path, secret, Webhook.parse_config(raw, transport=LOCAL)


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({"secret": SECRET}, "webhook: url must be a non-empty string"),
        ({"url": "https://example.com/h"}, "webhook: secret must be a whsec_ secret or a list of 1 to 10"),
        ({"url": "https://example.com/h", "secret": []}, "webhook: secret must be a whsec_ secret or a list"),
        ({"url": "https://example.com/h", "secret": "hunter2hunter2"}, "webhook: secret: a signing secret must start"),
        ({"url": "https://example.com/h", "secret": [SECRET, 5]}, "webhook: secret: a signing secret must start"),
        ({"url": "https://example.com/h", "secret": "whsec_AAAA"}, "webhook: secret: a signing secret must hold 24"),
        ({"url": "http://example.com/h", "secret": SECRET}, "webhook: url: the URL must use https"),
        ({"url": "https://example.com/h", "secret": SECRET, "channel_id": "3"}, "webhook: channel_id must be an"),
        ({"url": "https://example.com/h", "secret": SECRET, "method": "PUT"}, "webhook: unknown field(s) method"),
    ],
)
def test_invalid_config_is_refused_with_a_message_fit_for_the_user(config: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Webhook.parse_config(config, transport=Transport())
    assert str(caught.value).startswith(error)
    assert "hunter2" not in str(caught.value) and SECRET[6:] not in str(caught.value)


def test_webhook_is_registered_and_url_and_secret_never_show_in_repr() -> None:
    channel = Webhook.parse_config({"url": "https://example.com/h/tok3n", "secret": SECRET}, transport=Transport())
    assert CHANNELS["webhook"] is Webhook and set(Webhook.secret_fields) == {"url", "secret"}
    assert "tok3n" not in repr(channel.config) and SECRET[6:] not in repr(channel.config)


def test_render_is_a_thin_event_without_the_patients_name_or_text() -> None:
    channel = Webhook.parse_config(
        {"url": "https://example.com/h", "secret": SECRET, "link_base": "https://app.example"}, transport=Transport()
    )

    payload = channel.render(ALERT).payload

    assert payload == {
        "type": "alert.raised",
        "timestamp": "2026-11-22T07:05:00+00:00",
        "data": {
            "alert_id": 7,
            "tenant_id": 1,
            "user_id": 3,
            "category": "clinical",
            "severity": "critical",
            "metric": "spo2",
            "title": "Blood oxygen below 90 %",
            "observed_value": 86.0,
            "threshold": 90.0,
            "recorded_at": "2026-11-22T07:00:00+00:00",
            "url": "https://app.example/alerts/7",
        },
    }


async def test_a_signed_event_is_accepted_by_the_official_verifier(receiver: Receiver) -> None:
    path, secret, channel = channel_for(receiver)
    rendered = channel.render(ALERT)

    outcome = await channel.send(rendered)

    assert (outcome.status, outcome.http_status) == (DeliveryStatus.DELIVERED, 200)
    assert receiver.problems[path] == []
    [request] = receiver.received(path)
    assert request.json() == rendered.payload and request.headers["webhook-id"] == "msg_alert_7_3"
    assert verify(
        secret,
        "msg_alert_7_3",
        request.headers["webhook-timestamp"],
        request.body,
        request.headers["webhook-signature"],
    )


async def test_the_webhook_id_is_the_same_on_every_retry_and_differs_per_channel(receiver: Receiver) -> None:
    path, secret, channel = channel_for(receiver)
    receiver.fail(path, status=503)
    other = Webhook(replace(channel.config, channel_id=4), LOCAL)

    first = await channel.send(channel.render(ALERT))
    second = await channel.send(channel.render(ALERT))
    third = await other.send(other.render(ALERT))

    assert [first.status, second.status, third.status] == [DeliveryStatus.TRANSIENT] + [DeliveryStatus.DELIVERED] * 2
    assert [r.headers["webhook-id"] for r in receiver.received(path)] == [
        "msg_alert_7_3",
        "msg_alert_7_3",
        "msg_alert_7_4",
    ]


async def test_during_rotation_both_the_old_and_the_new_secret_verify(receiver: Receiver) -> None:
    path, old, channel = channel_for(receiver)
    new = new_secret()
    rotating = Webhook(replace(channel.config, secrets=(new, old)), LOCAL)

    outcome = await rotating.send(rotating.render(ALERT))

    assert outcome.status is DeliveryStatus.DELIVERED and receiver.problems[path] == []
    [request] = receiver.received(path)
    assert len(request.headers["webhook-signature"].split(" ")) == 2


async def test_a_wrong_secret_is_refused_by_the_receiver(receiver: Receiver) -> None:
    path, _, channel = channel_for(receiver)
    wrong = Webhook(replace(channel.config, secrets=(new_secret(),)), LOCAL)

    outcome = await wrong.send(wrong.render(ALERT))

    assert outcome.status is DeliveryStatus.PERMANENT and receiver.problems[path] == [
        "signature: No matching signature found"
    ]


@pytest.mark.parametrize(
    ("fault", "expected", "retry_after"),
    [
        ({"status": 410, "body": {"message": "endpoint retired"}}, DeliveryStatus.GONE, None),
        ({"status": 404}, DeliveryStatus.PERMANENT, None),
        ({"status": 429, "retry_after": "Wed, 21 Oct 2015 07:28:00 GMT"}, DeliveryStatus.RATE_LIMITED, 0.0),
        ({"status": 429, "retry_after": "60"}, DeliveryStatus.RATE_LIMITED, 60.0),
        ({"status": 502}, DeliveryStatus.TRANSIENT, None),
        ({"status": 401}, DeliveryStatus.AUTH, None),
        ({"status": 301, "headers": {"Location": "http://169.254.169.254/"}}, DeliveryStatus.PERMANENT, None),
    ],
)
async def test_answers_are_classified(
    receiver: Receiver, fault: dict[str, Any], expected: DeliveryStatus, retry_after: float | None
) -> None:
    path, _, channel = channel_for(receiver)
    receiver.fail(path, **fault)

    outcome = await channel.send(channel.render(ALERT))

    assert (outcome.status, outcome.retry_after) == (expected, retry_after)
    assert outcome.detail is not None and path not in outcome.detail and len(receiver.received(path)) == 1


async def test_a_410_says_gone_with_the_peers_reason(receiver: Receiver) -> None:
    path, _, channel = channel_for(receiver)
    receiver.fail(path, status=410, body={"message": "endpoint retired"})

    outcome = await channel.send(channel.render(ALERT))

    assert (outcome.status, outcome.detail) == (DeliveryStatus.GONE, "webhook: HTTP 410: endpoint retired")


async def test_a_timeout_and_a_closed_port_are_transient(receiver: Receiver) -> None:
    path, _, channel = channel_for(receiver)
    receiver.fail(path, delay=3.0)
    slow = Webhook(channel.config, Transport(LOCAL.policy, timeout=0.3))
    closed = Webhook(replace(channel.config, url="http://127.0.0.1:9/hooks/x"), LOCAL)

    timed_out = await slow.send(slow.render(ALERT))
    refused = await closed.send(closed.render(ALERT))

    assert (timed_out.status, timed_out.detail) == (
        DeliveryStatus.TRANSIENT,
        "webhook: no answer from 127.0.0.1 within 0.3 s",
    )
    assert (refused.status, refused.detail) == (
        DeliveryStatus.TRANSIENT,
        "webhook: cannot reach 127.0.0.1 (ClientConnectorError)",
    )


async def test_a_private_destination_is_refused_at_send_time_when_not_allowed(receiver: Receiver) -> None:
    path, _, built = channel_for(receiver)
    strict = Webhook(replace(built.config, url=built.config.url.replace("http:", "https:")), Transport())

    outcome = await strict.send(strict.render(ALERT))

    assert (outcome.status, outcome.detail) == (
        DeliveryStatus.PERMANENT,
        "webhook: destination refused: the host '127.0.0.1' resolves to a non-public address",
    )
    assert receiver.received(path) == []
