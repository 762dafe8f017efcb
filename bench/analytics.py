"""Bench: the analytics recompute of N users, database fetch and writes included.

    .venv/bin/python bench/analytics.py [--quick] [--users N] [--workers N] [--batch N] [--single N]
        [--database-url URL]

Each user has one simulator connection, one completed sync run for the last day and 30 metrics ×
90 daily readings in ``metrics``, with each metric's usual level and spread.  Ours is the
analytics actor's own code, ``pipeline.analytics.analyse_runs``, called on ``--batch`` runs at a
time (100, as the reconciler's ``analyse_many`` messages carry them): one query for the runs, one
for their users' 90 days as packed binary numbers per user and metric (times and values, each
metric one bytea of each), every engine on each user (aggregates, correlations with q ≤ 0.05
kept, scores, clinical and baseline anomalies, as ``analyse``; ``analyse_many`` runs the daily
aggregates, the correlations and the scores of the batch's users together), then one transaction
that writes what the actor writes, a statement per kind of row: the window's daily stats, the
correlations, the scores and CGM summaries, ``score.updated``, the alerts with their events, and
the runs marked analysed.  After the timed run, ``--single`` more users (200) go one run a call,
the path of an analytics message that finds its run alone, for the per-user comparison.

The baseline, measured in the same run on the same users after ours, is the seed's way of
correlating: one ``scipy.stats.spearmanr`` call per user on the same 90 × 30 matrix of daily
values (correlations only).  "analyse" is the time in the engines, all CPU: numpy, and the
per-day rules in Python; the bench holds it against the numpy target.  "fetch" and "store"
include waiting for PostgreSQL.

Users are split across ``--workers`` processes (default: one per core), each with its own pool
and one BLAS thread.  Wall time runs from the first worker's first fetch to the last worker's
last write, so spawning, imports and the baseline stay out.  The targets are for 10,000 users; a
run of another size is projected to 10,000 linearly.  The data is generated with numpy and
loaded by binary COPY, with the table's indexes built after the load.  PostgreSQL comes from
``--database-url`` or CAREBEACON_BENCH_DATABASE_URL, else the embedded server; the work happens
in a fresh ``cb_bench_<hex>`` database dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from servers import create_database, drop_database, postgres  # noqa: E402

from db.pool import create_pool  # noqa: E402
from pipeline.analytics import Phases, analyse_runs  # noqa: E402
from pipeline.analytics.analysis import Analysis  # noqa: E402
from pipeline.vocabulary import PLAUSIBLE, UNITS  # noqa: E402

DAYS = 90
NAMES = [*UNITS, *(f"derived_{i}" for i in range(30 - len(UNITS)))][:30]
# Each metric's usual level and day-to-day spread (the simulator's where it has one); a derived
# metric is a 0-100 style index.
LEVELS: dict[str, tuple[float, float]] = {
    "steps": (8200, 2500), "active_energy": (480, 120), "resting_heart_rate": (62, 3), "heart_rate": (74, 6),
    "hrv_rmssd": (45, 8), "sleep_duration": (445, 40), "sleep_efficiency": (88, 4), "sleep_deep": (80, 15),
    "sleep_rem": (95, 18), "spo2": (97, 0.8), "respiratory_rate": (14.5, 1), "skin_temp_deviation": (0, 0.2),
    "body_temperature": (36.6, 0.15), "weight": (78, 0.4), "blood_pressure_systolic": (122, 7),
    "blood_pressure_diastolic": (79, 5), "glucose": (102, 12), "vo2max": (42, 1), "recovery_score": (65, 12),
    "strain": (11, 3),
}  # fmt: skip
TARGET_TOTAL_S, TARGET_NUMPY_S = 30.0, 3.0  # for TARGET_USERS; a run of another size is scaled to it
TARGET_USERS = 10_000
END = datetime(2026, 11, 1, 7, tzinfo=UTC)
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
LOAD_CHUNK = 1_500_000  # rows per COPY chunk, ~110 MB


@dataclass(frozen=True)
class Result:
    users: int
    fetch_s: float
    analyse_s: float
    store_s: float
    spearmanr_s: float
    single: Phases  # the runs analysed one a call, as one message of the actor
    single_users: int
    wall_s: float = 0.0
    started: float = 0.0  # time.time() around the worker's loop: spawning and imports stay out
    ended: float = 0.0


def copy_rows(users: int, days: range, rng: np.random.Generator) -> memoryview:
    """Users 1..``users``' readings on ``days`` (indices into the 90) as PostgreSQL binary COPY
    tuples (without the file header), with no Python object per row: one numpy record per user and
    day holds its 30 rows.  Day by day, as daily syncs write them: a user's readings lie on ~90
    pages of the table, not side by side."""
    fields: list[tuple[str, str]] = []
    for m, name in enumerate(NAMES):
        metric, unit = name.encode(), UNITS.get(name, "score").encode()
        fields += [(f"n{m}", ">i2"), (f"lu{m}", ">i4"), (f"user{m}", ">i8"), (f"lp{m}", ">i4"), (f"p{m}", "S9"),
                   (f"lm{m}", ">i4"), (f"m{m}", f"S{len(metric)}"), (f"lt{m}", ">i4"), (f"t{m}", ">i8"),
                   (f"lv{m}", ">i4"), (f"v{m}", ">f8"), (f"lun{m}", ">i4"), (f"un{m}", f"S{len(unit)}")]  # fmt: skip
    row = np.dtype(fields)
    template = np.zeros((), dtype=row)  # what every user-day shares: field counts, lengths, texts
    for m, name in enumerate(NAMES):
        metric, unit = name.encode(), UNITS.get(name, "score").encode()
        template[f"n{m}"] = 6
        template[f"lu{m}"] = template[f"lt{m}"] = template[f"lv{m}"] = 8
        template[f"lp{m}"], template[f"p{m}"] = 9, b"simulator"
        template[f"lm{m}"], template[f"m{m}"] = len(metric), metric
        template[f"lun{m}"], template[f"un{m}"] = len(unit), unit
    out = np.tile(np.frombuffer(template.tobytes(), np.uint8), len(days) * users).view(row).reshape(len(days), users)
    first = (END - timedelta(days=DAYS - 1) - PG_EPOCH) // timedelta(microseconds=1)
    micros = first + np.arange(days.start, days.stop, dtype=np.int64) * 86_400_000_000
    levels = np.array([LEVELS.get(name, (60.0, 8.0)) for name in NAMES])
    values = rng.normal(levels[:, 0], levels[:, 1], size=(len(days), users, len(NAMES))).round(2)
    # Ingest refuses what a body cannot produce (negative steps, say): so does the generator.
    values = values.clip(*np.array([PLAUSIBLE.get(name, (-np.inf, np.inf)) for name in NAMES]).T)
    for m in range(len(NAMES)):
        out[f"user{m}"] = np.arange(1, users + 1)[None, :]
        out[f"t{m}"] = micros[:, None]
        out[f"v{m}"] = values[:, :, m]
    return out.data


COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
COPY_TRAILER = b"\xff\xff"


def work(database_url: str, run_ids: list[int], single_ids: list[int], batch: int, barrier: Any) -> Result:
    return asyncio.run(_work(database_url, run_ids, single_ids, batch, barrier))


async def _work(database_url: str, run_ids: list[int], single_ids: list[int], batch: int, barrier: Any) -> Result:
    from scipy.stats import spearmanr

    pool = await create_pool(database_url, max_size=2)
    phases, single = Phases(), Phases()
    matrices: list[npt.NDArray[np.float64]] = []
    try:
        await pool.fetchval("SELECT 1")  # the connection is up before the clock starts
        barrier.wait()
        started = time.time()
        for first in range(0, len(run_ids), batch):
            outcomes = await analyse_runs(pool, run_ids[first : first + batch], phases)
            matrices += [_daily_matrix(o.analysis) for o in outcomes if o is not None and o.analysis is not None]
        ended = time.time()
        barrier.wait()  # then the actor's own path, on other users: one run a call
        for run_id in single_ids:
            await analyse_runs(pool, [run_id], single)
    except BaseException:
        barrier.abort()  # the other workers stop waiting for this one
        raise
    finally:
        await pool.close()
    barrier.wait()  # the baseline runs once every worker is done with ours
    t0 = time.perf_counter()
    for matrix in matrices:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spearmanr(matrix)
    baseline = time.perf_counter() - t0
    return Result(
        len(run_ids), phases.fetch, phases.analyse, phases.store, baseline, single, len(single_ids), started=started,
        ended=ended,
    )  # fmt: skip


def _daily_matrix(analysis: Analysis) -> npt.NDArray[np.float64]:
    """days × metrics: the daily values the correlation engine works on, NaN where a day is missing."""
    end = np.datetime64(analysis.day, "D")
    means = analysis.daily.means
    return np.column_stack([means[name].on_grid(end - (DAYS - 1), end) for name in sorted(means)])


async def prepare(admin_url: str, users: int) -> tuple[str, list[int]]:
    """A fresh database with ``users`` users, their readings and one completed run each."""
    url = await create_database(admin_url)
    conn = await asyncpg.connect(url)
    try:
        tenant = await conn.fetchval("INSERT INTO tenants (slug, name) VALUES ('bench', 'Bench') RETURNING id")
        await conn.execute(
            "INSERT INTO users (id, tenant_id, external_id, display_name)"
            " SELECT g, $1, 'u' || g, 'User ' || g FROM generate_series(1, $2) g",
            tenant,
            users,
        )
        await conn.execute(
            "INSERT INTO connections (id, user_id, provider) SELECT g, g, 'simulator' FROM generate_series(1, $1) g",
            users,
        )
        run_ids = await conn.fetch(
            "INSERT INTO sync_runs (connection_id, trigger, status, window_start, window_end, started_at,"
            " finished_at) SELECT g, 'daily', 'completed', $2::timestamptz - interval '1 day', $2, $2, $2"
            " FROM generate_series(1, $1) g RETURNING id",
            users,
            END,
        )
        await load_metrics(conn, users)
    finally:
        await conn.close()
    return url, sorted(r["id"] for r in run_ids)


async def load_metrics(conn: asyncpg.Connection, users: int) -> None:
    """Binary COPY into the bare table, then the indexes and keys back, as PostgreSQL's guide to
    populating a database advises: building an index once is far cheaper than growing it."""
    kept = await conn.fetch(
        "SELECT conname AS name, pg_get_constraintdef(oid) AS definition FROM pg_constraint"
        " WHERE conrelid = 'metrics'::regclass ORDER BY contype DESC"  # the primary key before the foreign keys
    )
    indexes = await conn.fetch(
        "SELECT indexname AS name, indexdef AS definition FROM pg_indexes WHERE tablename = 'metrics'"
        " AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = 'metrics'::regclass)"
    )
    for index in indexes:
        await conn.execute(f"DROP INDEX {index['name']}")
    for constraint in kept:
        await conn.execute(f"ALTER TABLE metrics DROP CONSTRAINT {constraint['name']}")
    rng = np.random.default_rng(1)

    async def chunks() -> Any:
        yield COPY_HEADER
        step = max(1, LOAD_CHUNK // (users * len(NAMES)))
        for first in range(0, DAYS, step):
            yield copy_rows(users, range(first, min(first + step, DAYS)), rng)
        yield COPY_TRAILER

    await conn.copy_to_table(
        "metrics", source=chunks(), columns=["user_id", "provider", "metric", "recorded_at", "value", "unit"],
        format="binary",
    )  # fmt: skip
    for constraint in kept:
        await conn.execute(f"ALTER TABLE metrics ADD CONSTRAINT {constraint['name']} {constraint['definition']}")
    for index in indexes:
        await conn.execute(index["definition"])
    await conn.execute("VACUUM ANALYZE metrics")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch", type=int, default=100, help="runs analysed per call (default 100)")
    parser.add_argument("--single", type=int, default=200, help="more users analysed one run a call (default 200)")
    parser.add_argument("--quick", action="store_true", help="50 users: only checks that the bench runs")
    parser.add_argument("--database-url", help="an existing server (needs CREATE DATABASE); default: embedded")
    args = parser.parse_args()
    users, single = (50, 10) if args.quick else (args.users, args.single)
    # One BLAS thread per worker process, inherited by the spawned workers.  The workers and
    # PostgreSQL already fill both cores; OpenBLAS's own threads then fight them for a 90 × 90
    # product, and correlate took ~27 ms a user instead of ~1 ms on the contended box.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    load = os.getloadavg()[0]  # before our own load: what else the box is doing
    with postgres(args.database_url) as admin_url:
        started = time.perf_counter()
        url, run_ids = asyncio.run(prepare(admin_url, users + single))
        loaded = time.perf_counter() - started
        try:
            ours, theirs = run_ids[:users], run_ids[users:]
            chunks = [(ours[i :: args.workers], theirs[i :: args.workers]) for i in range(args.workers)]
            context = multiprocessing.get_context("spawn")
            with context.Manager() as manager, context.Pool(args.workers) as pool:
                barrier = manager.Barrier(args.workers)
                parts = pool.starmap(work, [(url, mine, one, args.batch, barrier) for mine, one in chunks])
            # From the first worker's first fetch to the last one's last write.
            wall = max(p.ended for p in parts) - min(p.started for p in parts)
        finally:
            asyncio.run(drop_database(admin_url, url))
    total = Result(
        users,
        sum(p.fetch_s for p in parts),
        sum(p.analyse_s for p in parts),
        sum(p.store_s for p in parts),
        sum(p.spearmanr_s for p in parts),
        Phases(*(sum(getattr(p.single, f) for p in parts) for f in ("fetch", "analyse", "store"))),
        single,
        wall,
    )
    report(total, args.workers, args.batch, loaded, load)


def report(r: Result, workers: int, batch: int, loaded: float, load: float) -> None:
    scale = TARGET_USERS / r.users  # the targets are for 10,000 users: a smaller run is projected linearly
    numpy_s = r.analyse_s / workers
    print(f"date      {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"machine   nproc {os.cpu_count()}, {platform.processor() or platform.machine()}, {workers} worker process(es),"
        f" OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, load average {load:.2f} before the run"
    )
    print(f"data      {r.users:,} users × {len(NAMES)} metrics × {DAYS} days loaded in {loaded:.1f} s")
    print(f"batch     {batch} run(s) per analyse_runs call")
    for label, seconds in (("fetch", r.fetch_s), ("analyse", r.analyse_s), ("store", r.store_s)):
        print(f"{label:9} {seconds:8.2f} s across workers ({seconds / r.users * 1e3:.2f} ms/user)")
    if r.single_users:
        each = [seconds / r.single_users * 1e3 for seconds in (r.single.fetch, r.single.analyse, r.single.store)]
        print(f"one a call, {r.single_users} more users: fetch {each[0]:.2f}, analyse {each[1]:.2f},"
              f" store {each[2]:.2f} ms/user")  # fmt: skip
    print(f"spearmanr {r.spearmanr_s:8.2f} s across workers ({r.spearmanr_s / r.users * 1e3:.2f} ms/user), baseline")
    print(f"ratio     analyse / per-user spearmanr = {r.analyse_s / r.spearmanr_s:.2f}x the time")
    total_s = r.wall_s * scale
    total_ok, numpy_ok = total_s <= TARGET_TOTAL_S, numpy_s * scale <= TARGET_NUMPY_S
    print(f"total     {r.wall_s:8.2f} s wall for fetch + analyse + store, {total_s:.1f} s at {TARGET_USERS:,} users"
          f" (target ≤ {TARGET_TOTAL_S:g} s): {'PASS' if total_ok else 'MISS'}")  # fmt: skip
    print(f"analyse   {numpy_s:8.2f} s wall-equivalent, {numpy_s * scale:.1f} s at {TARGET_USERS:,} users"
          f" (target numpy ≤ {TARGET_NUMPY_S:g} s): {'PASS' if numpy_ok else 'MISS'}")  # fmt: skip
    print(result_line(r, workers, batch, loaded, load, total_s, numpy_s * scale))


def result_line(r: Result, workers: int, batch: int, loaded: float, load: float, total_s: float, numpy_s: float) -> str:
    """The run as one ``RESULT {json}`` line, for bench/all.py to render into docs/benchmarks.md."""
    per_user = {"analyse": r.analyse_s / r.users * 1e3, "spearmanr": r.spearmanr_s / r.users * 1e3}
    parts = ", ".join(
        f"{label} {seconds / r.users * 1e3:.2f} ms"
        for label, seconds in (("fetch", r.fetch_s), ("analyse", r.analyse_s), ("store", r.store_s))
    )
    # Batching changes the database work only: the engines run once per user either way.
    batched = (r.fetch_s + r.store_s) / r.users * 1e3
    one = (r.single.fetch + r.single.store) / max(r.single_users, 1) * 1e3
    single = ", ".join(
        f"{label} {seconds / max(r.single_users, 1) * 1e3:.2f} ms"
        for label, seconds in (("fetch", r.single.fetch), ("analyse", r.single.analyse), ("store", r.single.store))
    )
    rows = [
        {
            "case": f"wall time, fetch + analyse + store, at {TARGET_USERS:,} users",
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
            "case": f"per user, fetch + store: {batch} runs a call (the reconciler's batches) against one a call",
            "baseline": f"{one:.2f} ms",
            "ours": f"{batched:.2f} ms",
            "ratio": f"{batched / one:.2f}x the time" if r.single_users else "",
            "target": "",
            "result": "",
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
            "size": f"{r.users:,} users × {len(NAMES)} metrics × {DAYS} days, {batch} runs per call,"
            f" projected to {TARGET_USERS:,}",
            "rows": rows,
            "notes": [
                f"The data ({r.users + r.single_users:,} users) was generated and loaded in {loaded:.0f} s.",
                f"Per user, {batch} runs a call, summed over the workers: {parts}.",
                f"Per user, one run a call ({r.single_users:,} more users, after the timed run): {single}.",
            ],
        },
        ensure_ascii=False,
    )


if __name__ == "__main__":
    main()
