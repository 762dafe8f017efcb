"""The Discord channel against a local Discord webhook endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from channels import CHANNELS, ConfigError, DeliveryStatus
from channels.destinations import DestinationPolicy
from channels.discord import Discord
from channels.http import Transport
from db.alerts import Alert
from tests.fakes.discord import FakeDiscord

LOCAL = Transport(DestinationPolicy(allow_private=True), timeout=1.0)
HOOK = "https://discord.com/api/webhooks/123456789012345678/abcDEF-ghi_jkl"
ALERT = Alert(
    id=7,
    user_id=3,
    tenant_id=1,
    patient="Pat One",
    category="clinical",
    severity="critical",
    metric="spo2",
    title="Blood oxygen below 90 %",
    body="spo2 86 % @everyone <@&1234567> (threshold 90)",
    observed_value=86.0,
    threshold=90.0,
    recorded_at=datetime(2026, 11, 22, 7, tzinfo=UTC),
    created_at=datetime(2026, 11, 22, 7, 5, tzinfo=UTC),
)


@pytest.fixture(scope="module")
def discord() -> Iterator[FakeDiscord]:
    server = FakeDiscord().start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({}, "discord: url must be a non-empty string"),
        ({"url": HOOK, "colour": "red"}, "discord: unknown field(s) colour"),
        ({"url": "http://discord.com/api/webhooks/1/x"}, "discord: url: the URL must use https"),
        ({"url": "https://example.com/api/webhooks/123/tok"}, "discord: url must be on discord.com"),
        ({"url": "https://discord.com/api/channels/123"}, "discord: url must be a webhook URL ending"),
        ({"url": HOOK + "?thread_id=1"}, "discord: url must be a webhook URL ending"),
        ({"url": HOOK, "critical_mention": "@everyone"}, "discord: critical_mention must be role:<id>"),
        ({"url": HOOK, "link_base": "ftp://x"}, "discord: link_base: the URL must use https"),
    ],
)
def test_invalid_config_is_refused_with_a_message_fit_for_the_user(config: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Discord.parse_config(config, transport=Transport())
    assert str(caught.value).startswith(error)
    assert "abcDEF" not in str(caught.value)


def test_discord_is_registered_and_its_url_never_shows_in_repr() -> None:
    channel = Discord.parse_config({"url": HOOK}, transport=Transport())
    assert CHANNELS["discord"] is Discord and "url" in Discord.secret_fields
    assert "abcDEF" not in repr(channel.config) and "123456789012345678" not in repr(channel.config)


@pytest.mark.parametrize(("severity", "colour"), [("info", 0x3498DB), ("warning", 0xF39C12), ("critical", 0xE74C3C)])
def test_the_embed_colour_follows_severity(severity: str, colour: int) -> None:
    channel = Discord.parse_config({"url": HOOK}, transport=Transport())
    assert channel.render(replace(ALERT, severity=severity)).payload["embeds"][0]["color"] == colour


def test_render_builds_one_embed_and_alert_text_can_ping_nobody() -> None:
    channel = Discord.parse_config({"url": HOOK, "link_base": "https://app.example/"}, transport=Transport())

    payload = channel.render(ALERT).payload

    assert payload["allowed_mentions"] == {"parse": []} and "content" not in payload
    embed = payload["embeds"][0]
    assert embed["title"] == "Blood oxygen below 90 %" and "@everyone" in embed["description"]
    assert embed["url"] == "https://app.example/alerts/7"
    assert embed["timestamp"] == "2026-11-22T07:00:00+00:00"
    assert [(f["name"], f["value"]) for f in embed["fields"]] == [
        ("Patient", "Pat One"),
        ("Metric", "spo2"),
        ("Observed", "86"),
        ("Threshold", "90"),
    ]
    assert embed["footer"]["text"] == "CareBeacon · critical · clinical"


@pytest.mark.parametrize(
    ("mention", "content", "allowed"),
    [
        ("role:112233445566", "<@&112233445566>", {"parse": [], "roles": ["112233445566"]}),
        ("<@&112233445566>", "<@&112233445566>", {"parse": [], "roles": ["112233445566"]}),
        ("user:998877665544", "<@998877665544>", {"parse": [], "users": ["998877665544"]}),
        ("<@998877665544>", "<@998877665544>", {"parse": [], "users": ["998877665544"]}),
    ],
)
def test_a_critical_alert_pings_exactly_the_configured_mention(mention: str, content: str, allowed: Any) -> None:
    channel = Discord.parse_config({"url": HOOK, "critical_mention": mention}, transport=Transport())

    critical = channel.render(ALERT).payload
    warning = channel.render(replace(ALERT, severity="warning")).payload

    assert (critical["content"], critical["allowed_mentions"]) == (content, allowed)
    assert "content" not in warning and warning["allowed_mentions"] == {"parse": []}


def test_a_long_alert_is_cut_to_discords_limits() -> None:
    channel = Discord.parse_config({"url": HOOK}, transport=Transport())
    embed = channel.render(replace(ALERT, title="t" * 300, body="b" * 5000)).payload["embeds"][0]
    assert len(embed["title"]) == 256 and len(embed["description"]) == 4096 and embed["title"].endswith("…")


async def test_an_alert_is_delivered_as_the_documented_execute_webhook_call(discord: FakeDiscord) -> None:
    path, url = discord.webhook()
    channel = Discord.parse_config({"url": url, "critical_mention": "role:112233445566"}, transport=LOCAL)
    rendered = channel.render(ALERT)

    outcome = await channel.send(rendered)

    assert (outcome.status, outcome.http_status) == (DeliveryStatus.DELIVERED, 200)
    [request] = discord.received(path)
    assert request.query == {"wait": "true"} and request.json() == rendered.payload
    assert discord.problems[path] == []


async def test_a_429_waits_for_the_bodys_retry_after(discord: FakeDiscord) -> None:
    path, url = discord.webhook()
    discord.rate_limited(path, 1.5)
    channel = Discord.parse_config({"url": url}, transport=LOCAL)

    outcome = await channel.send(channel.render(ALERT))

    assert (outcome.status, outcome.retry_after, outcome.http_status) == (DeliveryStatus.RATE_LIMITED, 1.5, 429)
    assert outcome.detail == "discord: HTTP 429: You are being rate limited."


async def test_a_429_prefers_the_reset_after_header(discord: FakeDiscord) -> None:
    path, url = discord.webhook()
    discord.rate_limited(path, 1500, **{"Retry-After": "3", "X-RateLimit-Reset-After": "2.25"})
    channel = Discord.parse_config({"url": url}, transport=LOCAL)

    outcome = await channel.send(channel.render(ALERT))

    assert (outcome.status, outcome.retry_after) == (DeliveryStatus.RATE_LIMITED, 2.25)


async def test_an_emptied_bucket_is_noted_on_a_delivered_message(discord: FakeDiscord) -> None:
    path, url = discord.webhook()
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "2.5"}
    discord.fail(path, status=200, body={"id": "1"}, headers=headers)
    channel = Discord.parse_config({"url": url}, transport=LOCAL)

    outcome = await channel.send(channel.render(ALERT))

    assert outcome.status is DeliveryStatus.DELIVERED and outcome.retry_after == 2.5
    assert outcome.detail == "discord: rate-limit bucket empty; resets in 2.5 s"


async def test_a_500_is_transient_and_the_retry_is_delivered(discord: FakeDiscord) -> None:
    path, url = discord.webhook()
    discord.fail(path, status=500)
    channel = Discord.parse_config({"url": url}, transport=LOCAL)

    first = await channel.send(channel.render(ALERT))
    second = await channel.send(channel.render(ALERT))

    assert (first.status, second.status) == (DeliveryStatus.TRANSIENT, DeliveryStatus.DELIVERED)
    assert len(discord.received(path)) == 2


@pytest.mark.parametrize(
    ("status", "expected"),
    [(401, DeliveryStatus.AUTH), (403, DeliveryStatus.AUTH), (400, DeliveryStatus.PERMANENT)],
)
async def test_refusals_are_classified(discord: FakeDiscord, status: int, expected: DeliveryStatus) -> None:
    path, url = discord.webhook()
    discord.fail(path, status=status, body={"message": f"no: {path}", "code": 0})
    channel = Discord.parse_config({"url": url}, transport=LOCAL)

    outcome = await channel.send(channel.render(ALERT))

    assert (outcome.status, outcome.http_status) == (expected, status)
    token = path.rsplit("/", 1)[1]
    assert outcome.detail is not None and token not in outcome.detail and "127.0.0.1" not in outcome.detail


async def test_a_deleted_webhook_is_permanent(discord: FakeDiscord) -> None:
    path, url = discord.webhook()
    discord.deleted.add(path)
    channel = Discord.parse_config({"url": url}, transport=LOCAL)

    outcome = await channel.send(channel.render(ALERT))

    assert (outcome.status, outcome.detail) == (DeliveryStatus.PERMANENT, "discord: HTTP 404: Unknown Webhook")


async def test_a_slow_answer_times_out_as_transient(discord: FakeDiscord) -> None:
    path, url = discord.webhook()
    discord.fail(path, delay=3.0)
    channel = Discord.parse_config({"url": url}, transport=Transport(LOCAL.policy, timeout=0.3))

    outcome = await channel.send(channel.render(ALERT))

    assert outcome.status is DeliveryStatus.TRANSIENT
    assert outcome.detail == "discord: no answer from 127.0.0.1 within 0.3 s"


async def test_a_private_destination_is_refused_at_send_time_when_not_allowed(discord: FakeDiscord) -> None:
    path, url = discord.webhook()
    built = Discord.parse_config({"url": url}, transport=LOCAL)
    strict = Discord(built.config, Transport(DestinationPolicy(allow_private=False)))

    outcome = await strict.send(strict.render(ALERT))

    assert outcome.status is DeliveryStatus.PERMANENT
    assert outcome.detail == "discord: destination refused: the URL must use https"
    assert discord.received(path) == []
