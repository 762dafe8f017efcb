"""Bench: recompute every analytics engine for N users, database fetch included.

    .venv/bin/python bench/analytics.py [--quick] [--users N] [--workers N] [--batch N] [--database-url URL]

Each user has 30 metrics × 90 daily readings in ``metrics``.  Ours: fetch the 90 days of
``--batch`` users in one query, as arrays per user and metric (``db.metrics.latest_arrays``), and
run ``pipeline.analytics.analysis.analyse`` on each user's columns (aggregates, correlations
with q ≤ 0.05 kept, scores, clinical and baseline anomalies), as the analytics actor does.  The
baseline, measured in the same run on the same users, is the seed's way of correlating: one
``scipy.stats.spearmanr`` call per user on the same 90 × 30 matrix (correlations only).

Users are split across ``--workers`` processes (default: one per core), each with its own
connection and one BLAS thread.  Wall time runs from the first worker's first fetch to the last
worker's last user, so spawning and imports stay out.  The targets are for 10,000 users; a run of
another size is projected to 10,000 linearly.  PostgreSQL comes from ``--database-url`` or
CAREBEACON_BENCH_DATABASE_URL, else the embedded server; the work happens in a fresh
``cb_bench_<hex>`` database dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
from pipeline.analytics.columns import ReadingColumns  # noqa: E402
from pipeline.vocabulary import UNITS  # noqa: E402

DAYS = 90
NAMES = [*UNITS, *(f"derived_{i}" for i in range(30 - len(UNITS)))][:30]
TARGET_TOTAL_S, TARGET_NUMPY_S = 30.0, 3.0  # for TARGET_USERS; a run of another size is scaled to it
TARGET_USERS = 10_000
END = datetime(2026, 11, 1, 7, tzinfo=UTC)


@dataclass(frozen=True)
class Result:
    users: int
    fetch_s: float
    analyse_s: float
    spearmanr_s: float
    wall_s: float = 0.0
    started: float = 0.0  # time.time() around the worker's loop: spawning and imports stay out
    ended: float = 0.0


def rows(user_ids: range) -> Iterator[tuple[object, ...]]:
    rng = np.random.default_rng(1)
    days = [END - timedelta(days=DAYS - 1 - d) for d in range(DAYS)]
    for user_id in user_ids:
        values = rng.normal(60, 8, size=(DAYS, len(NAMES))).round(2)
        for d, at in enumerate(days):
            for m, name in enumerate(NAMES):
                yield (user_id, "simulator", name, at, float(values[d, m]), UNITS.get(name, "score"))


def work(database_url: str, user_ids: list[int], batch: int) -> Result:
    return asyncio.run(_work(database_url, user_ids, batch))


async def _work(database_url: str, user_ids: list[int], batch: int) -> Result:
    from scipy.stats import spearmanr

    conn = await asyncpg.connect(database_url)
    fetch = compute = baseline = 0.0
    since = END - timedelta(days=DAYS + 1)
    started = time.time()
    try:
        for first in range(0, len(user_ids), batch):
            t0 = time.perf_counter()
            found = await metrics.latest_arrays(conn, user_ids[first : first + batch], since)
            fetch += time.perf_counter() - t0
            for arrays in found.values():
                t0 = time.perf_counter()
                analyse(ReadingColumns.from_metric_arrays(arrays), "UTC", today=None, max_q=0.05)
                t1 = time.perf_counter()
                matrix = np.column_stack([arrays[name].values for name in sorted(arrays)])  # days × metrics
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    spearmanr(matrix)
                t2 = time.perf_counter()
                compute, baseline = compute + t1 - t0, baseline + t2 - t1
    finally:
        await conn.close()
    return Result(len(user_ids), fetch, compute, baseline, started=started, ended=time.time())


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
    parser.add_argument("--batch", type=int, default=100, help="users fetched per query (default 100)")
    parser.add_argument("--quick", action="store_true", help="50 users: only checks that the bench runs")
    parser.add_argument("--database-url", help="an existing server (needs CREATE DATABASE); default: embedded")
    args = parser.parse_args()
    users = 50 if args.quick else args.users
    # One BLAS thread per worker process, inherited by the spawned workers.  The workers and
    # PostgreSQL already fill both cores; OpenBLAS's own threads then fight them for a 90 × 90
    # product, and correlate took ~27 ms a user instead of ~1 ms on the contended box.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    load = os.getloadavg()[0]  # before our own load: what else the box is doing
    with postgres(args.database_url) as admin_url:
        started = time.perf_counter()
        url = asyncio.run(prepare(admin_url, users))
        loaded = time.perf_counter() - started
        try:
            ids = list(range(1, users + 1))
            chunks = [ids[i :: args.workers] for i in range(args.workers)]
            with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
                parts = pool.starmap(work, [(url, chunk, args.batch) for chunk in chunks])
            # From the first worker's first fetch to the last one's last user.
            wall = max(p.ended for p in parts) - min(p.started for p in parts)
        finally:
            asyncio.run(drop(admin_url, url))
    total = Result(
        users, sum(p.fetch_s for p in parts), sum(p.analyse_s for p in parts), sum(p.spearmanr_s for p in parts), wall
    )
    report(total, args.workers, loaded, load)


def report(r: Result, workers: int, loaded: float, load: float) -> None:
    ours = r.wall_s * (r.fetch_s + r.analyse_s) / (r.fetch_s + r.analyse_s + r.spearmanr_s)
    scale = TARGET_USERS / r.users  # the targets are for 10,000 users: a smaller run is projected linearly
    numpy_s = r.analyse_s / workers
    print(f"date      {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"machine   nproc {os.cpu_count()}, {platform.processor() or platform.machine()}, {workers} worker process(es),"
        f" OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, load average {load:.2f} before the run"
    )
    print(f"data      {r.users:,} users × {len(NAMES)} metrics × {DAYS} days loaded in {loaded:.1f} s")
    print(f"fetch     {r.fetch_s:8.2f} s CPU+wait across workers ({r.fetch_s / r.users * 1e3:.2f} ms/user)")
    print(f"analyse   {r.analyse_s:8.2f} s across workers ({r.analyse_s / r.users * 1e3:.2f} ms/user)")
    print(f"spearmanr {r.spearmanr_s:8.2f} s across workers ({r.spearmanr_s / r.users * 1e3:.2f} ms/user), baseline")
    print(f"ratio     analyse / per-user spearmanr = {r.analyse_s / r.spearmanr_s:.2f}x the time")
    total_ok, numpy_ok = ours * scale <= TARGET_TOTAL_S, numpy_s * scale <= TARGET_NUMPY_S
    print(f"total     {ours:8.2f} s wall for fetch + analyse, {ours * scale:.1f} s at {TARGET_USERS:,} users"
          f" (target ≤ {TARGET_TOTAL_S:g} s): {'PASS' if total_ok else 'MISS'}")  # fmt: skip
    print(f"analyse   {numpy_s:8.2f} s wall-equivalent, {numpy_s * scale:.1f} s at {TARGET_USERS:,} users"
          f" (target numpy ≤ {TARGET_NUMPY_S:g} s): {'PASS' if numpy_ok else 'MISS'}")  # fmt: skip
    print(result_line(r, workers, load, ours * scale, numpy_s * scale))


def result_line(r: Result, workers: int, load: float, total_s: float, numpy_s: float) -> str:
    """The run as one ``RESULT {json}`` line, for bench/all.py to render into docs/benchmarks.md."""
    per_user = {"analyse": r.analyse_s / r.users * 1e3, "spearmanr": r.spearmanr_s / r.users * 1e3}
    rows = [
        {
            "case": f"wall time, fetch + analyse, at {TARGET_USERS:,} users",
            "baseline": "",
            "ours": f"{total_s:.1f} s",
            "ratio": "",
            "target": f"≤ {TARGET_TOTAL_S:g} s",
            "result": "PASS" if total_s <= TARGET_TOTAL_S else "MISS",
        },
        {
            "case": f"analyse (every engine), at {TARGET_USERS:,} users",
            "baseline": "",
            "ours": f"{numpy_s:.1f} s",
            "ratio": "",
            "target": f"numpy ≤ {TARGET_NUMPY_S:g} s",
            "result": "PASS" if numpy_s <= TARGET_NUMPY_S else "MISS",
        },
        {
            "case": "per user: every engine against one scipy spearmanr",
            "baseline": f"{per_user['spearmanr']:.2f} ms",
            "ours": f"{per_user['analyse']:.2f} ms",
            "ratio": f"{per_user['analyse'] / per_user['spearmanr']:.2f}x the time",
            "target": "",
            "result": "",
        },
    ]
    return "RESULT " + json.dumps(
        {
            "bench": "analytics",
            "title": "Analytics recompute",
            "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            "machine": f"nproc {os.cpu_count()}, {platform.processor() or platform.machine()}, {workers} worker(s),"
            f" load average {load:.2f} before the run",
            "size": f"{r.users:,} users × {len(NAMES)} metrics × {DAYS} days, projected to {TARGET_USERS:,}",
            "rows": rows,
        },
        ensure_ascii=False,
    )


if __name__ == "__main__":
    main()
