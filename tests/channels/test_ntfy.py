"""The ntfy channel against a local ntfy server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from channels import CHANNELS, ConfigError, DeliveryStatus
from channels.destinations import DestinationPolicy
from channels.http import Transport
from channels.ntfy import Ntfy
from db.alerts import Alert
from tests.fakes.ntfy import FakeNtfy

LOCAL = Transport(DestinationPolicy(allow_private=True), timeout=1.0)
ALERT = Alert(
    id=7,
    user_id=3,
    tenant_id=1,
    patient="Pat One",
    category="clinical",
    severity="critical",
    metric="spo2",
    title="🚨 Blood oxygen below 90 % — Zoë",
    body="spo2 86 % on 2026-11-22 (threshold 90)",
    observed_value=86.0,
    threshold=90.0,
    recorded_at=datetime(2026, 11, 22, 7, tzinfo=UTC),
    created_at=datetime(2026, 11, 22, 7, 5, tzinfo=UTC),
)


@pytest.fixture(scope="module")
def ntfy() -> Iterator[FakeNtfy]:
    server = FakeNtfy().start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({}, "ntfy: topic must be a non-empty string"),
        ({"topic": "a/b"}, "ntfy: topic must be 1 to 64 letters, digits, '-' or '_'"),
        ({"topic": "x" * 65}, "ntfy: topic must be 1 to 64"),
        ({"topic": "ok", "server": "http://ntfy.example"}, "ntfy: server: the URL must use https"),
        ({"topic": "ok", "token": "tk_a b"}, "ntfy: token must be an access token"),
        ({"topic": "ok", "priority": 5}, "ntfy: unknown field(s) priority"),
    ],
)
def test_invalid_config_is_refused_with_a_message_fit_for_the_user(config: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Ntfy.parse_config(config, transport=Transport())
    assert str(caught.value).startswith(error)


def test_ntfy_is_registered_and_topic_and_token_never_show_in_repr() -> None:
    channel = Ntfy.parse_config({"topic": "secret-topic", "token": "tk_secrettoken"}, transport=Transport())
    assert CHANNELS["ntfy"] is Ntfy and set(Ntfy.secret_fields) == {"topic", "token"}
    assert "secret" not in repr(channel.config) and channel.config.server == "https://ntfy.sh"


@pytest.mark.parametrize(
    ("severity", "priority", "tag"),
    [("info", 3, "information_source"), ("warning", 4, "warning"), ("critical", 5, "rotating_light")],
)
def test_severity_sets_priority_and_tag(severity: str, priority: int, tag: str) -> None:
    channel = Ntfy.parse_config({"topic": "t"}, transport=Transport())
    payload = channel.render(replace(ALERT, severity=severity)).payload
    assert (payload["priority"], payload["tags"]) == (priority, [tag, "clinical"])


def test_render_keeps_the_topic_out_and_links_to_the_alert() -> None:
    channel = Ntfy.parse_config({"topic": "secret-topic", "link_base": "https://app.example"}, transport=Transport())

    payload = channel.render(ALERT).payload

    assert "topic" not in payload and payload["title"] == ALERT.title
    assert payload["message"] == (
        "spo2 86 % on 2026-11-22 (threshold 90)\nPatient: Pat One · Metric: spo2 · Observed: 86 · Threshold: 90"
    )
    assert payload["click"] == "https://app.example/alerts/7"
    assert payload["actions"] == [{"action": "view", "label": "Open alert", "url": "https://app.example/alerts/7"}]


async def test_an_emoji_title_is_published_intact_as_utf8_json(ntfy: FakeNtfy) -> None:
    topic, _ = ntfy.topic()
    channel = Ntfy.parse_config({"topic": topic, "server": ntfy.url, "link_base": ntfy.url}, transport=LOCAL)

    outcome = await channel.send(channel.render(ALERT))

    assert (outcome.status, outcome.http_status) == (DeliveryStatus.DELIVERED, 200)
    [request] = ntfy.published(topic)
    assert request.json()["title"] == "🚨 Blood oxygen below 90 % — Zoë" and request.json()["priority"] == 5
    assert "authorization" not in request.headers and ntfy.problems["/"] == []


async def test_a_protected_topic_gets_the_token_as_a_bearer(ntfy: FakeNtfy) -> None:
    topic, token = ntfy.topic(protected=True)
    channel = Ntfy.parse_config({"topic": topic, "server": ntfy.url, "token": token}, transport=LOCAL)
    wrong = Ntfy(replace(channel.config, token="tk_wrong"), LOCAL)

    delivered = await channel.send(channel.render(ALERT))
    refused = await wrong.send(wrong.render(ALERT))

    assert delivered.status is DeliveryStatus.DELIVERED
    assert (refused.status, refused.detail) == (DeliveryStatus.AUTH, "ntfy: HTTP 403: forbidden")
    assert ntfy.published(topic)[0].headers["authorization"] == f"Bearer {token}"


@pytest.mark.parametrize(
    ("fault", "expected", "retry_after"),
    [
        (
            {"status": 429, "retry_after": "5", "body": {"code": 42901, "http": 429, "error": "limit reached"}},
            DeliveryStatus.RATE_LIMITED,
            5.0,
        ),
        ({"status": 500}, DeliveryStatus.TRANSIENT, None),
        ({"status": 401, "body": {"code": 40101, "http": 401, "error": "unauthorized"}}, DeliveryStatus.AUTH, None),
        ({"status": 413, "body": {"code": 41301, "http": 413, "error": "too large"}}, DeliveryStatus.PERMANENT, None),
    ],
)
async def test_faults_are_classified(
    ntfy: FakeNtfy, fault: dict[str, Any], expected: DeliveryStatus, retry_after: float | None
) -> None:
    topic, _ = ntfy.topic()
    ntfy.fail("/", **fault)
    channel = Ntfy.parse_config({"topic": topic, "server": ntfy.url}, transport=LOCAL)

    outcome = await channel.send(channel.render(ALERT))

    assert (outcome.status, outcome.retry_after) == (expected, retry_after)
    assert outcome.detail is not None and topic not in outcome.detail


async def test_a_timeout_is_transient(ntfy: FakeNtfy) -> None:
    topic, _ = ntfy.topic()
    ntfy.fail("/", delay=3.0)
    channel = Ntfy.parse_config({"topic": topic, "server": ntfy.url}, transport=Transport(LOCAL.policy, timeout=0.3))

    assert (await channel.send(channel.render(ALERT))).status is DeliveryStatus.TRANSIENT


async def test_a_private_server_is_refused_at_send_time_when_not_allowed(ntfy: FakeNtfy) -> None:
    topic, _ = ntfy.topic()
    strict = Ntfy(Ntfy.parse_config({"topic": topic, "server": ntfy.url}, transport=LOCAL).config, Transport())

    outcome = await strict.send(strict.render(ALERT))

    assert outcome.status is DeliveryStatus.PERMANENT and ntfy.published(topic) == []
