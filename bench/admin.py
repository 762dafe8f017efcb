"""Bench: admin console page loads with 1M metric rows and 100k deliveries in the database.

    .venv/bin/python bench/admin.py [--quick] [--loads N] [--database-url URL] [--redis-url URL]

Seeds, with COPY, a fresh ``cb_bench_<hex>`` database: 10 tenants, 1,000 patients and
connections (5 % inactive, tokens sealed), 1,000,000 metric rows, 100,000 sync runs (2 % failed),
100,000 notification deliveries and 100,000 webhook deliveries with one attempt each; then
ANALYZE.  It logs in with the password and loads each page N times (default 30) through the
real app on a local port, timing each load on the server (a middleware around the handler:
session lookup, queries, template), and prints the median and p95 against the 300 ms target,
with p95 / target as the ratio.  ``--quick`` seeds 1 % of that and loads each page 5 times.

PostgreSQL comes from ``--database-url`` or CAREBEACON_BENCH_DATABASE_URL, else an embedded
server; Redis (the Queues page reads the broker) from ``--redis-url`` or
CAREBEACON_BENCH_REDIS_URL, else an embedded one.  The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402
from aiohttp import web  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402
from dramatiq.brokers.redis import RedisBroker  # noqa: E402

from bench.servers import postgres  # noqa: E402
from bot import admin  # noqa: E402
from bot.admin import AdminSettings  # noqa: E402
from bot.settings import BotSettings  # noqa: E402
from bot.state import BROKER, POOL  # noqa: E402
from db.embedded import EmbeddedServices  # noqa: E402
from db.migrate import migrate  # noqa: E402
from db.pool import create_pool  # noqa: E402
from db.sealing import Keyring  # noqa: E402
from pipeline.settings import PipelineSettings  # noqa: E402

TARGET_MS = 300.0
PASSWORD = "bench-password-long-enough"
QUEUES = ("analytics", "notifications", "reports", "sync", "webhooks")
TENANTS, USERS = 10, 1000
PROVIDERS = ("simulator", "oura", "whoop", "dexcom")
METRICS = ("heart_rate", "resting_heart_rate", "steps", "hrv", "spo2", "sleep", "glucose", "calories", "temp", "rr")


@contextlib.contextmanager
def redis_server(url: str | None) -> Iterator[str]:
    url = url or os.environ.get("CAREBEACON_BENCH_REDIS_URL")
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="cb-bench-redis-") as scratch:
        Path(scratch).chmod(0o755)
        embedded = EmbeddedServices(Path(scratch)).start(postgres=False, redis=True)
        try:
            yield embedded.redis_url
        finally:
            embedded.close()


async def seed(conn: asyncpg.Connection, keyring: Keyring, scale: float) -> dict[str, int]:
    """COPY the bench's rows; returns the counts."""
    now = datetime.now(UTC)
    metric_rows = int(1_000_000 * scale)
    deliveries = int(100_000 * scale)
    runs = int(100_000 * scale)
    await conn.copy_records_to_table(
        "tenants",
        records=[(t, f"tenant-{t}", f"Tenant {t}") for t in range(1, TENANTS + 1)],
        columns=["id", "slug", "name"],
    )
    await conn.copy_records_to_table(
        "users",
        records=[(u, 1 + u % TENANTS, f"p{u}", f"Patient {u}") for u in range(1, USERS + 1)],
        columns=["id", "tenant_id", "external_id", "display_name"],
    )
    tokens = {
        "access_token": "bench-at",
        "refresh_token": "bench-rt",
        "expires_at": (now + timedelta(hours=1)).isoformat(),
    }
    await conn.copy_records_to_table(
        "connections",
        records=[
            (
                c,
                c,
                PROVIDERS[c % len(PROVIDERS)],
                "inactive" if c % 20 == 0 else "active",
                "the provider refused the refresh token" if c % 20 == 0 else None,
                keyring.seal_json(tokens, table="connections", column="tokens_sealed", row_id=c),
                now - timedelta(minutes=c % 90),
            )
            for c in range(1, USERS + 1)
        ],
        columns=["id", "user_id", "provider", "status", "status_reason", "tokens_sealed", "last_synced_at"],
    )
    per_user = max(1, metric_rows // (USERS * len(METRICS)))
    start = now - timedelta(days=per_user)

    def metric_records() -> Iterator[tuple[object, ...]]:
        for u in range(1, USERS + 1):
            provider = PROVIDERS[u % len(PROVIDERS)]
            for m in METRICS:
                for i in range(per_user):
                    yield (u, provider, m, start + timedelta(minutes=15 * i), float(60 + i % 40), "x", u)

    await conn.copy_records_to_table(
        "metrics",
        records=metric_records(),
        columns=["user_id", "provider", "metric", "recorded_at", "value", "unit", "connection_id"],
    )
    await conn.copy_records_to_table(
        "sync_runs",
        records=[
            (
                r,
                1 + r % USERS,
                "scheduled",
                "failed" if r % 50 == 0 else "completed",
                96,
                90,
                "TransientSyncError: upstream answered 503" if r % 50 == 0 else None,
                now - timedelta(seconds=runs - r + 5),
                now - timedelta(seconds=runs - r),
                now - timedelta(seconds=runs - r),
                4 if r % 50 == 0 else 1,
            )
            for r in range(1, runs + 1)
        ],
        columns=[
            "id", "connection_id", "trigger", "status", "rows_received", "rows_written", "error",
            "started_at", "finished_at", "created_at", "attempts",
        ],
    )  # fmt: skip
    alerts = max(1, deliveries // 10)
    await conn.copy_records_to_table(
        "alerts",
        records=[
            (a, 1 + a % USERS, "cardio", "warning", "High resting heart rate", "b", f"k{a}")
            for a in range(1, alerts + 1)
        ],
        columns=["id", "user_id", "category", "severity", "title", "body", "dedupe_key"],
    )
    await conn.copy_records_to_table(
        "notification_channels",
        records=[
            (
                t,
                t,
                "webhook",
                "ops",
                keyring.seal_json({}, table="notification_channels", column="config_sealed", row_id=t),
            )
            for t in range(1, TENANTS + 1)
        ],
        columns=["id", "tenant_id", "kind", "label", "config_sealed"],
    )
    await conn.copy_records_to_table(
        "notification_logs",
        records=[
            (
                n,
                1 + (n - 1) // 10,
                1 + (1 + (n - 1) // 10) % USERS % TENANTS,
                1 + (n - 1) % 10,
                "failed" if n % 25 == 0 else "delivered",
                "transient" if n % 25 == 0 else None,
                40 + n % 200,
                now - timedelta(seconds=deliveries - n),
            )
            for n in range(1, deliveries + 1)
        ],
        columns=["id", "alert_id", "channel_id", "attempt", "status", "error_class", "latency_ms", "created_at"],
    )
    await conn.copy_records_to_table(
        "webhook_endpoints",
        records=[
            (t, t, f"https://hooks.tenant-{t}.example/in", ["sync.completed"],
             keyring.seal(b"whsec", table="webhook_endpoints", column="secret_sealed", row_id=t))
            for t in range(1, TENANTS + 1)
        ],
        columns=["id", "tenant_id", "url", "events", "secret_sealed"],
    )  # fmt: skip
    await conn.copy_records_to_table(
        "events",
        records=[(e, 1 + e % TENANTS, "sync.completed", "{}", now) for e in range(1, deliveries + 1)],
        columns=["id", "tenant_id", "type", "payload", "dispatched_at"],
    )
    await conn.copy_records_to_table(
        "webhook_deliveries",
        records=[
            (d, d, 1 + d % TENANTS, f"msg_{d}", "failed" if d % 25 == 0 else "succeeded", 1, now - timedelta(seconds=d))
            for d in range(1, deliveries + 1)
        ],
        columns=["id", "event_id", "endpoint_id", "msg_id", "status", "attempts", "created_at"],
    )
    await conn.copy_records_to_table(
        "webhook_attempts",
        records=[
            (d, 1, 500 if d % 25 == 0 else 200, 30 + d % 100, "transient" if d % 25 == 0 else None)
            for d in range(1, deliveries + 1)
        ],
        columns=["delivery_id", "attempt", "http_status", "latency_ms", "error_class"],
    )
    for table in ("tenants", "users", "connections", "sync_runs", "alerts", "notification_logs", "events"):
        await conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
    await conn.execute("ANALYZE")
    return {"metrics": USERS * len(METRICS) * per_user, "sync_runs": runs, "deliveries": deliveries}


def timed(samples: dict[str, list[float]]) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        began = time.perf_counter()
        try:
            return await handler(request)
        finally:
            samples.setdefault(request.path_qs, []).append((time.perf_counter() - began) * 1000)

    return middleware


PAGES = (
    ("queues", "/admin/queues"),
    ("sync runs", "/admin/sync-runs"),
    ("sync runs, failed", "/admin/sync-runs?status=failed"),
    ("sync runs, provider+tenant", "/admin/sync-runs?provider=oura&tenant=tenant-3"),
    ("sync runs, deep page", "/admin/sync-runs?before={mid_run}"),
    ("deliveries", "/admin/deliveries"),
    ("deliveries, failed", "/admin/deliveries?status=failed"),
    ("webhook deliveries", "/admin/deliveries?kind=webhooks"),
    ("webhook deliveries, failed", "/admin/deliveries?kind=webhooks&status=failed"),
    ("connections", "/admin/connections"),
    ("connections, not active", "/admin/connections?status=not-active"),
    ("scheduler", "/admin/scheduler"),
)


async def measure(database_url: str, redis_url: str, args: argparse.Namespace) -> bool:
    keyring = Keyring.parse(Keyring.new_entry("bench"))
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn)
        began = time.perf_counter()
        counts = await seed(conn, keyring, 0.01 if args.quick else 1.0)
        seeded_in = time.perf_counter() - began
    finally:
        await conn.close()
    print(
        f"data      {counts['metrics']:,} metric rows, {counts['sync_runs']:,} sync runs, "
        f"{counts['deliveries']:,} notification + {counts['deliveries']:,} webhook deliveries "
        f"(seeded in {seeded_in:.1f} s)"
    )
    broker = RedisBroker(url=redis_url)  # type: ignore[no-untyped-call]
    for queue in QUEUES:
        broker.declare_queue(queue)
    samples: dict[str, list[float]] = {}
    pool = await create_pool(database_url, max_size=4)
    app = web.Application(middlewares=[timed(samples)])
    app[POOL], app[BROKER] = pool, broker
    admin.setup(
        app,
        BotSettings(),
        keyring,
        settings=AdminSettings(password=PASSWORD),
        pipeline=PipelineSettings(redis_url=redis_url),
    )
    ok = True
    pages: list[tuple[str, float, float, str]] = []
    try:
        async with TestClient(TestServer(app)) as client:
            form = await (await client.get("/admin/login")).text()
            token = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            login = await client.post("/admin/login", data={"csrf": token, "password": PASSWORD})
            assert login.status == 200, await login.text()
            print(f"{'page':<30} {'median':>9} {'p95':>9}   target   ratio (p95/target)")
            for name, path in PAGES:
                path = path.format(mid_run=counts["sync_runs"] // 2)
                samples.clear()
                for _ in range(args.loads):
                    response = await client.get(path)
                    assert response.status == 200, f"{path}: {response.status}"
                    await response.read()
                took = next(iter(samples.values()))
                median = statistics.median(took)
                p95 = statistics.quantiles(took, n=20)[-1] if len(took) >= 2 else took[0]
                verdict = "PASS" if p95 < TARGET_MS else "MISS"
                ok = ok and verdict == "PASS"
                ratio = p95 / TARGET_MS
                pages.append((name, median, p95, verdict))
                print(f"{name:<30} {median:7.1f} ms {p95:7.1f} ms   {TARGET_MS:.0f} ms   {ratio:.2f}x  {verdict}")
    finally:
        await pool.close()
    print(result_line(pages, counts, args))
    return ok


def result_line(pages: list[tuple[str, float, float, str]], counts: dict[str, int], args: argparse.Namespace) -> str:
    """The run as one ``RESULT {json}`` line, for bench/all.py to render into docs/benchmarks.md."""
    rows = [
        {
            "case": name,
            "baseline": "",
            "ours": f"median {median:.1f} ms, p95 {p95:.1f} ms",
            "ratio": f"{p95 / TARGET_MS:.2f}x",
            "target": f"p95 < {TARGET_MS:.0f} ms",
            "result": verdict,
        }
        for name, median, p95, verdict in pages
    ]
    return "RESULT " + json.dumps(
        {
            "bench": "admin",
            "title": "Admin console",
            "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            "machine": f"nproc {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}",
            "size": f"{counts['metrics']:,} metric rows, {counts['sync_runs']:,} sync runs, {counts['deliveries']:,}"
            f" + {counts['deliveries']:,} deliveries; {args.loads} loads per page; ratio = p95 / target",
            "rows": rows,
        },
        ensure_ascii=False,
    )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 %% of the data, 5 loads per page")
    parser.add_argument("--loads", type=int, default=None, help="loads per page (default 30; 5 with --quick)")
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    args.loads = args.loads or (5 if args.quick else 30)
    with postgres(args.database_url) as admin_url, redis_server(args.redis_url) as redis_url:
        name = f"cb_bench_{secrets.token_hex(4)}"
        conn = await asyncpg.connect(admin_url)
        await conn.execute(f"CREATE DATABASE {name}")
        await conn.close()
        try:
            ok = await measure(urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}")), redis_url, args)
        finally:
            conn = await asyncpg.connect(admin_url)
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await conn.close()
    print(f"overall   every page p95 < {TARGET_MS:.0f} ms: {'PASS' if ok else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
