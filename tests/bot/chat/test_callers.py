"""Who a chat identity is, kept in memory: answers are kept while the LISTEN connection hears every
change, all forgotten at each change (a revoked link, an uninstalled app), not kept when a change
came during their lookup, and not kept at all while the connection is lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from bot.chat import callers as callers_module
from bot.chat.callers import Caller, Callers
from db import chat
from tests.bot.chat.conftest import Clinic, reply_to, slash, text_of
from tests.fakes.slack_api import FakeSlackApi
from tests.helpers import eventually


@pytest.fixture
async def callers(pool: asyncpg.Pool) -> AsyncIterator[Callers]:
    found = Callers(pool)
    yield found
    await found.close()


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """Every lookup that reached Postgres."""
    asked: list[tuple[str, str, str]] = []
    real = chat.caller

    async def counted(executor: asyncpg.Pool, platform: str, workspace_id: str, chat_user_id: str) -> Caller:
        asked.append((platform, workspace_id, chat_user_id))
        return await real(executor, platform, workspace_id, chat_user_id)

    monkeypatch.setattr(callers_module.chat, "caller", counted)
    return asked


async def listening(callers: Callers, clinic: Clinic) -> None:
    """Ask once, so the LISTEN connection opens, and wait until it has."""
    await callers.caller("slack", clinic.team, clinic.nurse.chat_user)
    await eventually(lambda: _true(callers.listening), 10, "the LISTEN connection")


async def _true(value: bool) -> bool:
    return value


async def test_an_answer_is_kept_while_listening_and_forgotten_once_a_revoked_link_commits(
    callers: Callers, lookups: list[tuple[str, str, str]], clinic: Clinic, pool: asyncpg.Pool
) -> None:
    nurse = ("slack", clinic.team, clinic.nurse.chat_user)
    await listening(callers, clinic)
    asked = len(lookups)

    assert await callers.caller(*nurse) == (clinic.tenant_id, clinic.nurse.user_id)
    assert await callers.caller(*nurse) == (clinic.tenant_id, clinic.nurse.user_id)
    assert len(lookups) == asked + 1  # the second came from memory

    async with pool.acquire() as conn:
        assert await chat.revoke_identity(conn, *nurse)

    async def unlinked() -> bool:
        return await callers.caller(*nurse) == (clinic.tenant_id, None)

    await eventually(unlinked, 5, "the revoked link to be forgotten")
    assert callers.listening


async def test_an_uninstalled_workspace_is_forgotten_for_all_its_identities(
    callers: Callers, clinic: Clinic, pool: asyncpg.Pool
) -> None:
    await listening(callers, clinic)
    for person in (clinic.nurse, clinic.patient):
        assert (await callers.caller("slack", clinic.team, person.chat_user))[0] == clinic.tenant_id

    async with pool.acquire() as conn:
        await chat.disable_workspace(conn, "slack", clinic.team, "app_uninstalled")

    async def refused() -> bool:
        answers = [await callers.caller("slack", clinic.team, p.chat_user) for p in (clinic.nurse, clinic.patient)]
        return answers == [(None, None), (None, None)]

    await eventually(refused, 5, "the uninstalled workspace to be forgotten")


async def test_an_answer_read_while_a_change_came_in_is_not_kept(
    callers: Callers, clinic: Clinic, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    nurse = ("slack", clinic.team, clinic.nurse.chat_user)
    await listening(callers, clinic)
    real = chat.caller

    async def read_then_revoked(executor: asyncpg.Pool, *key: str) -> Caller:
        found = await real(executor, *key)  # still linked
        async with pool.acquire() as conn:
            await chat.revoke_identity(conn, *key)
        await asyncio.sleep(0.5)  # the notification arrives while this lookup is still out
        return found

    monkeypatch.setattr(callers_module.chat, "caller", read_then_revoked)
    assert await callers.caller(*nurse) == (clinic.tenant_id, clinic.nurse.user_id)
    monkeypatch.setattr(callers_module.chat, "caller", real)

    assert await callers.caller(*nurse) == (clinic.tenant_id, None)  # asked again, not the old answer


async def test_a_lost_listen_connection_forgets_everything_asks_postgres_and_listens_again(
    callers: Callers, lookups: list[tuple[str, str, str]], clinic: Clinic, pool: asyncpg.Pool
) -> None:
    nurse = ("slack", clinic.team, clinic.nurse.chat_user)
    await listening(callers, clinic)
    await callers.caller(*nurse)
    listener_pid = await pool.fetchval(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = $1",
        f'LISTEN "{callers_module.CHANNEL}"',
    )
    assert listener_pid is not None

    await pool.execute("SELECT pg_terminate_backend($1)", listener_pid)
    await eventually(lambda: _true(not callers.listening), 10, "the lost connection to be noticed")
    asked = len(lookups)
    assert await callers.caller(*nurse) == (clinic.tenant_id, clinic.nurse.user_id)
    assert len(lookups) == asked + 1  # nothing kept from before

    await eventually(lambda: _true(callers.listening), 10, "a new LISTEN connection")
    async with pool.acquire() as conn:
        await chat.revoke_identity(conn, *nurse)

    async def unlinked() -> bool:
        return await callers.caller(*nurse) == (clinic.tenant_id, None)

    await eventually(unlinked, 5, "the revoke to be heard on the new connection")


async def test_a_slack_command_after_its_link_is_revoked_is_refused(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic, pool: asyncpg.Pool
) -> None:
    for _ in range(2):  # the second one is answered from memory
        sent = await slash(client, slack_api, clinic.team, clinic.nurse.chat_user, "/alerts")
        assert "Link your account first" not in text_of(await reply_to(slack_api, sent))

    async with pool.acquire() as conn:
        await chat.revoke_identity(conn, "slack", clinic.team, clinic.nurse.chat_user)

    async def refused() -> bool:
        sent = await slash(client, slack_api, clinic.team, clinic.nurse.chat_user, "/alerts")
        return "Link your account first" in text_of(await reply_to(slack_api, sent))

    await eventually(refused, 5, "/alerts to be refused")
