"""The Slack channel, by incoming webhook and by bot token, against a local Slack."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from channels import CHANNELS, ConfigError, DeliveryStatus
from channels.destinations import DestinationPolicy
from channels.http import Transport
from channels.slack import Slack, escape
from db.alerts import Alert
from tests.fakes.slack import API_PATH, FakeSlack

LOCAL = Transport(DestinationPolicy(allow_private=True), timeout=1.0)
HOOK = "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX"
ALERT = Alert(
    id=7,
    user_id=3,
    tenant_id=1,
    patient="Pat <One> & co",
    category="clinical",
    severity="critical",
    metric="spo2",
    title="Blood oxygen <90 %",
    body="spo2 86 % <!channel> <https://evil.example|click> (threshold 90)",
    observed_value=86.0,
    threshold=90.0,
    recorded_at=datetime(2026, 11, 22, 7, tzinfo=UTC),
    created_at=datetime(2026, 11, 22, 7, 5, tzinfo=UTC),
)


@pytest.fixture(scope="module")
def slack() -> Iterator[FakeSlack]:
    server = FakeSlack().start()
    yield server
    server.stop()


def bot(slack: FakeSlack, channel: str = "C0123ABCDEF", **config: Any) -> tuple[str, Slack]:
    token = slack.bot(channel)
    raw = {"token": token, "channel": channel, "api_base": slack.url + "/api"} | config
    return token, Slack.parse_config(raw, transport=LOCAL)


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({}, "slack: give webhook_url, or token and channel"),
        ({"token": "xoxb-1"}, "slack: give webhook_url, or token and channel"),
        ({"webhook_url": HOOK, "token": "xoxb-1"}, "slack: give webhook_url, or token and channel, not both"),
        ({"webhook_url": "https://example.com/services/x"}, "slack: webhook_url must be on hooks.slack.com"),
        ({"webhook_url": "http://hooks.slack.com/services/x"}, "slack: webhook_url: the URL must use https"),
        ({"token": "hunter2", "channel": "C0123ABCDEF"}, "slack: token must be a bot token (xoxb-…)"),
        ({"token": "xoxb-1-2", "channel": "#general"}, "slack: channel must be a channel id such as C0123456789"),
        ({"token": "xoxb-1-2", "channel": "C0123ABCDEF", "api_base": 5}, "slack: api_base must be a non-empty"),
        ({"webhook_url": HOOK, "emoji": True}, "slack: unknown field(s) emoji"),
    ],
)
def test_invalid_config_is_refused_with_a_message_fit_for_the_user(config: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Slack.parse_config(config, transport=Transport())
    assert str(caught.value).startswith(error)
    assert "secret" not in str(caught.value) and "hunter2" not in str(caught.value)


def test_slack_is_registered_and_secrets_never_show_in_repr() -> None:
    by_hook = Slack.parse_config({"webhook_url": HOOK}, transport=Transport())
    by_token = Slack.parse_config({"token": "xoxb-1-topsecret", "channel": "C0123ABCDEF"}, transport=Transport())
    assert CHANNELS["slack"] is Slack and set(Slack.secret_fields) == {"webhook_url", "token"}
    assert "secret" not in repr(by_hook.config) and "topsecret" not in repr(by_token.config)
    assert by_token.config.api_base == "https://slack.com/api"


def test_escaping_follows_slacks_three_control_characters() -> None:
    assert escape("a & <b> > c *d*") == "a &amp; &lt;b&gt; &gt; c *d*"


def test_render_builds_header_section_and_context_with_everything_escaped() -> None:
    channel = Slack.parse_config({"webhook_url": HOOK}, transport=Transport())

    rendered = channel.render(ALERT)

    header, section, context = rendered.payload["blocks"]
    assert header["text"] == {"type": "plain_text", "text": "CRITICAL: Blood oxygen <90 %", "emoji": True}
    assert section["text"]["text"] == "spo2 86 % &lt;!channel&gt; &lt;https://evil.example|click&gt; (threshold 90)"
    assert [f["text"] for f in section["fields"]] == [
        "*Patient*\nPat &lt;One&gt; &amp; co",
        "*Metric*\nspo2",
        "*Observed*\n86",
        "*Threshold*\n90",
    ]
    assert context["elements"][0]["text"].startswith(":rotating_light: Pat &lt;One&gt; &amp; co · <!date^1795330800^")
    assert rendered.payload["text"] == "[CRITICAL] Pat &lt;One&gt; &amp; co: Blood oxygen &lt;90 %"


def test_a_long_title_fits_the_150_character_header_and_a_link_adds_a_button() -> None:
    channel = Slack.parse_config({"webhook_url": HOOK, "link_base": "https://app.example"}, transport=Transport())

    blocks = channel.render(replace(ALERT, title="x" * 400)).payload["blocks"]

    assert len(blocks[0]["text"]["text"]) == 150
    assert blocks[-1]["elements"][0]["url"] == "https://app.example/alerts/7"


async def test_a_webhook_delivers_the_blocks(slack: FakeSlack) -> None:
    path, url = slack.webhook()
    channel = Slack.parse_config({"webhook_url": url, "link_base": "http://127.0.0.1:1"}, transport=LOCAL)
    rendered = channel.render(ALERT)

    outcome = await channel.send(rendered)

    assert (outcome.status, outcome.http_status) == (DeliveryStatus.DELIVERED, 200)
    [request] = slack.received(path)
    assert request.json() == rendered.payload and slack.problems[path] == []


async def test_chat_post_message_sends_the_token_as_a_bearer_and_the_channel_in_the_body(slack: FakeSlack) -> None:
    token, channel = bot(slack)

    outcome = await channel.send(channel.render(ALERT))

    assert outcome.status is DeliveryStatus.DELIVERED
    [request] = slack.posted(token)
    assert request.json()["channel"] == "C0123ABCDEF" and request.json()["blocks"]
    assert request.headers["content-type"] == "application/json; charset=utf-8"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("invalid_auth", DeliveryStatus.AUTH),
        ("token_revoked", DeliveryStatus.AUTH),
        ("channel_not_found", DeliveryStatus.PERMANENT),
        ("is_archived", DeliveryStatus.PERMANENT),
        ("internal_error", DeliveryStatus.TRANSIENT),
        ("ratelimited", DeliveryStatus.RATE_LIMITED),
    ],
)
async def test_an_ok_false_answer_is_classified_by_its_error(
    slack: FakeSlack, error: str, expected: DeliveryStatus
) -> None:
    token, channel = bot(slack)
    slack.fail(API_PATH, status=200, body={"ok": False, "error": error})

    outcome = await channel.send(channel.render(ALERT))

    assert (outcome.status, outcome.detail, outcome.http_status) == (expected, f"slack: ok=false: {error}", 200)


async def test_a_wrong_token_or_channel_is_refused_by_the_peer(slack: FakeSlack) -> None:
    _, channel = bot(slack)
    wrong_token = Slack(replace(channel.config, token="xoxb-0-unknown"), LOCAL)
    wrong_channel = Slack(replace(channel.config, channel="C9999999999"), LOCAL)

    assert (await wrong_token.send(wrong_token.render(ALERT))).status is DeliveryStatus.AUTH
    assert (await wrong_channel.send(wrong_channel.render(ALERT))).detail == "slack: ok=false: channel_not_found"


async def test_a_429_waits_for_retry_after(slack: FakeSlack) -> None:
    token, channel = bot(slack)
    slack.fail(API_PATH, status=429, retry_after="30", body={"ok": False, "error": "ratelimited"})
    path, url = slack.webhook()
    slack.fail(path, status=429, retry_after="7", body="rate_limited")
    hook = Slack.parse_config({"webhook_url": url}, transport=LOCAL)

    by_api = await channel.send(channel.render(ALERT))
    by_hook = await hook.send(hook.render(ALERT))

    assert (by_api.status, by_api.retry_after) == (DeliveryStatus.RATE_LIMITED, 30.0)
    assert (by_hook.status, by_hook.retry_after, by_hook.detail) == (
        DeliveryStatus.RATE_LIMITED,
        7.0,
        "slack: HTTP 429: rate_limited",
    )


@pytest.mark.parametrize(
    ("status", "text", "expected"),
    [
        (500, "internal error", DeliveryStatus.TRANSIENT),
        (403, "action_prohibited", DeliveryStatus.AUTH),
        (404, "no_service", DeliveryStatus.PERMANENT),
        (410, "channel_is_archived", DeliveryStatus.PERMANENT),
    ],
)
async def test_webhook_errors_are_classified_without_leaking_the_url(
    slack: FakeSlack, status: int, text: str, expected: DeliveryStatus
) -> None:
    path, url = slack.webhook()
    slack.fail(path, status=status, body=f"{text} {path}")
    channel = Slack.parse_config({"webhook_url": url}, transport=LOCAL)

    outcome = await channel.send(channel.render(ALERT))

    assert outcome.status is expected and outcome.detail is not None
    assert outcome.detail.startswith(f"slack: HTTP {status}: {text}") and path.rsplit("/", 1)[1] not in outcome.detail


async def test_a_timeout_is_transient(slack: FakeSlack) -> None:
    path, url = slack.webhook()
    slack.fail(path, delay=3.0)
    channel = Slack.parse_config({"webhook_url": url}, transport=Transport(LOCAL.policy, timeout=0.3))

    assert (await channel.send(channel.render(ALERT))).status is DeliveryStatus.TRANSIENT


async def test_a_private_api_base_is_refused_at_send_time_when_not_allowed(slack: FakeSlack) -> None:
    token, built = bot(slack)
    strict = Slack(built.config, Transport())

    outcome = await strict.send(strict.render(ALERT))

    assert outcome.status is DeliveryStatus.PERMANENT and outcome.detail is not None
    assert outcome.detail.startswith("slack: destination refused") and slack.posted(token) == []
