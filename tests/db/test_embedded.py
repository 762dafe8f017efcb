"""The embedded PostgreSQL and Redis, started for real under a temporary data directory.

Each test owns its directory, so its servers are its own; the suite's shared servers live elsewhere.
Other processes are real ``python -c`` children running the same code.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis

from db.embedded import DATABASE, SEAL_KEY_FILE, EmbeddedServices, local_seal_key
from db.env import SettingError
from db.sealing import KEYS_VARIABLE, Keyring
from db.services import open_services
from db.settings import DbSettings

REPO = Path(__file__).resolve().parents[2]

# A child process that attaches to the servers under argv[1], prints their URLs, waits for a line
# on stdin (or none when argv[2] is "now"), and leaves.
CHILD = """
import sys
from pathlib import Path
from db.embedded import EmbeddedServices
services = EmbeddedServices(Path(sys.argv[1])).start()
print(services.database_url)
print(services.redis_url, flush=True)
if sys.argv[2] != "now":
    sys.stdin.readline()
services.close()
"""


def child(data_dir: Path, *, wait: bool) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir), "wait" if wait else "now"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def postgres_answers(url: str) -> str:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        name: str = await conn.fetchval("SELECT current_database()")
        return name
    finally:
        await conn.close()


def redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        return bool(client.ping())
    finally:
        client.close()


async def assert_stopped(database_url: str, redis_url: str) -> None:
    with pytest.raises(OSError):
        await postgres_answers(database_url)
    with pytest.raises(redis.ConnectionError):
        redis_answers(redis_url)


async def server_identity(services: EmbeddedServices) -> tuple[object, object]:
    """Which server processes answer: the postmaster's start time and Redis's run id."""
    conn = await asyncpg.connect(services.database_url, timeout=10)
    try:
        started = await conn.fetchval("SELECT pg_postmaster_start_time()")
    finally:
        await conn.close()
    client = redis.Redis.from_url(services.redis_url)
    try:
        run_id = client.info("server")["run_id"]
    finally:
        client.close()
    return started, run_id


@pytest.fixture
def embedded(data_dir: Path) -> Iterator[EmbeddedServices]:
    services = EmbeddedServices(data_dir).start()
    yield services
    services.close()  # a no-op when the test closed it already


async def test_started_servers_answer_until_the_last_user_closes_them(embedded: EmbeddedServices) -> None:
    database_url, redis_url = embedded.database_url, embedded.redis_url
    assert database_url.startswith("postgresql://") and redis_url.startswith("unix://")
    assert await postgres_answers(database_url) == DATABASE
    assert redis_answers(redis_url)

    embedded.close()

    await assert_stopped(database_url, redis_url)
    assert json.loads((embedded.data_dir / "redis.users").read_text()) == []


async def test_a_second_instance_on_the_same_directory_attaches_to_the_running_servers(
    embedded: EmbeddedServices,
) -> None:
    before = await server_identity(embedded)

    second = EmbeddedServices(embedded.data_dir).start()
    try:
        assert (second.database_url, second.redis_url) == (embedded.database_url, embedded.redis_url)
        assert await server_identity(second) == before
        users = json.loads((embedded.data_dir / "redis.users").read_text())
        assert len(users) == 2
    finally:
        second.close()
    # One process, two handles: closing one must leave both servers serving the other.
    assert await server_identity(embedded) == before
    embedded.close()
    await assert_stopped(second.database_url, second.redis_url)


async def test_data_persists_across_a_stop_and_a_start(data_dir: Path) -> None:
    first = EmbeddedServices(data_dir).start()
    try:
        conn = await asyncpg.connect(first.database_url)
        await conn.execute("CREATE TABLE kept (note text); INSERT INTO kept VALUES ('still here')")
        await conn.close()
        redis.Redis.from_url(first.redis_url).set("transient", "1")
    finally:
        first.close()
    await assert_stopped(first.database_url, first.redis_url)

    second = EmbeddedServices(data_dir).start()
    try:
        conn = await asyncpg.connect(second.database_url)
        notes = await conn.fetch("SELECT note FROM kept")
        await conn.close()
        # Redis is transport only and keeps no snapshot.
        assert redis.Redis.from_url(second.redis_url).get("transient") is None
    finally:
        second.close()

    assert second.database_url == first.database_url
    assert [r["note"] for r in notes] == ["still here"]


async def test_a_second_process_attaches_to_the_same_servers_and_leaves_them_running(
    embedded: EmbeddedServices,
) -> None:
    before = await server_identity(embedded)

    proc = child(embedded.data_dir, wait=False)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 0, err
    assert out.split() == [embedded.database_url, embedded.redis_url]
    assert await postgres_answers(embedded.database_url) == DATABASE
    assert redis_answers(embedded.redis_url)
    assert await server_identity(embedded) == before
    embedded.close()
    await assert_stopped(embedded.database_url, embedded.redis_url)


async def test_the_first_process_leaving_keeps_the_servers_up_for_a_process_still_attached(
    data_dir: Path,
) -> None:
    proc = child(data_dir, wait=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        database_url, redis_url = proc.stdout.readline().strip(), proc.stdout.readline().strip()
        assert database_url.startswith("postgresql://") and redis_url.startswith("unix://"), proc.stderr

        ours = EmbeddedServices(data_dir).start()
        assert (ours.database_url, ours.redis_url) == (database_url, redis_url)
        ours.close()

        assert await postgres_answers(database_url) == DATABASE
        assert redis_answers(redis_url)

        _, err = proc.communicate("leave\n", timeout=60)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    await assert_stopped(database_url, redis_url)


def test_the_local_seal_key_is_created_once_with_mode_0600_and_then_reused(data_dir: Path) -> None:
    entry, created = local_seal_key(data_dir)
    again, created_again = local_seal_key(data_dir)

    path = data_dir / SEAL_KEY_FILE
    assert (created, created_again) == (True, False)
    assert again == entry
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Keyring.parse(entry).current_kid == "local"


async def test_open_services_with_nothing_configured_starts_embedded_servers_and_generates_a_seal_key(
    data_dir: Path,
) -> None:
    settings = DbSettings.from_env({"CAREBEACON_DATA_DIR": str(data_dir)})

    first = open_services(settings, None)
    try:
        assert first.embedded is not None
        assert (first.database_url, first.redis_url) == (
            first.embedded.database_url,
            first.embedded.redis_url,
        )
        assert await postgres_answers(first.database_url) == DATABASE
        assert redis_answers(first.redis_url)
        sealed = first.keyring.seal(b"token", table="connections", column="tokens_sealed", row_id=1)
    finally:
        first.close()
    second = open_services(settings, None)
    second.close()

    assert first.keyring.current_kid == "local"
    assert stat.S_IMODE((data_dir / SEAL_KEY_FILE).stat().st_mode) == 0o600
    assert first.notes == (
        f"embedded servers under {data_dir}",
        f"generated a local seal key in {data_dir}/seal.key (mode 0600)",
    )
    assert second.notes == (f"embedded servers under {data_dir}",)
    assert second.keyring.open(sealed, table="connections", column="tokens_sealed", row_id=1) == b"token"
    assert first.embedded is None and second.embedded is None
    await assert_stopped(first.database_url, first.redis_url)


def test_open_services_stops_the_embedded_redis_it_started_before_refusing_to_run_without_seal_keys(
    data_dir: Path,
) -> None:
    settings = DbSettings.from_env(
        {"DATABASE_URL": "postgresql://app@db.invalid/carebeacon", "CAREBEACON_DATA_DIR": str(data_dir)}
    )

    with pytest.raises(SettingError) as caught:
        open_services(settings, None)

    assert caught.value.name == KEYS_VARIABLE
    assert json.loads((data_dir / "redis.users").read_text()) == []
    registry = json.loads((data_dir / "redis.rdb.settings").read_text())
    with pytest.raises(redis.ConnectionError):
        redis_answers(f"unix://{registry['unixsocket']}")
    assert not (data_dir / SEAL_KEY_FILE).exists()
    assert not (data_dir / "postgres").exists()
