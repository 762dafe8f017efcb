"""Bench: front-door load, open loop: ``POST /v1/ingest`` and signed WHOOP pushes, beside a bare aiohttp app.

    .venv/bin/python bench/frontdoor.py [--quick] [--rate 500] [--seconds 60] [--warmup 5] [--users 200]
        [--keys 100] [--readings 10] [--accounts 50] [--database-url URL] [--redis-url URL]

Ours: the Procfile's ``web`` process (``carebeacon web``, one process) on 127.0.0.1, with the
Procfile's ``sync`` worker (``dramatiq pipeline.worker --processes 1 --threads 5 --queues sync``)
beside it, both real processes on the bench's database and Redis.  Two phases, one per endpoint,
each at ``--rate`` requests a second for ``--seconds``:

* ``POST /v1/ingest``: a batch of ``--readings`` heart-rate readings for one of ``--users``
  users (round-robin), with an API key of the write scope (``Authorization: Bearer``), one of
  ``--keys`` keys in turn: at 500/s each key sends 300 a minute, under the default limit of 600,
  so the per-key rate limit is counted in Redis on every request but refuses none.  Every
  reading of the run has its own (user, time), so each accepted one is a new row.
* ``POST /webhooks/providers/whoop``: a ``recovery.updated`` push for one of ``--accounts``
  WHOOP accounts in turn, signed as WHOOP signs (base64 HMAC-SHA256 of the millisecond timestamp
  and the body, keyed with the app's client secret) when it is sent.  The app asks for a sync of
  the account's connection unless one is already waiting; the sync worker fetches the account's
  week of recoveries (its only records) from a local WHOOP API
  (``tests/fakes/whoop.py``, in a process of its own).

Baseline, in the same run: a bare ``aiohttp.web`` app in a process of its own whose only handler
reads the body and answers an empty 200, under the same load (the ingest phase's requests).

Load: open loop.  Request i is due at ``start + i / rate`` on a fixed clock and sent then,
whatever became of earlier ones; its latency runs from that due time to the end of the response,
so a stalled server (or load generator) shows in the tail instead of slowing the arrivals down
(coordinated omission).  Keep-alive connections, no limit on them.  An error is a failure to
connect, a 10 s timeout, or a status other than the endpoint's (200 for ingest and the bare app,
202 for a push).  Each phase starts with ``--warmup`` unmeasured seconds at the same rate.

Stored: after the load, the bench waits for the sync worker to drain (no sync run pending or
running), then counts in PostgreSQL: ingest rows against the readings the API reported accepted
(and the readings sent), and WHOOP rows against what ``pipeline.providers.whoop.normalise`` makes
of the accounts' records, for every account whose push was accepted.  The analytics messages
that syncs (one a run) and ingest batches (a few a second, each naming the batches stored
meanwhile) enqueue are left in the ``analytics`` queue (no analytics worker runs here:
``bench/e2e.py`` measures that path) and counted.

PostgreSQL comes from ``--database-url`` or CAREBEACON_BENCH_DATABASE_URL, else an embedded
server; Redis from ``--redis-url`` or CAREBEACON_BENCH_REDIS_URL (a database number of its own:
the bench deletes the ``dramatiq:*`` keys there before and after), else an embedded one.  The
work happens in a fresh ``cb_bench_<hex>`` database dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import multiprocessing
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib.metadata import version
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import openloop  # noqa: E402
from openloop import Phase  # noqa: E402
from servers import (  # noqa: E402
    BIN,
    Workers,
    bench_env,
    clear_queues,
    cpu_times,
    create_database,
    drop_database,
    log_errors,
    postgres,
    process_cpu,
    procfile_workers,
    redis_server,
)

from db.sealing import Keyring  # noqa: E402

TARGET_ERRORS = 0
METRIC, UNIT, VALUE = "heart_rate", "bpm", 72.0
WHOOP_DAYS = 7  # of recoveries per account, all inside a first sync's window
PUSH_TYPE = "recovery.updated"
DRAIN_TIMEOUT_S = 600.0  # at 500/s, thousands of pushed syncs may be queued for 5 threads
CLIENT_TIMEOUT_S = 10.0


# -- processes of their own: the local WHOOP API and the bare app --------------------------------


def whoop_main(accounts: int, pipe: Connection) -> None:
    """The local WHOOP API with ``accounts`` accounts, each with a week of recoveries; sends
    (its env, [(WHOOP user id, tokens)]) and serves until told to stop."""
    from tests.fakes.whoop import FakeWhoop, recovery

    fake = FakeWhoop().start()
    records = {"recovery": [recovery(d) for d in whoop_days()]}
    found = []
    for n in range(accounts):
        account = fake.add_account(f"a{n}", user_id=900_000 + n, records=records)
        # Valid all run long: the bench measures the front door, not the hourly refresh.
        found.append((account.user_id, account.tokens(datetime.now(UTC) + timedelta(days=1))))
    pipe.send((fake.env(), found))
    pipe.recv()
    fake.stop()


def whoop_days() -> list[date]:
    return [date.today() - timedelta(days=d) for d in range(WHOOP_DAYS, 0, -1)]


def whoop_rows_per_account() -> int:
    """The distinct readings a pushed sync stores for one account, by the provider's own pure
    normaliser (no sleeps here: each recovery is dated by its own ``created_at``)."""
    from db.metrics import Reading
    from pipeline.providers.whoop import normalise
    from tests.fakes.whoop import recovery

    keys = set()
    for day in whoop_days():
        for item in normalise("recovery", recovery(day)):
            if isinstance(item, Reading):  # not a Session
                keys.add((item.metric, item.recorded_at))
    return len(keys)


def bare_main(pipe: Connection) -> None:
    asyncio.run(_bare(pipe))


async def _bare(pipe: Connection) -> None:
    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response()

    app = web.Application()
    app.router.add_post("/{tail:.*}", accept)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=4096).start()
    pipe.send(runner.addresses[0][1])
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # until told to stop
    await runner.cleanup()


class WebProcess:
    """The Procfile's ``web`` line, ``carebeacon web``, on a port of its own, logging to a file."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.port, self.log = port, log
        with log.open("w") as sink:
            self.popen = subprocess.Popen(
                [str(BIN / "carebeacon"), "web", "--host", "127.0.0.1", "--port", str(port)],
                cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    async def ready(self, http: aiohttp.ClientSession, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{self.port}/healthz") as resp:
                    if resp.status == 200:
                        return
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the web process did not start:\n{self.log.read_text(errors='replace')[-3000:]}")
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# -- the requests --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    body: bytes
    headers: dict[str, str]
    subject: int  # the user (ingest) or the WHOOP account (push) it is about
    sign: Callable[[bytes], dict[str, str]] | None = None  # headers made at send time


class Ingest:
    """``POST /v1/ingest`` bodies: request n carries ``readings`` readings of its user, each at
    a time no other request of the run uses for that user."""

    def __init__(self, user_ids: list[int], keys: list[str], readings: int) -> None:
        self.user_ids, self.keys, self.readings = user_ids, keys, readings
        self.sent = 0
        self.base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)

    def make(self, count: int) -> list[Request]:
        made = []
        for n in range(self.sent, self.sent + count):
            user = self.user_ids[n % len(self.user_ids)]
            turn = n // len(self.user_ids)
            readings = [
                {
                    "metric": METRIC,
                    "unit": UNIT,
                    "value": VALUE,
                    "recorded_at": (self.base - timedelta(seconds=turn * self.readings + k)).isoformat(),
                }
                for k in range(self.readings)
            ]
            body = json.dumps({"user_id": user, "readings": readings}).encode()
            key = self.keys[n % len(self.keys)]
            made.append(Request(body, {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}, user))
        self.sent += count
        return made


def whoop_signer(secret: str) -> Callable[[bytes], dict[str, str]]:
    def sign(body: bytes) -> dict[str, str]:
        stamp = str(int(time.time() * 1000))
        digest = hmac.new(secret.encode(), stamp.encode() + body, hashlib.sha256).digest()
        return {"X-WHOOP-Signature": base64.b64encode(digest).decode(), "X-WHOOP-Signature-Timestamp": stamp}

    return sign


class Pushes:
    """WHOOP pushes of PUSH_TYPE, one account after another."""

    def __init__(self, accounts: list[int], secret: str) -> None:
        self.accounts, self.sign = accounts, whoop_signer(secret)
        self.sent = 0

    def make(self, count: int) -> list[Request]:
        made = []
        for n in range(self.sent, self.sent + count):
            account = self.accounts[n % len(self.accounts)]
            doc = {"user_id": account, "id": f"r-{n}", "type": PUSH_TYPE, "trace_id": f"t-{n}"}
            made.append(Request(json.dumps(doc).encode(), {"Content-Type": "application/json"}, account, self.sign))
        self.sent += count
        return made


# -- the load generator (this process) -----------------------------------------------------------


def prepare(req: Request) -> tuple[bytes, dict[str, str]]:
    return req.body, req.headers | req.sign(req.body) if req.sign else req.headers


async def run_phase(
    http: aiohttp.ClientSession, name: str, url: str, pid: int, make: Callable[[int], list[Request]], expect: int,
    args: argparse.Namespace,
) -> tuple[Phase, list[tuple[Request, bytes]]]:  # fmt: skip
    """Warm up, then measure; returns the phase and the requests answered as expected with their
    answers, of the warm-up and of the phase (both count in what must be stored)."""
    warm = make(int(args.rate * args.warmup))
    warmed = await openloop.fire(http, url, args.rate, warm, prepare, expect)
    if warmed.errors:
        print(f"# {name}: warm-up errors {warmed.errors}", file=sys.stderr)
    requests = make(int(args.rate * args.seconds))
    cpu_before, server_before, began = cpu_times(), process_cpu(pid), time.monotonic()
    fired = await openloop.fire(http, url, args.rate, requests, prepare, expect)
    took, cpu_after, server_after = time.monotonic() - began, cpu_times(), process_cpu(pid)
    busy = -1.0
    if cpu_before is not None and cpu_after is not None and cpu_after[1] > cpu_before[1]:
        busy = (cpu_after[0] - cpu_before[0]) / (cpu_after[1] - cpu_before[1])
    phase = Phase(
        name, len(requests), fired.latencies_ms, fired.errors, fired.late_ms, took, os.getloadavg()[0], busy
    )  # fmt: skip
    if server_before is not None and server_after is not None:
        phase.server_cpu_ms = (server_after - server_before) / len(requests) * 1000
    answered = [(warm[i], body) for i, body in warmed.answered] + [(requests[i], body) for i, body in fired.answered]
    return phase, answered


async def settle(http: aiohttp.ClientSession, url: str, timeout: float = 120.0) -> float:
    """Seconds until ``url`` (the server's /healthz) answered within 50 ms, the first of three
    times running: an overloaded phase's backlog must not spill into the next one."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    streak: list[float] = []  # when each prompt answer of the current run of them was asked for
    while len(streak) < 3 and loop.time() - began < timeout:
        sent = loop.time()
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with http.get(url) as resp:
                await resp.read()
        streak = [*streak, sent] if loop.time() - sent < 0.05 else []
        await asyncio.sleep(0.2)
    return (streak[0] if streak else loop.time()) - began


# -- data and the run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Seeded:
    user_ids: list[int]
    keys: list[str]
    whoop_users: list[int]  # WHOOP's ids of the accounts, each with a connection


async def seed(url: str, keyring: Keyring, args: argparse.Namespace, whoop: list[tuple[int, dict[str, Any]]]) -> Seeded:
    """One clinic: its users, ``--keys`` API keys with the write scope, and a WHOOP connection for
    each local WHOOP account, its provider id noted as /connect would."""
    from db import api_keys, connect_links, tenants
    from db.pool import connect

    conn = await connect(url)  # with the JSON codecs the db layer expects
    try:
        tenant_id = await tenants.ensure_tenant(conn, "frontdoor", "Front door clinic")
        user_ids = [await tenants.ensure_user(conn, tenant_id, f"p{n}", f"Patient {n}") for n in range(args.users)]
        keys = [(await api_keys.create(conn, tenant_id, f"integrator {n}", ["write"]))[1] for n in range(args.keys)]
        for n, (whoop_user, tokens) in enumerate(whoop):
            user_id = await tenants.ensure_user(conn, tenant_id, f"w{n}", f"WHOOP wearer {n}")
            await connect_links.record_connection(
                conn, keyring, user_id=user_id, provider="whoop", tokens=tokens, provider_user_id=str(whoop_user)
            )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return Seeded(user_ids, keys, [w for w, _ in whoop])


@dataclass
class Stored:
    ingest_sent: int  # readings sent, in every batch (answered or not)
    ingest_accepted: int  # as the API reported them
    ingest_rows: int  # in PostgreSQL
    push_accounts: int  # accounts with at least one accepted push
    short_accounts: int  # of those, the ones with fewer rows than expected
    whoop_expected: int  # rows of the accounts pushed
    whoop_rows: int  # rows of every WHOOP account (a push answered too late may have synced one)
    runs: dict[str, int]  # WHOOP sync runs by status
    drained_s: float
    analytics_queued: int

    @property
    def lost(self) -> int:
        return max(0, self.ingest_accepted - self.ingest_rows) + self.short_accounts + self.runs.get("failed", 0)


async def drain(pool: asyncpg.Pool, timeout: float) -> float:
    """Seconds until no sync run is pending or running (the sync worker has drained)."""
    began = time.monotonic()
    while await pool.fetchval("SELECT count(*) FROM sync_runs WHERE status IN ('pending', 'running')"):
        if time.monotonic() - began > timeout:
            raise RuntimeError(f"the sync worker did not drain in {timeout:g} s")
        await asyncio.sleep(0.5)
    return time.monotonic() - began


async def count_stored(
    pool: asyncpg.Pool, redis_url: str, ingest: list[tuple[Request, bytes]], pushes: list[tuple[Request, bytes]],
    ingest_sent: int, drained: float,
) -> Stored:  # fmt: skip
    """What PostgreSQL holds against what was accepted: every reading of a 200-answered batch, and
    every reading of each account whose push was answered 202."""
    accepted = sum(json.loads(body)["accepted"] for _, body in ingest)
    ingest_rows = await pool.fetchval("SELECT count(*) FROM metrics WHERE provider = 'ingest'")
    per_account = {
        int(r["account"]): r["n"]
        for r in await pool.fetch(
            "SELECT c.provider_user_id AS account, count(m.*) AS n FROM connections c"
            " LEFT JOIN metrics m ON m.connection_id = c.id WHERE c.provider = 'whoop' GROUP BY c.provider_user_id"
        )
    }
    runs = await pool.fetch(
        "SELECT r.status, count(*) AS n FROM sync_runs r JOIN connections c ON c.id = r.connection_id"
        " WHERE c.provider = 'whoop' GROUP BY r.status"
    )
    pushed = {req.subject for req, _ in pushes}
    each = whoop_rows_per_account()
    client = redis.Redis.from_url(redis_url)
    try:
        queued = int(client.llen("dramatiq:analytics"))
    finally:
        client.close()
    return Stored(
        ingest_sent, accepted, ingest_rows, len(pushed), sum(1 for a in pushed if per_account.get(a, 0) < each),
        len(pushed) * each, sum(per_account.values()), {r["status"]: r["n"] for r in runs}, drained, queued,
    )  # fmt: skip


@dataclass
class Report:
    pg_version: str
    phases: list[Phase]
    stored: Stored | None = None
    log_errors: tuple[int, str] = (0, "")
    worker_log_errors: tuple[int, str] = (0, "")
    ingest_settle_s: float = 0.0  # after the ingest phase, until the web process answered promptly again

    def ingest_throughput(self, args: argparse.Namespace) -> float:
        """Batches the web process stored a second, from the first warm-up request until it had
        caught up: what it managed, whatever was offered."""
        if self.stored is None:
            return float("nan")
        return self.stored.ingest_rows / args.readings / (args.warmup + args.seconds + self.ingest_settle_s)


async def measure(admin_url: str, redis_url: str, args: argparse.Namespace, scratch: Path) -> Report:
    url = await create_database(admin_url)
    seal = Keyring.new_entry("bench")
    ctx = multiprocessing.get_context("spawn")
    ends: list[Connection] = []
    procs: list[multiprocessing.process.BaseProcess] = []

    def spawn(target: Any, *target_args: Any) -> Any:
        ours_end, theirs = ctx.Pipe()
        proc = ctx.Process(target=target, args=(*target_args, theirs), daemon=True)
        proc.start()
        ends.append(ours_end)
        procs.append(proc)
        if not ours_end.poll(120):
            raise RuntimeError(f"{getattr(target, '__name__', target)} did not start")
        return ours_end.recv()

    clear_queues(redis_url)
    web_process: WebProcess | None = None
    workers: Workers | None = None
    report: Report | None = None
    try:
        whoop_env, whoop_accounts = spawn(whoop_main, args.accounts)
        env = bench_env(url, redis_url, seal, scratch) | whoop_env | {"LOG_FORMAT": "json"}
        seeded = await seed(url, Keyring.parse(seal), args, whoop_accounts)
        bare_port = spawn(bare_main)
        workers = Workers(procfile_workers(("sync",)), env, scratch)
        web_process = WebProcess(env, free_port(), scratch / "web.log")
        connector = aiohttp.TCPConnector(limit=0)  # open loop: never queue in the client
        pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
        async with (
            pool,
            aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)) as http,
        ):
            await web_process.ready(http)
            await workers.ready()
            report = Report(await pool.fetchval("SHOW server_version"), [])
            ours = f"http://127.0.0.1:{web_process.port}"
            ingest = Ingest(seeded.user_ids, seeded.keys, args.readings)
            pushes = Pushes(seeded.whoop_users, whoop_env["WHOOP_CLIENT_SECRET"])
            # The bare app gets the ingest phase's requests (same sizes), from an instance of its own.
            bare_ingest = Ingest(seeded.user_ids, seeded.keys, args.readings)
            bare_pid = procs[-1].pid or 0
            phase, _ = await run_phase(
                http, "bare", f"http://127.0.0.1:{bare_port}/v1/ingest", bare_pid, bare_ingest.make, 200, args
            )
            report.phases.append(phase)
            phase, answered = await run_phase(
                http, "ingest", f"{ours}/v1/ingest", web_process.popen.pid, ingest.make, 200, args
            )
            report.phases.append(phase)
            ingest_answers = answered
            report.ingest_settle_s = await settle(http, f"{ours}/healthz")
            phase, answered = await run_phase(
                http, "webhook", f"{ours}/webhooks/providers/whoop", web_process.popen.pid, pushes.make, 202, args
            )
            report.phases.append(phase)
            drained = await drain(pool, DRAIN_TIMEOUT_S)
            ingest_sent = ingest.sent * args.readings
            report.stored = await count_stored(pool, redis_url, ingest_answers, answered, ingest_sent, drained)
        return report
    except BaseException:
        for log in (scratch / "web.log",):
            if log.exists():
                print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        if workers is not None:
            print(workers.tails(3000), file=sys.stderr)
        raise
    finally:
        if web_process is not None:
            web_process.stop()
        if workers is not None:
            workers.stop()
        for end in ends[::-1]:
            with contextlib.suppress(OSError):
                end.send("stop")
        for proc in procs[::-1]:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
        if report is not None:
            report.log_errors = log_errors(scratch / "web.log")
            report.worker_log_errors = log_errors(scratch / "worker-sync.log")
        clear_queues(redis_url)
        await drop_database(admin_url, url)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def machine(args: argparse.Namespace, report: Report) -> str:
    return (
        f"nproc {os.cpu_count()}, {platform.processor() or platform.machine()}, load average at start"
        f" {' '.join(f'{x:.2f}' for x in args.start_load)}, at end {' '.join(f'{x:.2f}' for x in os.getloadavg())};"
        f" PostgreSQL {report.pg_version}"
    )


def render(report: Report, args: argparse.Namespace) -> str:
    by_name = {p.name: p for p in report.phases}
    bare = by_name["bare"]
    lines = [
        f"date      {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"machine   {machine(args, report)}",
        f"versions  Python {platform.python_version()}, aiohttp {version('aiohttp')}, asyncpg {version('asyncpg')},"
        f" dramatiq {version('dramatiq')}",
        f"ours      the Procfile's web process and its sync worker (-t {procfile_workers(('sync',))[0].threads});"
        f" {args.users} users, {args.keys} API keys, {args.readings} readings a batch; {args.accounts} WHOOP accounts",
        f"load      {args.rate:g}/s for {args.seconds:g} s per phase, open loop ({int(args.rate * args.seconds):,}"
        f" requests; {args.warmup:g} s warm-up before each); latency from the due time to the end of the response",
        openloop.header(10),
    ]
    lines += [p.row(10) for p in report.phases]
    for name in ("ingest", "webhook"):
        if name in by_name:
            ours = by_name[name]
            lines.append(
                f"ratio     {name}/bare p99: {ours.percentile(99) / bare.percentile(99):.2f}x"
                f" (p50 {ours.percentile(50) / bare.percentile(50):.2f}x)"
            )
    s = report.stored
    if s is not None:
        lines.append(
            f"throughput ingest: {report.ingest_throughput(args):.0f} batches/s stored (caught up"
            f" {report.ingest_settle_s:.0f} s after the phase), {args.rate:g}/s offered"
        )
        runs = ", ".join(f"{k} {v:,}" for k, v in sorted(s.runs.items()))
        lines += [
            f"stored    ingest: {s.ingest_rows:,} rows of {s.ingest_accepted:,} readings accepted in 200 answers"
            f" ({s.ingest_sent:,} sent; a batch whose answer came too late may be stored all the same)",
            f"stored    whoop: {s.whoop_rows:,} rows of {s.whoop_expected:,} expected ({s.push_accounts} accounts"
            f" pushed, {s.short_accounts} short); sync runs: {runs}; drained {s.drained_s:.1f} s after the load",
            f"queued    {s.analytics_queued:,} analytics messages left queued (no analytics worker here)",
        ]
    for who, (count, first) in (("web", report.log_errors), ("sync worker", report.worker_log_errors)):
        if count:
            lines.append(f"log       {who}: {count} error line(s): {first}")
    ours_errors = sum(p.error_count for p in report.phases if p.name != "bare")
    lines.append(f"target    {verdict(ours_errors == TARGET_ERRORS)} zero errors (ours: {ours_errors})")
    if s is not None:
        lines.append(f"target    {verdict(s.lost == 0)} every accepted reading stored (lost {s.lost})")
    return "\n".join(lines)


def result_line(report: Report, args: argparse.Namespace) -> str:
    """The run as one ``RESULT {json}`` line, for bench/all.py to render into docs/benchmarks.md."""
    by_name = {p.name: p for p in report.phases}
    bare = by_name["bare"]
    rows: list[dict[str, str]] = []
    for name, label in (("ingest", "POST /v1/ingest"), ("webhook", "POST /webhooks/providers/whoop")):
        ours = by_name[name]
        rows.append(
            {
                "case": f"{label}, p50 / p95 / p99 (baseline: bare aiohttp)",
                "baseline": " / ".join(f"{bare.percentile(q):.1f} ms" for q in (50, 95, 99)),
                "ours": " / ".join(f"{ours.percentile(q):.1f} ms" for q in (50, 95, 99)),
                "ratio": f"{ours.percentile(99) / bare.percentile(99):.2f}x",
                "target": "reported",
                "result": "",
            }
        )
        rows.append(
            {
                "case": f"{label}, errors of {ours.sent:,}",
                "baseline": f"{bare.error_count}",
                "ours": f"{ours.error_count}",
                "ratio": "",
                "target": "0",
                "result": verdict(ours.error_count == 0),
            }
        )
    s = report.stored
    if s is not None:
        rows.append(
            {
                "case": "lost: ingest readings accepted but not stored, pushed WHOOP accounts short, failed syncs",
                "baseline": "",
                "ours": f"{s.lost} (ingest {s.ingest_rows:,} rows for {s.ingest_accepted:,} accepted,"
                f" WHOOP {s.whoop_rows:,} rows for {s.whoop_expected:,} expected)",
                "ratio": "",
                "target": "0",
                "result": verdict(s.lost == 0),
            }
        )
    notes = [
        f"{name}: the serving process's CPU over the phase {p.server_cpu_ms:.2f} ms per request sent, all cores"
        f" {p.cpu_busy:.0%} busy, 1-minute load {p.load:.2f} at the end"
        for name, p in by_name.items()
        if p.server_cpu_ms >= 0
    ]
    if s is not None:
        notes.append(
            f"ingest throughput: the web process stored {s.ingest_rows // args.readings:,} batches, "
            f"{report.ingest_throughput(args):.0f} a second from the warm-up's start until it answered promptly again"
            f" ({report.ingest_settle_s:.0f} s after the phase), against {args.rate:g} offered"
        )
        notes.append(f"the sync worker drained {s.drained_s:.1f} s after the load; {s.analytics_queued:,} analytics"
                     " messages left queued (no analytics worker in this bench)")  # fmt: skip
    return "RESULT " + json.dumps(
        {
            "bench": "frontdoor",
            "title": "Front-door load",
            "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            "machine": machine(args, report),
            "size": f"{args.rate:g} requests/s for {args.seconds:g} s per endpoint, open loop ({args.warmup:g} s"
            f" warm-up each); {args.readings} readings an ingest batch, {args.keys} API keys,"
            f" {args.accounts} WHOOP accounts",
            "rows": rows,
            "notes": notes,
        },
        ensure_ascii=False,
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=None, help="requests per second (default 500; quick: 50)")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per phase (default 60; quick 3)")
    parser.add_argument("--warmup", type=float, default=None, help="unmeasured seconds before each phase (5; quick 1)")
    parser.add_argument("--users", type=int, default=200, help="users the ingest batches are for (200)")
    parser.add_argument("--keys", type=int, default=100, help="API keys the ingest requests take turns with (100)")
    parser.add_argument("--readings", type=int, default=10, help="readings per ingest batch (10)")
    parser.add_argument("--accounts", type=int, default=50, help="WHOOP accounts pushed in turn (50)")
    parser.add_argument("--quick", action="store_true", help="50/s for 3 s per phase: a smoke test")
    parser.add_argument("--database-url", help="an existing server (needs CREATE DATABASE); default: embedded")
    parser.add_argument("--redis-url", help="a Redis database of the bench's own; default: embedded")
    args = parser.parse_args(argv)
    args.rate = args.rate or (50 if args.quick else 500)
    args.seconds = args.seconds or (3 if args.quick else 60)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5)
    return args


def main() -> None:
    args = parse()
    args.start_load = os.getloadavg()
    # The web process and the worker run in sessions of their own: on SIGTERM, unwind (stop them).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with tempfile.TemporaryDirectory(prefix="cb-frontdoor-") as tmp, postgres(args.database_url) as admin_url:
        scratch = Path(tmp)
        scratch.chmod(0o755)
        with redis_server(args.redis_url, scratch) as redis_url:
            report = asyncio.run(measure(admin_url, redis_url, args, scratch))
    print(render(report, args))
    print(result_line(report, args))


if __name__ == "__main__":
    main()
