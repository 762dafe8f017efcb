"""The Teams channel: an Adaptive Card checked against the official 1.4 schema, posted to a local Workflows trigger."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from channels import CHANNELS, ConfigError, DeliveryStatus
from channels.destinations import DestinationPolicy
from channels.http import Transport
from channels.teams import Teams
from db.alerts import Alert
from tests.fakes.teams import FakeTeams, card_problems

LOCAL = Transport(DestinationPolicy(allow_private=True), timeout=1.0)
FLOW = (
    "https://prod-01.westeurope.logic.azure.com:443/workflows/abc123/triggers/manual/paths/invoke"
    "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=SIGsecretSIG"
)
ALERT = Alert(
    id=7,
    user_id=3,
    tenant_id=1,
    patient="Pat One",
    category="clinical",
    severity="critical",
    metric="spo2",
    title="Blood oxygen below 90 % 🫁",
    body="spo2 86 % on 2026-11-22 (threshold 90)",
    observed_value=86.0,
    threshold=90.0,
    recorded_at=datetime(2026, 11, 22, 7, tzinfo=UTC),
    created_at=datetime(2026, 11, 22, 7, 5, tzinfo=UTC),
)


@pytest.fixture(scope="module")
def teams() -> Iterator[FakeTeams]:
    server = FakeTeams().start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({}, "teams: url must be a non-empty string"),
        ({"url": FLOW, "card": "1.5"}, "teams: unknown field(s) card"),
        ({"url": "https://acme.webhook.office.com/webhookb2/x"}, "teams: Office 365 connector URLs are retired"),
        ({"url": "https://prod-01.logic.azure.com/workflows/x"}, "teams: url must be a Workflows webhook URL"),
        ({"url": FLOW.replace("logic.azure.com", "example.com")}, "teams: url must be on logic.azure.com"),
        ({"url": FLOW.replace("https", "http")}, "teams: url: the URL must use https"),
    ],
)
def test_invalid_config_is_refused_with_a_message_fit_for_the_user(config: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Teams.parse_config(config, transport=Transport())
    assert str(caught.value).startswith(error) and "SIGsecretSIG" not in str(caught.value)


def test_teams_is_registered_and_the_signed_url_never_shows_in_repr() -> None:
    channel = Teams.parse_config({"url": FLOW}, transport=Transport())
    assert CHANNELS["teams"] is Teams and Teams.secret_fields == ("url",)
    assert "SIGsecretSIG" not in repr(channel.config)


@pytest.mark.parametrize("severity", ["info", "warning", "critical"])
@pytest.mark.parametrize("link_base", [None, "https://app.example"])
def test_every_card_we_render_is_valid_against_the_adaptive_card_schema(severity: str, link_base: str | None) -> None:
    channel = Teams.parse_config({"url": FLOW, "link_base": link_base}, transport=Transport())
    alert = replace(ALERT, severity=severity, metric=None, observed_value=None, threshold=None)

    for candidate in (ALERT, alert):
        [attachment] = channel.render(replace(candidate, severity=severity)).payload["attachments"]
        assert card_problems(attachment["content"]) == []


@pytest.mark.parametrize(
    "broken",
    [
        {"body": [{"type": "TextBlock"}]},  # a TextBlock needs text
        {"body": [{"type": "FactSet", "facts": [{"title": "a"}]}]},  # a fact needs a value
        {"body": [], "msteams": {"width": "Full"}},  # a host extension, not in the schema
        {"body": [], "actions": [{"type": "Action.OpenUrl", "title": "x"}]},  # no url
    ],
)
def test_the_schema_check_really_rejects_a_broken_card(broken: dict[str, Any]) -> None:
    assert card_problems({"type": "AdaptiveCard", "version": "1.4"} | broken) != []


def test_render_puts_title_body_facts_and_a_link() -> None:
    channel = Teams.parse_config({"url": FLOW, "link_base": "https://app.example/"}, transport=Transport())

    payload = channel.render(ALERT).payload

    assert payload["type"] == "message"
    [attachment] = payload["attachments"]
    card = attachment["content"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive" and card["version"] == "1.4"
    title, body, facts = card["body"]
    assert (title["text"], title["color"], body["text"]) == (ALERT.title, "Attention", ALERT.body)
    assert {f["title"]: f["value"] for f in facts["facts"]} == {
        "Patient": "Pat One",
        "Metric": "spo2",
        "Observed": "86",
        "Threshold": "90",
        "Severity": "critical",
        "Recorded": "2026-11-22T07:00:00+00:00",
    }
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open alert", "url": "https://app.example/alerts/7"}]


async def test_a_card_is_accepted_by_the_workflow(teams: FakeTeams) -> None:
    path, url = teams.workflow()
    channel = Teams.parse_config({"url": url, "link_base": "http://127.0.0.1:8080"}, transport=LOCAL)
    rendered = channel.render(ALERT)

    outcome = await channel.send(rendered)

    assert (outcome.status, outcome.http_status) == (DeliveryStatus.DELIVERED, 202)
    [request] = teams.received(path)
    assert request.json() == rendered.payload and teams.problems[path] == []


async def test_a_wrong_signature_is_an_auth_failure_without_the_signature_in_the_detail(teams: FakeTeams) -> None:
    path, url = teams.workflow()
    channel = Teams.parse_config({"url": url.replace("sig=", "sig=x")}, transport=LOCAL)

    outcome = await channel.send(channel.render(ALERT))

    assert outcome.status is DeliveryStatus.AUTH and outcome.detail is not None
    assert outcome.detail.startswith("teams: HTTP 401") and "sig" not in outcome.detail


@pytest.mark.parametrize(
    ("fault", "expected", "retry_after"),
    [
        ({"status": 429, "retry_after": "12"}, DeliveryStatus.RATE_LIMITED, 12.0),
        ({"status": 502}, DeliveryStatus.TRANSIENT, None),
        ({"status": 404, "body": {"error": {"code": "WorkflowNotFound"}}}, DeliveryStatus.PERMANENT, None),
    ],
)
async def test_faults_are_classified(
    teams: FakeTeams, fault: dict[str, Any], expected: DeliveryStatus, retry_after: float | None
) -> None:
    path, url = teams.workflow()
    teams.fail(path, **fault)
    channel = Teams.parse_config({"url": url}, transport=LOCAL)

    outcome = await channel.send(channel.render(ALERT))

    assert (outcome.status, outcome.retry_after) == (expected, retry_after)


async def test_a_timeout_is_transient(teams: FakeTeams) -> None:
    path, url = teams.workflow()
    teams.fail(path, delay=3.0)
    channel = Teams.parse_config({"url": url}, transport=Transport(LOCAL.policy, timeout=0.3))

    assert (await channel.send(channel.render(ALERT))).status is DeliveryStatus.TRANSIENT


async def test_a_private_destination_is_refused_at_send_time_when_not_allowed(teams: FakeTeams) -> None:
    path, url = teams.workflow()
    strict = Teams(Teams.parse_config({"url": url}, transport=LOCAL).config, Transport())

    outcome = await strict.send(strict.render(ALERT))

    assert outcome.status is DeliveryStatus.PERMANENT and teams.received(path) == []
