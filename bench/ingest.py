"""Bench: bulk ingest of a million readings, ours against the seed's method and plain COPY, same run.

    .venv/bin/python bench/ingest.py [--quick] [--users N] [--repeat N] [--batch N] [--connections N]
        [--database-url URL]

Three methods load the same 1,001,700 readings (371 users × 30 metrics × 90 days, day-major per
user as a provider streams them, each user with a connection as a sync writes them) into an
empty ``metrics`` table, then replay them unchanged:

* seed: what the seed platform did, a 500-row multi-VALUES ``INSERT … ON CONFLICT DO NOTHING``,
  each statement its own transaction;
* ceiling: ``copy_records_to_table`` straight into ``metrics``, 50,000 rows per call, not
  idempotent (first load only: a replay would be a unique violation);
* ours: ``db.metrics.upsert_many``, 50,000 rows per call, one transaction each: binary COPY into a
  session temp table (``ON COMMIT DELETE ROWS``), then one ``INSERT … SELECT`` that first locks
  the owning users and connections ``FOR KEY SHARE`` and counts inserted, updated and unchanged
  rows in the server.  A first load is a plain insert; otherwise it is ``ON CONFLICT DO UPDATE …
  WHERE value or unit IS DISTINCT FROM``, which leaves an unchanged row alone.

Every method runs on ``--connections`` connections at once (default 2, one per core; production
runs 5 sync workers), each with its own share of the users.  In each repetition the methods
alternate; each one starts with ``TRUNCATE``, and its first load is followed by ``VACUUM
(ANALYZE)``.  A ``CHECKPOINT`` runs before each timed phase.  Seconds are wall time around the
method's calls, including building the parameters in Python; generating the rows is not timed.
The bench checks ours' counts (all inserted, then all unchanged) and every method's stored row
count.  It prints rows/s, ours/seed and ours/ceiling, and PASS or MISS against the targets.

What makes ours fast, each measured as the server's CPU per row (from /proc, for 299,700 readings
in 50,000-row calls; steadier than wall time on a shared box, though still ±15%):

* No foreign keys on ``metrics`` (migration 0017).  The per-row checks on ``users`` and
  ``connections`` took half of a first load: 18.0 µs a row as migrated before, 9.0 without them;
  plain COPY went from 12.4 to 4.9.  Each write locks its owners ``FOR KEY SHARE`` once per
  statement instead, and triggers on ``users`` and ``connections`` do what ``ON DELETE`` did, so
  an erase still removes every reading, also one written while it ran.
* One index.  The primary key leads with (user_id, recorded_at) and the separate time index went:
  9.0 to 6.0 µs a row, plain COPY 4.9 to 2.4.  A sync's day-major rows land next to each other.
* A first load skips ``ON CONFLICT``: when no staged user has a stored reading in the span staged
  for them (one index probe per user), a plain ``INSERT … SELECT`` runs.  Its statement took 167
  ms for 50,000 rows against 426 ms with ``ON CONFLICT`` (``EXPLAIN ANALYZE``), which probes each
  key before the insert and confirms it after.  A unique violation (a concurrent writer) starts
  the call again through ``ON CONFLICT``.
* Tried and dropped: leaving out rows equal to the stored ones before ``ON CONFLICT``, which
  locks each such row (a WAL record apiece): a replay's WAL fell from 169 to 20 bytes a row.  As
  an anti join Postgres hashed the whole table on every call (3.8 to 4.9 µs a row on replay, 4.4
  to 8.3 on first load).  As a nested loop of primary-key probes the statement alone took 78-127
  ms for 50,000 rows against 126-140 ms, but a whole replay call, with the check it needs (a key
  staged twice, the last time as stored, would keep the earlier row), was slower: 132-178k rows/s
  against 154-208k, four alternating runs each.
* ``synchronous_commit = off`` per transaction changed nothing
  measurable at 20 commits per million rows.  It would be safe for readings pulled from a
  provider, because the run's completion commits durably after them and WAL is flushed in
  order, so a crash can only lose readings of a run that is not complete and runs again; not
  for readings pushed to the API, which nobody sends twice.  The staging table is already one
  per connection, and its COPY costs 0.4-0.7 µs a row; the client spends 1.5-2 µs a row
  encoding binary COPY.

Then it measures both paths of ``db.metrics.upsert`` (unnest, staged) for one user's batch of 500
to 50,000 readings, on one connection, on the table the main run left behind, which is where
``STAGED_FROM`` comes from.

PostgreSQL comes from ``--database-url`` or CAREBEACON_BENCH_DATABASE_URL, else from the embedded
server in a temporary directory.  All work happens in a fresh ``cb_bench_<hex>`` database that is
dropped at the end, so the bench never touches anyone's data.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

# `python bench/ingest.py` puts bench/ on sys.path, not the checkout: add the checkout so we
# measure this tree's db/ even when the venv's editable install points elsewhere.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from servers import postgres  # noqa: E402

from db import metrics, tenants  # noqa: E402
from db.metrics import MetricRow, Reading, UpsertCounts  # noqa: E402
from db.migrate import migrate  # noqa: E402
from pipeline.vocabulary import UNITS  # noqa: E402

METRICS, DAYS = 30, 90
FULL_USERS = 371  # x 30 metrics x 90 days = 1,001,700 readings
QUICK_ROWS = 50_000
SEED_BATCH = 500  # the seed streamed provider data into health_metrics 500 points at a time
OURS_BATCH = 50_000  # the reference's measured sweet spot for COPY staging (10k-50k)
PROVIDER = "simulator"
COLUMNS = list(MetricRow._fields)

# The targets for this 2-core machine.
FIRST_LOAD_TARGET, REPLAY_TARGET, OVER_SEED_TARGET = 200_000, 250_000, 2.0

# One connection per core: the seed, the ceiling and ours all get the same.
CONNECTIONS = 2

# One user's batch for the crossover of upsert()'s two paths; --quick stops at 5,000.
CROSSOVER_SIZES = (500, 1000, 2000, 5000, 10_000, 20_000, 50_000)

SCENARIOS = ("first load", "replay")
METHODS = ("seed", "ceiling", "ours")

Rows = list[MetricRow]
Method = Callable[[asyncpg.Connection, Rows, int], Awaitable[UpsertCounts | None]]
Shares = list[tuple[asyncpg.Connection, Rows]]  # each connection with its users' rows


def seed_insert(count: int) -> str:
    values = ", ".join(
        "(" + ", ".join(f"${row * len(COLUMNS) + col + 1}" for col in range(len(COLUMNS))) + ")" for row in range(count)
    )
    return (
        f"INSERT INTO metrics ({', '.join(COLUMNS)}) VALUES {values}"
        " ON CONFLICT (user_id, provider, metric, recorded_at) DO NOTHING"
    )


async def seed(conn: asyncpg.Connection, data: Rows, batch: int) -> None:
    """The seed's method: one multi-VALUES statement per 500 rows, each its own transaction.

    It reports nothing back, so the bench checks the stored row count instead.
    """
    full = seed_insert(SEED_BATCH)
    for start in range(0, len(data), SEED_BATCH):
        chunk = data[start : start + SEED_BATCH]
        sql = full if len(chunk) == SEED_BATCH else seed_insert(len(chunk))
        await conn.execute(sql, *[value for row in chunk for value in row])


async def ceiling(conn: asyncpg.Connection, data: Rows, batch: int) -> None:
    """Binary COPY straight into the table: what the disk and indexes allow, with no idempotency."""
    for start in range(0, len(data), batch):
        await conn.copy_records_to_table("metrics", records=data[start : start + batch], columns=COLUMNS)


async def ours(conn: asyncpg.Connection, data: Rows, batch: int) -> UpsertCounts:
    counts = UpsertCounts()
    for start in range(0, len(data), batch):
        counts += await metrics.upsert_many(conn, data[start : start + batch])
    return counts


RUN: dict[str, Method] = {"seed": seed, "ceiling": ceiling, "ours": ours}


def metric_names() -> list[tuple[str, str]]:
    """The real vocabulary (20 names), padded with made-up ones so keys are as wide as real ones."""
    names = list(UNITS.items())
    names += [(f"{name}_avg", unit) for name, unit in names[: METRICS - len(names)]]
    return names[:METRICS]


def generate(user_ids: Sequence[int], days: int = DAYS) -> Rows:
    """Day-major per user, the order a provider streams a sync."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    names = metric_names()
    return [
        MetricRow(
            user_id, PROVIDER, metric, start + timedelta(days=day), float((user_id * 7919 + day * 31 + m) % 9973), unit
        )
        for user_id in user_ids
        for day in range(days)
        for m, (metric, unit) in enumerate(names)
    ]


async def settle(conn: asyncpg.Connection) -> None:
    """Flush dirty pages now, so one phase's writes are not paid for by the next phase's timing."""
    # A non-superuser URL cannot: run without, the spread just gets wider.
    with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
        await conn.execute("CHECKPOINT")


@dataclass
class Result:
    rows: int
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rate(self) -> float:
        return self.rows / self.median


Results = dict[tuple[str, str], Result]  # (scenario, method) -> timings


def shares(conns: Sequence[asyncpg.Connection], data: Rows) -> Shares:
    """Split ``data`` by user, about evenly, one share per connection, as sync workers split users."""
    owners = list(dict.fromkeys(row.user_id for row in data))
    per = math.ceil(len(owners) / len(conns))
    mine = {user_id: i // per for i, user_id in enumerate(owners)}
    split: list[Rows] = [[] for _ in conns]
    for row in data:
        split[mine[row.user_id]].append(row)
    return list(zip(conns, split, strict=True))


async def at_once(method: Method, work: Shares, batch: int) -> UpsertCounts | None:
    """Run ``method`` on every connection's share concurrently; their counts added up."""
    found = await asyncio.gather(*(method(conn, rows, batch) for conn, rows in work))
    counts = [c for c in found if c is not None]
    return sum(counts, UpsertCounts()) if counts else None


async def run(conn: asyncpg.Connection, work: Shares, repeat: int, batch: int) -> Results:
    total = sum(len(rows) for _, rows in work)
    expected = {SCENARIOS[0]: UpsertCounts(inserted=total), SCENARIOS[1]: UpsertCounts(unchanged=total)}
    results: Results = {}
    # Methods alternate within each repetition, so drift on a shared box hits all of them alike.
    for _ in range(repeat):
        for name, method in RUN.items():
            await conn.execute("TRUNCATE metrics")
            for scenario in SCENARIOS:
                if name == "ceiling" and scenario == "replay":
                    continue  # plain COPY has no ON CONFLICT: a replay is a unique violation
                await settle(conn)
                began = time.perf_counter()
                counts = await at_once(method, work, batch)
                results.setdefault((scenario, name), Result(total)).seconds.append(time.perf_counter() - began)
                if counts is not None and counts != expected[scenario]:
                    raise SystemExit(f"{name}, {scenario}: counted {counts}, expected {expected[scenario]}")
                stored = await conn.fetchval("SELECT count(*) FROM metrics")
                if stored != total:
                    raise SystemExit(f"{name}, {scenario}: {stored:,} rows stored, expected {total:,}")
                if scenario == SCENARIOS[0]:
                    # The replay then meets a settled table (hint bits set, statistics known), as in production.
                    await conn.execute("VACUUM (ANALYZE) metrics")
    return results


@dataclass
class Crossover:
    size: int
    seconds: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # (scenario, path) -> per call

    def rate(self, scenario: str, path: str) -> float:
        return self.size / statistics.median(self.seconds[scenario, path])


async def crossover(conn: asyncpg.Connection, tenant_id: int, sizes: Sequence[int], repeat: int) -> list[Crossover]:
    """``db.metrics.upsert`` for one user's batch, each path forced by moving ``STAGED_FROM``.

    Runs after the main bench, so the table already holds a million rows, as in production.
    Each call gets a new user: the first load meets no rows of its own, then the replay all.
    """
    found = []
    forced = {"unnest": sys.maxsize, "staged": 0}
    saved = metrics.STAGED_FROM
    try:
        for size in sizes:
            point = Crossover(size)
            for rep in range(repeat):
                for path, threshold in forced.items():
                    user_id = await tenants.ensure_user(conn, tenant_id, f"x-{size}-{rep}-{path}", "Crossover")
                    rows = generate([user_id], days=math.ceil(size / METRICS))[:size]
                    readings = [Reading(r.metric, r.recorded_at, r.value, r.unit) for r in rows]
                    metrics.STAGED_FROM = threshold
                    for scenario, want in zip(
                        SCENARIOS, (UpsertCounts(inserted=size), UpsertCounts(unchanged=size)), strict=True
                    ):
                        began = time.perf_counter()
                        counts = await metrics.upsert(conn, user_id, PROVIDER, None, readings)
                        point.seconds.setdefault((scenario, path), []).append(time.perf_counter() - began)
                        if counts != want:
                            raise SystemExit(f"crossover {path} {size}: counted {counts}, expected {want}")
            found.append(point)
    finally:
        metrics.STAGED_FROM = saved
    return found


def machine(server: str) -> list[str]:
    cpu = "unknown"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return [
        f"date      {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"machine   nproc {os.cpu_count()}, {cpu}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"software  Python {platform.python_version()}, asyncpg {asyncpg.__version__}",
        f"postgres  {server}",
    ]


ROW = "{:<12}{:<9}{:>11,}{:>9.2f}{:>11,.0f}{:>11}{:>13}  {}"


def report(results: Results, repeat: int) -> list[str]:
    head = f"{'scenario':<12}{'method':<9}{'rows':>11}{'seconds':>9}{'rows/s':>11}{'ours/seed':>11}{'ours/ceiling':>13}"
    lines = [f"{head}  runs (s)"]
    ceiling_rate = results["first load", "ceiling"].rate
    for scenario in SCENARIOS:
        for name in METHODS:
            if (scenario, name) not in results:
                continue
            r = results[scenario, name]
            over_seed = over_ceiling = ""
            if name == "ours":
                over_seed = f"{r.rate / results[scenario, 'seed'].rate:.2f}x"
                over_ceiling = f"{r.rate / ceiling_rate:.2f}x" if scenario == "first load" else ""
            runs = " ".join(f"{s:.2f}" for s in r.seconds)
            lines.append(ROW.format(scenario, name, r.rows, r.median, r.rate, over_seed, over_ceiling, runs))
    lines.append(f"seconds: median of {repeat}; ratios compare rows/s (>1 = ours faster)")
    first, replay = results["first load", "ours"].rate, results["replay", "ours"].rate
    checks = [
        (f"ours, first load >= {FIRST_LOAD_TARGET:,} rows/s", first >= FIRST_LOAD_TARGET, f"{first:,.0f}"),
        (f"ours, replay >= {REPLAY_TARGET:,} rows/s", replay >= REPLAY_TARGET, f"{replay:,.0f}"),
    ]
    for scenario in SCENARIOS:
        ratio = results[scenario, "ours"].rate / results[scenario, "seed"].rate
        checks.append((f"ours >= {OVER_SEED_TARGET:g}x seed, {scenario}", ratio >= OVER_SEED_TARGET, f"{ratio:.2f}x"))
    lines += ["targets"] + [f"  {'PASS' if ok else 'MISS'}  {what}: {got}" for what, ok, got in checks]
    return lines


def report_crossover(points: list[Crossover], repeat: int) -> list[str]:
    lines = [
        f"upsert() per call, one user, median of {repeat} (rows/s; staged/unnest >1 = staged faster);"
        f" STAGED_FROM is {metrics.STAGED_FROM:,}",
        f"{'rows':>6}{'first unnest':>14}{'staged':>10}{'ratio':>8}{'replay unnest':>15}{'staged':>10}{'ratio':>8}",
    ]
    for p in points:
        cells = []
        for scenario in SCENARIOS:
            unnest, staged = p.rate(scenario, "unnest"), p.rate(scenario, "staged")
            cells.append(
                f"{unnest:>{14 if scenario == 'first load' else 15},.0f}{staged:>10,.0f}{staged / unnest:>7.2f}x"
            )
        lines.append(f"{p.size:>6,}" + "".join(cells))
    return lines


async def measure(server_url: str, args: argparse.Namespace) -> str:
    """Run the bench in a database of its own on ``server_url``; returns the printed report."""
    name = f"cb_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f"CREATE DATABASE {name}")
    url = urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    workers: list[asyncpg.Connection] = []
    try:
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
            version = await conn.fetchval("SHOW server_version")
            # Printed because they move ingest numbers more than anything else in postgresql.conf.
            settings = await conn.fetch(
                "SELECT name, current_setting(name) AS value FROM unnest($1::text[]) AS name",
                ["shared_buffers", "synchronous_commit", "max_wal_size"],
            )
            # Taken now, so the date and load average describe the start of the run.
            header = machine(f"{version} ({', '.join(f'{s[0]} {s[1]}' for s in settings)})")
            tenant_id = await tenants.ensure_tenant(conn, "bench", "Bench")
            user_ids = [
                await tenants.ensure_user(conn, tenant_id, f"bench-{i}", f"Bench {i}") for i in range(args.users)
            ]
            links = [
                await conn.fetchval(
                    "INSERT INTO connections (user_id, provider) VALUES ($1, $2) RETURNING id", user_id, PROVIDER
                )
                for user_id in user_ids
            ]
            link = dict(zip(user_ids, links, strict=True))
            data = [row._replace(connection_id=link[row.user_id]) for row in generate(user_ids)]
            workers = [await asyncpg.connect(url) for _ in range(args.connections)]
            results = await run(conn, shares(workers, data), args.repeat, args.batch)
            sizes = [size for size in CROSSOVER_SIZES if size <= 5000 or not args.quick]
            points = await crossover(conn, tenant_id, sizes, args.crossover_repeat)
        finally:
            for worker in workers:
                await worker.close()
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
    described = (
        f"data      {len(data):,} readings = {args.users} users x {METRICS} metrics x {DAYS} days;"
        f" seed {SEED_BATCH} rows per statement, ceiling and ours {args.batch:,} per call;"
        f" {args.connections} connection(s) at once"
    )
    ended = f"load      at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    return "\n".join(
        [
            *header,
            described,
            ended,
            *report(results, args.repeat),
            *report_crossover(points, args.crossover_repeat),
            result_line(results, points, args, header),
        ]
    )


async def main(args: argparse.Namespace) -> None:
    with postgres(args.database_url) as url:
        text = await measure(url, args)
    print(text)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--database-url", help="an existing server (needs CREATE DATABASE); default: embedded")
    add("--users", type=int, help=f"default {FULL_USERS} (1,001,700 readings); about {QUICK_ROWS:,} with --quick")
    add("--repeat", type=int, help="repetitions per measurement, median reported (default 3, 1 with --quick)")
    add(
        "--batch", type=int, default=OURS_BATCH, help=f"rows per call for ours and the ceiling (default {OURS_BATCH:,})"
    )
    add("--connections", type=int, default=CONNECTIONS, help=f"connections per method, at once (default {CONNECTIONS})")
    add("--quick", action="store_true", help="a small run that checks the bench still works")
    args = parser.parse_args(argv)
    args.users = args.users or (math.ceil(QUICK_ROWS / (METRICS * DAYS)) if args.quick else FULL_USERS)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.crossover_repeat = 3 if args.quick else 9
    return args


def result_line(results: Results, points: list[Crossover], args: argparse.Namespace, header: list[str]) -> str:
    """The run as one ``RESULT {json}`` line, for bench/all.py to render into docs/benchmarks.md."""
    rate = {key: f"{r.median:.2f} s ({r.rate / 1e3:.1f}k rows/s)" for key, r in results.items()}
    targets = {"first load": FIRST_LOAD_TARGET, "replay": REPLAY_TARGET}
    rows = []
    for scenario in SCENARIOS:
        ours_, seed_ = results[scenario, "ours"].rate, results[scenario, "seed"].rate
        ok = ours_ >= targets[scenario] and ours_ / seed_ >= OVER_SEED_TARGET
        rows.append(
            {
                "case": f"{scenario}, against the seed",
                "baseline": rate[scenario, "seed"],
                "ours": rate[scenario, "ours"],
                "ratio": f"{ours_ / seed_:.2f}x",
                "target": f"≥ {targets[scenario] / 1e3:.0f}k rows/s and ≥ {OVER_SEED_TARGET:g}x",
                "result": "PASS" if ok else "MISS",
            }
        )
    ceiling_ = results["first load", "ceiling"].rate
    rows.append(
        {
            "case": "first load, against plain COPY (the ceiling)",
            "baseline": rate["first load", "ceiling"],
            "ours": rate["first load", "ours"],
            "ratio": f"{results['first load', 'ours'].rate / ceiling_:.2f}x",
            "target": "",
            "result": "",
        }
    )
    return "RESULT " + json.dumps(
        {
            "bench": "ingest",
            "title": "Bulk ingest",
            "date": header[0].split(None, 1)[1],
            "machine": f"{header[1].split(None, 1)[1]}; PostgreSQL {header[3].split(None, 1)[1]}",
            "size": f"{results['first load', 'ours'].rows:,} readings"
            f" ({args.users} users × {METRICS} metrics × {DAYS} days), median of {args.repeat}"
            + f", {args.connections} connection(s) per method",
            "rows": rows,
            "notes": [
                f"Load average (1, 5, 15 min) {header[1].rsplit('load average ', 1)[1]} at the start,"
                f" {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end.",
                f"`upsert()` for one user's batch, each path forced, median of {args.crossover_repeat} calls, on one"
                f" connection (rows/s, unnest against staged; `STAGED_FROM` is {metrics.STAGED_FROM:,}): "
                + "; ".join(
                    f"{p.size:,} rows: first load {p.rate('first load', 'unnest') / 1e3:.1f}k against"
                    f" {p.rate('first load', 'staged') / 1e3:.1f}k, replay {p.rate('replay', 'unnest') / 1e3:.1f}k"
                    f" against {p.rate('replay', 'staged') / 1e3:.1f}k"
                    for p in points
                )
                + ".",
            ],
        },
        ensure_ascii=False,
    )


if __name__ == "__main__":
    asyncio.run(main(parse()))
