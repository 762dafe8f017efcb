"""Real servers for the whole suite, and one pipeline runtime with a real Dramatiq worker.

PostgreSQL and Redis come from CAREBEACON_TEST_DATABASE_URL / CAREBEACON_TEST_REDIS_URL when
set (``.ci/run`` sets them when local servers answer), otherwise from the embedded servers
under a temporary directory.  Each session works in fresh databases it creates and drops,
and in Redis database numbers of its own, so it never touches anyone's data.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import dramatiq
import pytest
import redis

from db.embedded import EmbeddedServices
from db.migrate import migrate
from db.pool import connect, create_pool
from db.sealing import Keyring
from pipeline import runtime
from tests.fakes.oura import FakeOura

# Redis database numbers: 1 for in-process pipeline tests; subprocess tests take their own:
# 2-4 and 9 the CLI tests, 10 the chat CLI tests, 7, 11-12 and 14-15 the bench smoke tests,
# 13 the resilience drills.
PIPELINE_REDIS_DB = 1


@dataclass(frozen=True)
class Servers:
    database_url: str
    redis_url: str

    def database(self, name: str) -> str:
        parts = urlsplit(self.database_url)
        return urlunsplit(parts._replace(path=f"/{name}"))

    def redis(self, number: int) -> str:
        parts = urlsplit(self.redis_url)
        if parts.scheme == "unix":
            query = dict(parse_qsl(parts.query)) | {"db": str(number)}
            return f"unix://{parts.path}?{urlencode(query)}"  # urlunsplit drops the empty host's "//"
        return urlunsplit(parts._replace(path=f"/{number}"))


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    database_url = os.environ.get("CAREBEACON_TEST_DATABASE_URL")
    redis_url = os.environ.get("CAREBEACON_TEST_REDIS_URL")
    embedded = None
    if not database_url or not redis_url:
        scratch = Path(tempfile.mkdtemp(prefix="cb-test-servers-"))
        scratch.chmod(0o755)
        embedded = EmbeddedServices(scratch).start(postgres=not database_url, redis=not redis_url)
    yield Servers(database_url or embedded.database_url, redis_url or embedded.redis_url)  # type: ignore[union-attr]
    if embedded is not None:
        embedded.close()
        shutil.rmtree(scratch, ignore_errors=True)


class Databases:
    """Creates uniquely named databases and drops them at the end of the session."""

    def __init__(self, servers: Servers) -> None:
        self.servers = servers
        self.created: list[str] = []

    async def create(self) -> str:
        name = f"cb_test_{secrets.token_hex(4)}"
        conn = await asyncpg.connect(self.servers.database_url)
        try:
            await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()
        self.created.append(name)
        return self.servers.database(name)

    async def drop_all(self) -> None:
        conn = await asyncpg.connect(self.servers.database_url)
        try:
            for name in self.created:
                await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()


@pytest.fixture(scope="session")
async def databases(servers: Servers) -> AsyncIterator[Databases]:
    found = Databases(servers)
    yield found
    await found.drop_all()


@pytest.fixture
async def fresh_db(databases: Databases) -> str:
    """The URL of a new, empty database."""
    return await databases.create()


@pytest.fixture
async def conn(fresh_db: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a new database with every migration applied."""
    found = await connect(fresh_db)
    await migrate(found)
    yield found
    await found.close()


@pytest.fixture
async def fresh_pool(fresh_db: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a new database with every migration applied: for code that takes whatever
    rows it finds (sweeps, jobs, waiting runs), away from the other tests' rows."""
    found = await create_pool(fresh_db, max_size=4)
    async with found.acquire() as conn:
        await migrate(conn)
    yield found
    await found.close()


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.parse(Keyring.new_entry("test"))


def flushed_redis(url: str) -> str:
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A scratch directory outside pytest's own tree.

    As root, the embedded PostgreSQL runs as an unprivileged user that must traverse every
    parent directory; pytest keeps its tree at mode 0700 and resets it when a session starts.
    """
    path = Path(tempfile.mkdtemp(prefix="cb-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def data_dir(workdir: Path) -> Path:
    return workdir / "data"


@pytest.fixture(scope="session")
async def pipeline_runtime(
    servers: Servers, databases: Databases, tmp_path_factory: pytest.TempPathFactory, fake_oura: FakeOura
) -> AsyncIterator[runtime.Runtime]:
    database_url = await databases.create()
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": flushed_redis(servers.redis(PIPELINE_REDIS_DB)),
        "CAREBEACON_SEAL_KEYS": Keyring.new_entry("pipeline"),
        "CAREBEACON_DATA_DIR": str(tmp_path_factory.mktemp("pipeline-data")),
        # The worker's Oura is the local fake; a 1 s request timeout keeps the timeout tests quick.
        **fake_oura.env(),
        "PROVIDER_TIMEOUT_SECONDS": "1",
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


@pytest.fixture(scope="session")
def fake_oura() -> Iterator[FakeOura]:
    """The local Oura API of the whole session (tests add accounts of their own to it)."""
    server = FakeOura().start()
    yield server
    server.stop()
