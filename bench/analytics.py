"""Bench: recompute every analytics engine for N users, database fetch included.

    .venv/bin/python bench/analytics.py [--quick] [--users N] [--workers N] [--database-url URL]

Each user has 30 metrics × 90 daily readings in ``metrics``.  Ours: per user, fetch the 90 days
(``db.metrics.latest``) and run ``pipeline.analytics.analysis.analyse`` (aggregates, correlations
with q ≤ 0.05 kept, scores, clinical and baseline anomalies), as the analytics actor does.  The
baseline, measured in the same run on the same users, is the seed's way of correlating: one
``scipy.stats.spearmanr`` call per user on the same 90 × 30 matrix (correlations only).

Users are split across ``--workers`` processes (default: one per core), each with its own
connection.  PostgreSQL comes from ``--database-url`` or CAREBEACON_BENCH_DATABASE_URL, else the
embedded server; the work happens in a fresh ``cb_bench_<hex>`` database dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import secrets
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from servers import postgres  # noqa: E402

from db import metrics  # noqa: E402
from db.migrate import migrate  # noqa: E402
from pipeline.analytics.analysis import analyse  # noqa: E402
from pipeline.vocabulary import UNITS  # noqa: E402

DAYS = 90
NAMES = [*UNITS, *(f"derived_{i}" for i in range(30 - len(UNITS)))][:30]
TARGET_TOTAL_S, TARGET_NUMPY_S = 30.0, 3.0
END = datetime(2026, 11, 1, 7, tzinfo=UTC)


@dataclass(frozen=True)
class Result:
    users: int
    fetch_s: float
    analyse_s: float
    spearmanr_s: float
    wall_s: float = 0.0


def rows(user_ids: range) -> Iterator[tuple[object, ...]]:
    rng = np.random.default_rng(1)
    days = [END - timedelta(days=DAYS - 1 - d) for d in range(DAYS)]
    for user_id in user_ids:
        values = rng.normal(60, 8, size=(DAYS, len(NAMES))).round(2)
        for d, at in enumerate(days):
            for m, name in enumerate(NAMES):
                yield (user_id, "simulator", name, at, float(values[d, m]), UNITS.get(name, "score"))


def work(database_url: str, user_ids: list[int]) -> Result:
    return asyncio.run(_work(database_url, user_ids))


async def _work(database_url: str, user_ids: list[int]) -> Result:
    from scipy.stats import spearmanr

    conn = await asyncpg.connect(database_url)
    fetch = compute = baseline = 0.0
    since = END - timedelta(days=DAYS + 1)
    try:
        for user_id in user_ids:
            t0 = time.perf_counter()
            readings = await metrics.latest(conn, user_id, since)
            t1 = time.perf_counter()
            analyse(readings, "UTC", today=None, max_q=0.05)
            t2 = time.perf_counter()
            matrix = np.array([r.value for r in readings]).reshape(DAYS, len(NAMES))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                spearmanr(matrix)
            t3 = time.perf_counter()
            fetch, compute, baseline = fetch + t1 - t0, compute + t2 - t1, baseline + t3 - t2
    finally:
        await conn.close()
    return Result(len(user_ids), fetch, compute, baseline)


async def prepare(admin_url: str, users: int) -> str:
    name = f"cb_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    url = urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        tenant = await conn.fetchval("INSERT INTO tenants (slug, name) VALUES ('bench', 'Bench') RETURNING id")
        await conn.execute(
            "INSERT INTO users (id, tenant_id, external_id, display_name)"
            " SELECT g, $1, 'u' || g, 'User ' || g FROM generate_series(1, $2) g",
            tenant,
            users,
        )
        await conn.copy_records_to_table(
            "metrics",
            records=rows(range(1, users + 1)),
            columns=["user_id", "provider", "metric", "recorded_at", "value", "unit"],
        )
        await conn.execute("VACUUM ANALYZE metrics")
    finally:
        await conn.close()
    return url


async def drop(admin_url: str, url: str) -> None:
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f"DROP DATABASE IF EXISTS {urlsplit(url).path.lstrip('/')} WITH (FORCE)")
    await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--quick", action="store_true", help="50 users: only checks that the bench runs")
    parser.add_argument("--database-url", help="an existing server (needs CREATE DATABASE); default: embedded")
    args = parser.parse_args()
    users = 50 if args.quick else args.users
    with postgres(args.database_url) as admin_url:
        started = time.perf_counter()
        url = asyncio.run(prepare(admin_url, users))
        loaded = time.perf_counter() - started
        try:
            ids = list(range(1, users + 1))
            chunks = [ids[i :: args.workers] for i in range(args.workers)]
            started = time.perf_counter()
            with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
                parts = pool.starmap(work, [(url, chunk) for chunk in chunks])
            wall = time.perf_counter() - started
        finally:
            asyncio.run(drop(admin_url, url))
    total = Result(
        users, sum(p.fetch_s for p in parts), sum(p.analyse_s for p in parts), sum(p.spearmanr_s for p in parts), wall
    )
    report(total, args.workers, loaded)


def report(r: Result, workers: int, loaded: float) -> None:
    ours = r.wall_s * (r.fetch_s + r.analyse_s) / (r.fetch_s + r.analyse_s + r.spearmanr_s)
    print(f"date      {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"machine   nproc {os.cpu_count()}, {platform.processor() or platform.machine()}, {workers} worker process(es)"
    )
    print(f"data      {r.users:,} users × {len(NAMES)} metrics × {DAYS} days loaded in {loaded:.1f} s")
    print(f"fetch     {r.fetch_s:8.2f} s CPU+wait across workers ({r.fetch_s / r.users * 1e3:.2f} ms/user)")
    print(f"analyse   {r.analyse_s:8.2f} s across workers ({r.analyse_s / r.users * 1e3:.2f} ms/user)")
    print(f"spearmanr {r.spearmanr_s:8.2f} s across workers ({r.spearmanr_s / r.users * 1e3:.2f} ms/user), baseline")
    print(f"ratio     analyse / per-user spearmanr = {r.analyse_s / r.spearmanr_s:.2f}x the time")
    print(f"total     {ours:8.2f} s wall for fetch + analyse (target ≤ {TARGET_TOTAL_S:g} s): "
          f"{'PASS' if ours <= TARGET_TOTAL_S else 'MISS'}")  # fmt: skip
    print(f"analyse   {r.analyse_s / workers:8.2f} s wall-equivalent (target numpy ≤ {TARGET_NUMPY_S:g} s): "
          f"{'PASS' if r.analyse_s / workers <= TARGET_NUMPY_S else 'MISS'}")  # fmt: skip


if __name__ == "__main__":
    main()
