"""One pipeline runtime per session, on a migrated database and its own Redis database,
with a real Dramatiq worker consuming from real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import dramatiq
import pytest

from db.migrate import migrate
from db.pool import create_pool
from db.sealing import Keyring
from pipeline import runtime
from tests.conftest import PIPELINE_REDIS_DB, Databases, Servers, flushed_redis


@pytest.fixture(scope="session")
async def pipeline_runtime(
    servers: Servers, databases: Databases, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[runtime.Runtime]:
    database_url = await databases.create()
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": flushed_redis(servers.redis(PIPELINE_REDIS_DB)),
        "CAREBEACON_SEAL_KEYS": Keyring.new_entry("pipeline"),
        "CAREBEACON_DATA_DIR": str(tmp_path_factory.mktemp("pipeline-data")),
    }
    rt = runtime.start(env)
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    import pipeline.actors  # noqa: F401  (declares the actors on this runtime's broker)

    yield rt
    await runtime.close_pool()
    runtime.stop()


@pytest.fixture(scope="session")
def worker(pipeline_runtime: runtime.Runtime) -> Iterator[dramatiq.Worker]:
    found = dramatiq.Worker(pipeline_runtime.broker, worker_timeout=100, worker_threads=4)
    found.start()
    yield found
    found.stop()


@pytest.fixture
async def pool(pipeline_runtime: runtime.Runtime) -> asyncpg.Pool:
    return await runtime.pool()


@pytest.fixture
def alert_file(tmp_path: Path) -> Path:
    return tmp_path / "alerts.jsonl"
