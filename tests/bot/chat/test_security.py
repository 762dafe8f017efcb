"""Who may see whose data: unlinked identities, people outside the care team, other tenants."""

from __future__ import annotations

import asyncpg
from aiohttp.test_utils import TestClient

from tests.bot.chat.conftest import Clinic, link, reply_to, slash, text_of
from tests.fakes.slack_api import FakeSlackApi


async def answer(client: TestClient, api: FakeSlackApi, team: str, user: str, command: str, text: str = "") -> str:
    sent = await slash(client, api, team, user, command, text)
    assert sent.response.status == 200 and sent.elapsed < 3.0
    reply = await reply_to(api, sent)
    assert reply["response_type"] == "ephemeral"
    return text_of(reply)


async def denials(pool: asyncpg.Pool, tenant_id: int) -> int:
    async with pool.acquire() as conn:
        found: int = await conn.fetchval(
            "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = 'chat.denied'", tenant_id
        )
    return found


async def test_an_unlinked_identity_may_use_only_help_and_connect(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, pool: asyncpg.Pool
) -> None:
    for command in ("/sync", "/score", "/alerts", "/rules"):
        assert "Link your account first" in await answer(client, slack_api, clinic.team, "UNOBODY", command)
    assert await denials(pool, clinic.tenant_id) == 4


async def test_a_user_outside_the_care_team_is_denied_the_patients_data(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, pool: asyncpg.Pool
) -> None:
    for command in ("/score", "/alerts"):
        text = await answer(client, slack_api, clinic.team, clinic.outsider.chat_user, command, "patient-1")
        assert "Not allowed" in text and "patient-1" in text
    assert await denials(pool, clinic.tenant_id) == 2


async def test_a_patient_sees_only_their_own_data(client: TestClient, slack_api: FakeSlackApi, clinic: Clinic) -> None:
    own = await answer(client, slack_api, clinic.team, clinic.patient.chat_user, "/score")
    others = await answer(client, slack_api, clinic.team, clinic.patient.chat_user, "/score", "nurse-1")
    assert "Your scores" in own
    assert "Not allowed" in others


async def test_a_care_team_member_sees_the_patient_and_the_disclosure_is_audited(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, pool: asyncpg.Pool
) -> None:
    text = await answer(client, slack_api, clinic.team, clinic.viewer.chat_user, "/score", "patient-1 sleep")
    assert "Patient's scores: sleep" in text
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT actor, subject_id, details FROM audit_events"
            " WHERE tenant_id = $1 AND action = 'chat.scores_disclosed'",
            clinic.tenant_id,
        )
    assert row["actor"] == f"user:{clinic.viewer.user_id}" and row["subject_id"] == clinic.patient.user_id
    details = row["details"]
    assert details["chat_identity"] == f"slack:{clinic.team}:{clinic.viewer.chat_user}"
    assert details["visibility"] == "ephemeral" and details["command"] == "score"


async def test_a_user_of_another_tenant_is_denied_even_by_internal_id(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, other_clinic: Clinic
) -> None:
    text = await answer(
        client, slack_api, other_clinic.team, other_clinic.nurse.chat_user, "/score", f"#{clinic.patient.user_id}"
    )
    assert "Not allowed" in text


async def test_a_link_into_another_tenant_counts_as_no_link(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, other_clinic: Clinic, pool: asyncpg.Pool
) -> None:
    # A chat identity of the other workspace bound to a user of this tenant: never honoured.
    async with pool.acquire() as conn:
        await link(conn, other_clinic.team, "UCROSS", clinic.tenant_id, clinic.patient.user_id)
    assert "Link your account first" in await answer(client, slack_api, other_clinic.team, "UCROSS", "/score")


async def test_a_workspace_bound_to_no_tenant_gets_nothing(client: TestClient, slack_api: FakeSlackApi) -> None:
    assert "not set up" in await answer(client, slack_api, "TUNBOUND", "UANY", "/score")
