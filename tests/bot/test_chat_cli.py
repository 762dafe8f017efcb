"""``carebeacon chat bind-workspace`` and ``carebeacon chat enrol`` as an operator runs them: real
processes against a fresh, migrated database."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from db import chat, tenants
from db.pool import connect
from db.sealing import Keyring
from tests.bot.test_cli import BARE_ENV, run
from tests.conftest import Databases, Servers

# A Redis database of these tests' own (tests/conftest.py lists the numbers taken).  The chat
# commands never touch the broker, but the runtime they start is given one all the same.
CHAT_CLI_REDIS_DB = 10


@dataclass(frozen=True)
class Site:
    env: dict[str, str]
    cwd: Path
    conn: asyncpg.Connection
    tenant_id: int  # slug "north-clinic", with a patient
    patient_id: int
    other_tenant_id: int  # slug "south-clinic", with a patient of its own
    other_patient_id: int


@pytest.fixture(scope="module")
async def migrated(servers: Servers, databases: Databases) -> AsyncIterator[Site]:
    """One database, migrated by ``carebeacon migrate``, for the module: each run costs seconds."""
    cwd = Path(tempfile.mkdtemp(prefix="cb-test-"))
    cwd.chmod(0o755)
    env = BARE_ENV | {
        "DATABASE_URL": await databases.create(),
        "REDIS_URL": servers.redis(CHAT_CLI_REDIS_DB),
        "CAREBEACON_SEAL_KEYS": Keyring.new_entry("ci"),
    }
    result = run(["migrate"], cwd, env)
    assert result.returncode == 0, result.stderr
    conn = await connect(env["DATABASE_URL"])  # with the JSON codecs the db layer expects
    try:
        north = await tenants.ensure_tenant(conn, "north-clinic", "North clinic")
        south = await tenants.ensure_tenant(conn, "south-clinic", "South clinic")
        yield Site(
            env,
            cwd,
            conn,
            north,
            await tenants.ensure_user(conn, north, "patient-1", "Patient One"),
            south,
            await tenants.ensure_user(conn, south, "patient-1", "Patient One"),
        )
    finally:
        await conn.close()
        shutil.rmtree(cwd, ignore_errors=True)


@pytest.fixture
async def site(migrated: Site) -> Site:
    """The module's database with no workspaces, codes, links or audit rows: each test starts clean."""
    await migrated.conn.execute(
        "TRUNCATE chat_workspaces, chat_enrolment_codes, chat_link_tokens, chat_link_flows, audit_events"
    )
    return migrated


def chat_cli(site: Site, *args: str) -> tuple[int, str, str]:
    result = run(["chat", *args], site.cwd, site.env)
    return result.returncode, result.stdout, result.stderr


async def workspaces(conn: asyncpg.Connection) -> list[tuple[str, str, int, str, bool]]:
    rows = await conn.fetch(
        "SELECT platform, workspace_id, tenant_id, name, disabled_at IS NOT NULL AS disabled"
        " FROM chat_workspaces ORDER BY id"
    )
    return [tuple(r.values()) for r in rows]


async def test_bind_workspace_maps_a_slack_team_to_the_tenant_and_commands_from_it_resolve_there(site: Site) -> None:
    code, out, err = chat_cli(
        site, "bind-workspace", "--platform", "slack", "--workspace", "T0NORTH01", "--tenant", "north-clinic",
        "--name", "North ward",
    )  # fmt: skip

    assert code == 0, err
    assert out.strip() == "slack workspace T0NORTH01 is bound to tenant 'north-clinic'"
    assert await workspaces(site.conn) == [("slack", "T0NORTH01", site.tenant_id, "North ward", False)]
    assert await chat.workspace_tenant(site.conn, "slack", "T0NORTH01") == site.tenant_id
    assert await chat.workspace_tenant(site.conn, "discord", "T0NORTH01") is None


async def test_binding_again_to_the_same_tenant_re_enables_an_uninstalled_workspace(site: Site) -> None:
    bind = ("bind-workspace", "--platform", "slack", "--workspace", "T0NORTH01", "--tenant", "north-clinic")
    assert chat_cli(site, *bind)[0] == 0
    await chat.disable_workspace(site.conn, "slack", "T0NORTH01", "app_uninstalled")
    assert await chat.workspace_tenant(site.conn, "slack", "T0NORTH01") is None

    code, _, err = chat_cli(site, *bind)

    assert code == 0, err
    assert await workspaces(site.conn) == [("slack", "T0NORTH01", site.tenant_id, "", False)]


async def test_a_workspace_bound_to_one_tenant_is_never_moved_to_another(site: Site) -> None:
    bind = ("bind-workspace", "--platform", "slack", "--workspace", "T0NORTH01", "--tenant")
    assert chat_cli(site, *bind, "north-clinic")[0] == 0

    code, out, err = chat_cli(site, *bind, "south-clinic")

    assert code == 1 and out == ""
    assert err.strip() == "carebeacon chat bind-workspace: slack workspace T0NORTH01 belongs to another tenant"
    assert await workspaces(site.conn) == [("slack", "T0NORTH01", site.tenant_id, "", False)]


async def test_a_discord_guild_binds_like_a_slack_team_and_the_same_id_on_each_platform_is_separate(site: Site) -> None:
    slack = chat_cli(site, "bind-workspace", "--platform", "slack", "--workspace", "424242",
                     "--tenant", "north-clinic")  # fmt: skip
    discord = chat_cli(site, "bind-workspace", "--platform", "discord", "--workspace", "424242",
                       "--tenant", "south-clinic")  # fmt: skip

    assert slack[0] == 0 and discord[0] == 0, slack[2] + discord[2]
    assert await chat.workspace_tenant(site.conn, "slack", "424242") == site.tenant_id
    assert await chat.workspace_tenant(site.conn, "discord", "424242") == site.other_tenant_id


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (("bind-workspace", "--platform", "slack", "--workspace", "T0X", "--tenant", "nowhere"), 1,
         "carebeacon chat bind-workspace: no tenant 'nowhere'"),
        (("bind-workspace", "--platform", "teams", "--workspace", "T0X", "--tenant", "north-clinic"), 2,
         "argument --platform: invalid choice: 'teams'"),
        (("bind-workspace", "--platform", "slack", "--tenant", "north-clinic"), 2,
         "the following arguments are required: --workspace"),
        (("enrol", "--tenant", "nowhere", "--user-id", "1"), 1, "carebeacon chat enrol: no tenant 'nowhere'"),
        (("enrol", "--tenant", "north-clinic", "--user-id", "first"), 2,
         "argument --user-id: invalid int value: 'first'"),
        (("enrol", "--tenant", "north-clinic"), 2, "the following arguments are required: --user-id"),
    ],
)  # fmt: skip
async def test_a_bad_invocation_names_what_is_wrong_and_writes_nothing(
    site: Site, args: tuple[str, ...], status: int, message: str
) -> None:
    code, out, err = chat_cli(site, *args)

    assert code == status and out == ""
    assert message in err
    assert await workspaces(site.conn) == []
    assert await site.conn.fetchval("SELECT count(*) FROM chat_enrolment_codes") == 0


async def test_enrol_prints_a_single_use_code_that_the_linking_page_accepts_for_that_tenant(site: Site) -> None:
    code, out, err = chat_cli(site, "enrol", "--tenant", "north-clinic", "--user-id", str(site.patient_id))

    assert code == 0, err
    enrolment = out.strip()
    assert len(out.splitlines()) == 1 and len(enrolment) >= 16  # the code alone, for an operator to hand over
    stored = await site.conn.fetchrow(
        "SELECT tenant_id, user_id, created_by, used_at, expires_at - created_at AS lifetime FROM chat_enrolment_codes"
    )
    assert (stored["tenant_id"], stored["user_id"], stored["created_by"]) == (site.tenant_id, site.patient_id, "cli")
    assert stored["used_at"] is None and stored["lifetime"] == chat.ENROLMENT_LIFETIME
    audited = await site.conn.fetch(
        "SELECT tenant_id, actor, subject_type, subject_id FROM audit_events"
        " WHERE action = 'chat.enrolment_code_created'"
    )
    assert [tuple(r.values()) for r in audited] == [(site.tenant_id, "cli", "user", site.patient_id)]

    # The linking page's first step: a link token of the same tenant plus the code starts a flow.
    here = await chat.create_link_token(
        site.conn, platform="slack", workspace_id="T0NORTH01", chat_user_id="U0PATIENT", tenant_id=site.tenant_id
    )
    there = await chat.create_link_token(
        site.conn, platform="slack", workspace_id="T0SOUTH01", chat_user_id="U0PATIENT",
        tenant_id=site.other_tenant_id,
    )  # fmt: skip
    assert await chat.start_flow(site.conn, there, enrolment) is None
    assert await chat.start_flow(site.conn, here, enrolment) is not None


async def test_enrol_refuses_a_user_of_another_tenant_and_each_run_prints_a_new_code(site: Site) -> None:
    refused = chat_cli(site, "enrol", "--tenant", "north-clinic", "--user-id", str(site.other_patient_id))
    first = chat_cli(site, "enrol", "--tenant", "south-clinic", "--user-id", str(site.other_patient_id))
    second = chat_cli(site, "enrol", "--tenant", "south-clinic", "--user-id", str(site.other_patient_id))

    assert refused[0] == 1 and refused[1] == ""
    assert refused[2].strip() == (f"carebeacon chat enrol: no user {site.other_patient_id} in tenant {site.tenant_id}")
    assert first[0] == 0 and second[0] == 0, first[2] + second[2]
    assert first[1].strip() != second[1].strip()
    assert await site.conn.fetchval(
        "SELECT count(*) FROM chat_enrolment_codes WHERE tenant_id = $1", site.other_tenant_id
    ) == 2  # fmt: skip
