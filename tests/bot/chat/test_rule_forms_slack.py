"""/rules add and /rules edit as Slack modals, through the real signed /slack/events endpoint:
``views.open`` with the command's trigger_id (checked by the fake against the modal reference),
then ``view_submission`` validated by the core, errors inline by block, authorised and audited."""

from __future__ import annotations

import json
import time
from datetime import time as clock
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import asyncpg
from aiohttp.test_utils import TestClient

from db import notification_rules
from tests.bot.chat.conftest import Clinic, reply_at, reply_to, signed, slash, text_of
from tests.fakes.slack_api import FakeSlackApi
from tests.helpers import eventually


async def open_form(client: TestClient, api: FakeSlackApi, clinic: Clinic, user: str, text: str) -> dict[str, Any]:
    """``/rules TEXT``: the empty ack within 3 s, then the view the fake was asked to open."""
    trigger = api.trigger()
    sent = await slash(client, api, clinic.team, user, "/rules", text, trigger_id=trigger)
    assert sent.response.status == 200 and sent.elapsed < 3.0 and await sent.response.text() == ""

    async def opened() -> dict[str, Any] | None:
        return api.views.get(trigger)

    view: dict[str, Any] = await eventually(opened, 15, "views.open")
    assert api.problems["/api/views.open"] == []
    return view


def state(view: dict[str, Any], answers: dict[str, str | list[str]]) -> dict[str, Any]:
    """``view.state`` as Slack sends it: each input's element and what the user left in it."""
    values: dict[str, Any] = {}
    for block in view["blocks"]:
        element, key = block["element"], block["block_id"]
        given = answers.get(key)
        if element["type"] == "plain_text_input":
            typed = given if given is not None else element.get("initial_value")
            values[key] = {key: {"type": "plain_text_input", "value": typed or None}}
            continue
        options = {o["value"]: o for o in element["options"]}
        if element["type"] == "multi_static_select":
            picked = given if given is not None else [o["value"] for o in element.get("initial_options", [])]
            values[key] = {key: {"type": element["type"], "selected_options": [options[v] for v in picked]}}
        else:
            picked_one = given if given is not None else element.get("initial_option", {}).get("value")
            values[key] = {key: {"type": element["type"], "selected_option": options.get(str(picked_one))}}
    return {"values": values}


async def submit(
    client: TestClient, clinic: Clinic, user: str, view: dict[str, Any], answers: dict[str, str | list[str]]
) -> tuple[dict[str, Any], float]:
    payload = {
        "type": "view_submission", "team": {"id": clinic.team, "domain": "clinic"},
        "user": {"id": user, "username": "someone", "team_id": clinic.team}, "api_app_id": "A0APP",
        "token": "deprecated", "trigger_id": "9.9.9", "response_urls": [],
        "view": view | {"team_id": clinic.team, "app_id": "A0APP", "state": state(view, answers), "hash": "1.a"},
    }  # fmt: skip
    body = urlencode({"payload": json.dumps(payload)})
    started = time.monotonic()
    response = await client.post("/slack/events", data=body, headers=signed(body))
    elapsed = time.monotonic() - started
    assert response.status == 200
    answer: dict[str, Any] = await response.json()
    return answer, elapsed


async def rules_of(pool: asyncpg.Pool, tenant_id: int) -> list[notification_rules.RuleRow]:
    async with pool.acquire() as conn:
        return await notification_rules.rule_page(conn, tenant_id, 0, 100)


async def test_rules_add_opens_a_modal_with_the_rule_models_inputs_and_the_tenants_channels(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic
) -> None:
    view = await open_form(client, slack_api, clinic, clinic.nurse.chat_user, "add")

    assert view["callback_id"] == "rules:add" and json.loads(view["private_metadata"]) == {"channel": "C0WARD"}
    blocks = {b["block_id"]: b for b in view["blocks"]}
    assert list(blocks) == ["name", "channels", "severity", "quiet", "metrics", "categories", "cooldown", "team"]
    assert [o["value"] for o in blocks["channels"]["element"]["options"]] == [str(clinic.channel_id)]
    assert blocks["severity"]["element"]["initial_option"]["value"] == "warning"
    assert [o["value"] for o in blocks["team"]["element"]["options"]] == ["Cardio"]  # the nurse acts in it
    assert blocks["name"]["optional"] is False and blocks["quiet"]["optional"] is True


async def test_an_invalid_submission_is_answered_with_errors_under_each_input_and_saves_nothing(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, pool: asyncpg.Pool
) -> None:
    view = await open_form(client, slack_api, clinic, clinic.nurse.chat_user, "add")
    answer, elapsed = await submit(client, clinic, clinic.nurse.chat_user, view, {
        "name": "", "channels": [], "quiet": "22:00-25:00", "metrics": "heart_rate, pulse", "cooldown": "soon",
    })  # fmt: skip

    assert elapsed < 3.0 and answer["response_action"] == "errors"
    assert set(answer["errors"]) == {"name", "channels", "quiet", "metrics", "cooldown"}
    assert "pulse" in answer["errors"]["metrics"] and "HH:MM-HH:MM" in answer["errors"]["quiet"]
    assert await rules_of(pool, clinic.tenant_id) == []


async def test_a_valid_submission_adds_the_team_rule_and_the_modal_says_so(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, pool: asyncpg.Pool
) -> None:
    view = await open_form(client, slack_api, clinic, clinic.nurse.chat_user, "add")
    answer, elapsed = await submit(client, clinic, clinic.nurse.chat_user, view, {
        "name": "Night watch", "channels": [str(clinic.channel_id)], "severity": "critical",
        "quiet": "22:00-07:00", "metrics": "heart_rate,spo2", "categories": ["clinical"], "cooldown": "30",
        "team": "Cardio",
    })  # fmt: skip

    (rule,) = await rules_of(pool, clinic.tenant_id)
    assert elapsed < 3.0 and answer["response_action"] == "update"
    assert f"Rule #{rule.id} added" in text_of({"blocks": answer["view"]["blocks"]})
    assert (rule.name, rule.channel_ids, rule.min_severity) == ("Night watch", [clinic.channel_id], "critical")
    assert (rule.quiet_start, rule.quiet_end, rule.cooldown) == (clock(22), clock(7), timedelta(minutes=30))
    assert (rule.metrics, rule.categories) == (["heart_rate", "spo2"], ["clinical"])
    assert (rule.care_team_id, rule.owner_user_id) == (clinic.care_team_id, None)
    async with pool.acquire() as conn:
        audit = await conn.fetchrow("SELECT actor, details FROM audit_events WHERE action = 'chat.rule_added'"
                                    " AND subject_id = $1", rule.id)  # fmt: skip
    assert audit["actor"] == f"user:{clinic.nurse.user_id}"
    assert audit["details"]["via"] == "form" and audit["details"]["channel"] == "C0WARD"
    assert audit["details"]["chat_identity"] == f"slack:{clinic.team}:{clinic.nurse.chat_user}"


async def test_a_channel_of_another_tenant_is_an_inline_error_on_channels(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, other_clinic: Clinic, pool: asyncpg.Pool
) -> None:
    view = await open_form(client, slack_api, clinic, clinic.nurse.chat_user, "add")
    # A forged submission: Slack would only send an option the view offered.
    for block in view["blocks"]:
        if block["block_id"] == "channels":
            block["element"]["options"].append({"text": {"type": "plain_text", "text": "x"},
                                                "value": str(other_clinic.channel_id)})  # fmt: skip
    answer, _ = await submit(client, clinic, clinic.nurse.chat_user, view,
                             {"name": "Sneaky", "channels": [str(other_clinic.channel_id)]})  # fmt: skip

    assert answer == {"response_action": "errors",
                      "errors": {"channels": f"No channel {other_clinic.channel_id} in your organisation"}}  # fmt: skip
    assert await rules_of(pool, clinic.tenant_id) == []


async def test_rules_edit_opens_the_rule_prefilled_and_a_submission_updates_it(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        rule_id = await notification_rules.create_rule(
            conn, tenant_id=clinic.tenant_id, name="Day", channel_id=clinic.channel_id,
            care_team_id=clinic.care_team_id, metrics=["spo2"], quiet_hours=(clock(23), clock(6)),
        )  # fmt: skip
    view = await open_form(client, slack_api, clinic, clinic.nurse.chat_user, f"edit {rule_id}")
    blocks = {b["block_id"]: b["element"] for b in view["blocks"]}
    answer, _ = await submit(client, clinic, clinic.nurse.chat_user, view, {"severity": "info", "quiet": ""})

    assert view["callback_id"] == f"rules:edit:{rule_id}" and "team" not in blocks
    assert (blocks["name"]["initial_value"], blocks["quiet"]["initial_value"]) == ("Day", "23:00-06:00")
    assert blocks["metrics"]["initial_value"] == "spo2"
    assert answer["response_action"] == "update"
    (rule,) = await rules_of(pool, clinic.tenant_id)
    assert (rule.name, rule.min_severity, rule.quiet_start, rule.metrics) == ("Day", "info", None, ["spo2"])
    async with pool.acquire() as conn:
        actions = await conn.fetch(
            "SELECT action FROM audit_events WHERE subject_type = 'notification_rule' AND subject_id = $1 ORDER BY id",
            rule_id,
        )
    assert [a["action"] for a in actions] == ["chat.rule_form_opened", "chat.rule_edited"]


async def test_a_viewer_gets_no_edit_form_and_a_forged_submission_is_refused_and_audited(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        rule_id = await notification_rules.create_rule(
            conn,
            tenant_id=clinic.tenant_id,
            name="Team rule",
            channel_id=clinic.channel_id,
            care_team_id=clinic.care_team_id,
        )
    nurse_view = await open_form(client, slack_api, clinic, clinic.nurse.chat_user, f"edit {rule_id}")

    sent = await slash(client, slack_api, clinic.team, clinic.viewer.chat_user, "/rules", f"edit {rule_id}")
    refusal = await reply_to(slack_api, sent)
    forged, _ = await submit(client, clinic, clinic.viewer.chat_user, nurse_view, {"name": "Mine now"})

    assert "Not allowed" in text_of(refusal)
    assert forged["response_action"] == "update" and "Not allowed" in text_of({"blocks": forged["view"]["blocks"]})
    (rule,) = await rules_of(pool, clinic.tenant_id)
    assert rule.name == "Team rule"
    async with pool.acquire() as conn:
        denied = await conn.fetchval("SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = 'chat.denied'"
                                     " AND actor = $2", clinic.tenant_id, f"user:{clinic.viewer.user_id}")  # fmt: skip
    assert denied == 2


async def test_a_submission_from_an_unlinked_user_or_another_tenant_saves_nothing(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, other_clinic: Clinic, pool: asyncpg.Pool
) -> None:
    view = await open_form(client, slack_api, clinic, clinic.nurse.chat_user, "add")
    answers: dict[str, str | list[str]] = {"name": "x", "channels": [str(clinic.channel_id)]}
    unlinked, _ = await submit(client, clinic, "UNOBODY", view, answers)
    elsewhere, _ = await submit(client, other_clinic, other_clinic.nurse.chat_user, view, answers)

    assert "Link your account first" in text_of({"blocks": unlinked["view"]["blocks"]})
    assert elsewhere["response_action"] == "errors" and "in your organisation" in elsewhere["errors"]["channels"]
    assert await rules_of(pool, clinic.tenant_id) == []
    assert await rules_of(pool, other_clinic.tenant_id) == []


async def test_an_expired_trigger_falls_back_to_a_message_saying_how_to_type_it(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic
) -> None:
    trigger = slack_api.trigger()
    slack_api.issued[trigger] -= 60  # Slack's trigger ids last 3 s
    sent = await slash(client, slack_api, clinic.team, clinic.nurse.chat_user, "/rules", "add", trigger_id=trigger)
    (reply,) = await reply_at(slack_api, sent.path)
    slack_api.problems["/api/views.open"].clear()  # the refusal was the point

    assert "/rules add name=" in text_of(reply) and trigger not in slack_api.views


async def test_rules_channels_lists_the_tenants_channels_by_id_without_their_destinations(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, other_clinic: Clinic
) -> None:
    sent = await slash(client, slack_api, clinic.team, clinic.patient.chat_user, "/rules", "channels")
    reply = await reply_to(slack_api, sent)

    shown = text_of(reply)
    assert f"#{clinic.channel_id} ward" in shown and "console" in shown
    assert f"#{other_clinic.channel_id} " not in shown and "/dev/null" not in shown
    assert reply["response_type"] == "ephemeral"


async def test_a_rule_id_too_big_for_the_database_is_a_usage_error_not_a_failure(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic
) -> None:
    for text in ("pause 99999999999999999999", "edit 99999999999999999999"):
        sent = await slash(client, slack_api, clinic.team, clinic.nurse.chat_user, "/rules", text)
        reply = await reply_to(slack_api, sent)
        assert "is not a rule id" in text_of(reply) and "Something went wrong" not in text_of(reply)
