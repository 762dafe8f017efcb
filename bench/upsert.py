"""Bench: the idempotent metric upsert against the seed platform's insert, same run, same data.

    .venv/bin/python bench/upsert.py [--quick] [--users N] [--repeat N] [--database-url URL]

Baseline is what the seed did: ``executemany`` of a one-row ``INSERT … ON CONFLICT DO NOTHING``
per reading, 500 readings per call.  Ours is ``db.metrics.upsert`` per user per batch of
``pipeline.sync.BATCH_SIZE`` readings, as ``pipeline/sync.py`` calls it.  Each method runs a first
load into an empty table, a replay of identical rows and a replay with 10% of values changed;
after the last one we count the rows whose stored value is stale.

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

# `python bench/upsert.py` puts bench/ on sys.path, not the checkout: add the checkout so we
# measure this tree's db/ and pipeline/ even when the venv's editable install points elsewhere.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from servers import postgres  # noqa: E402

from db import metrics, tenants  # noqa: E402
from db.metrics import Reading, UpsertCounts  # noqa: E402
from db.migrate import migrate  # noqa: E402
from pipeline.sync import BATCH_SIZE  # noqa: E402
from pipeline.vocabulary import UNITS  # noqa: E402

METRICS, DAYS = 30, 90
SEED_BATCH = 500  # the seed streamed provider data into health_metrics 500 points at a time
PROVIDER = "simulator"
CHANGE_EVERY = 10  # every 10th reading changes in the last scenario: 10%
FULL_ROWS, QUICK_ROWS = 270_000, 20_000

# The seed's statement, on our table: one row per reading; a re-sent key is silently skipped.
SEED_INSERT = """
INSERT INTO metrics (user_id, provider, metric, recorded_at, value, unit, connection_id)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (user_id, provider, metric, recorded_at) DO NOTHING
"""

# Rows whose stored value differs from what the provider last sent (or that are missing).
STALE = """
SELECT count(*) FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::float8[])
       AS e(user_id, metric, recorded_at, value)
  LEFT JOIN metrics m
    ON (m.user_id, m.provider, m.metric, m.recorded_at) = (e.user_id, $5, e.metric, e.recorded_at)
 WHERE m.value IS DISTINCT FROM e.value
"""

UserReadings = list[tuple[int, list[Reading]]]
Method = Callable[[asyncpg.Connection, UserReadings], Awaitable[UpsertCounts]]


async def baseline(conn: asyncpg.Connection, data: UserReadings) -> UpsertCounts:
    for user_id, readings in data:
        for start in range(0, len(readings), SEED_BATCH):
            rows = [
                (user_id, PROVIDER, r.metric, r.recorded_at, r.value, r.unit, None)
                for r in readings[start : start + SEED_BATCH]
            ]
            await conn.executemany(SEED_INSERT, rows)
    return UpsertCounts()  # executemany reports nothing back


async def ours(conn: asyncpg.Connection, data: UserReadings) -> UpsertCounts:
    counts = UpsertCounts()
    for user_id, readings in data:
        for start in range(0, len(readings), BATCH_SIZE):
            batch = readings[start : start + BATCH_SIZE]
            counts += await metrics.upsert(conn, user_id, PROVIDER, None, batch)
    return counts


METHODS: dict[str, Method] = {"baseline": baseline, "ours": ours}
SCENARIOS = ("first load", "replay, unchanged", "replay, 10% changed")


def metric_names() -> list[tuple[str, str]]:
    """The real vocabulary (20 names), padded with made-up ones so keys are as wide as real ones."""
    names = list(UNITS.items())
    names += [(f"{name}_avg", unit) for name, unit in names[: METRICS - len(names)]]
    return names[:METRICS]


def generate(user_ids: list[int]) -> tuple[UserReadings, UserReadings]:
    """Day-major per user, the order a provider streams a sync; and a copy with every 10th value changed."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    names = metric_names()
    original: UserReadings = []
    for user_id in user_ids:
        readings = [
            Reading(metric, start + timedelta(days=day), float((user_id * 7919 + day * 31 + m) % 9973), unit)
            for day in range(DAYS)
            for m, (metric, unit) in enumerate(names)
        ]
        original.append((user_id, readings))
    changed = [
        (user_id, [replace(r, value=r.value + 0.5) if i % CHANGE_EVERY == 0 else r for i, r in enumerate(rs)])
        for user_id, rs in original
    ]
    return original, changed


async def stale_rows(conn: asyncpg.Connection, data: UserReadings) -> int:
    flat = [(user_id, r) for user_id, rs in data for r in rs]
    count: int = await conn.fetchval(
        STALE,
        [u for u, _ in flat],
        [r.metric for _, r in flat],
        [r.recorded_at for _, r in flat],
        [r.value for _, r in flat],
        PROVIDER,
    )
    return count


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


Results = dict[tuple[str, str], Result]  # (scenario, method) -> timings


async def run(conn: asyncpg.Connection, users: int, repeat: int) -> tuple[Results, dict[str, int]]:
    tenant_id = await tenants.ensure_tenant(conn, "bench", "Bench")
    user_ids = [await tenants.ensure_user(conn, tenant_id, f"bench-{i}", f"Bench {i}") for i in range(users)]
    original, changed = generate(user_ids)
    total = users * METRICS * DAYS
    n_changed = sum(1 for _, rs in original for i in range(len(rs)) if i % CHANGE_EVERY == 0)
    expected = {
        SCENARIOS[0]: UpsertCounts(inserted=total),
        SCENARIOS[1]: UpsertCounts(unchanged=total),
        SCENARIOS[2]: UpsertCounts(updated=n_changed, unchanged=total - n_changed),
    }
    results = {(s, m): Result(total) for s in SCENARIOS for m in METHODS}
    stale: dict[str, int] = {}
    # Methods alternate within each repetition, so drift on a shared box hits both alike.
    for _ in range(repeat):
        for name, method in METHODS.items():
            await conn.execute("TRUNCATE metrics")
            for scenario, data in zip(SCENARIOS, (original, original, changed), strict=True):
                await settle(conn)
                began = time.perf_counter()
                counts = await method(conn, data)
                results[scenario, name].seconds.append(time.perf_counter() - began)
                if name == "ours" and counts != expected[scenario]:
                    raise SystemExit(f"ours, {scenario}: counted {counts}, expected {expected[scenario]}")
                if scenario == SCENARIOS[0]:
                    # Replays then meet a settled table (hint bits set, statistics known), as in production.
                    await conn.execute("VACUUM (ANALYZE) metrics")
            stale[name] = await stale_rows(conn, changed)
    stale["changed"] = n_changed
    return results, stale


def machine(server_version: str) -> list[str]:
    cpu = "unknown"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return [
        f"date      {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"machine   nproc {os.cpu_count()}, {cpu}",
        f"software  Python {platform.python_version()}, asyncpg {asyncpg.__version__}",
        f"postgres  {server_version}",
    ]


ROW = "{:<22}{:<10}{:>9,}{:>9.2f}{:>10,.0f}{:>11}  {}"


def report(results: Results, stale: dict[str, int], repeat: int) -> str:
    head = f"{'scenario':<22}{'method':<10}{'rows':>9}{'seconds':>9}{'rows/s':>10}{'ours/base':>11}"
    lines = [f"{head}  runs (s)"]
    for scenario in SCENARIOS:
        base = results[scenario, "baseline"].median
        for name in METHODS:
            r = results[scenario, name]
            ratio = f"{base / r.median:.2f}x" if name == "ours" else ""
            runs = " ".join(f"{s:.2f}" for s in r.seconds)
            lines.append(ROW.format(scenario, name, r.rows, r.median, r.rows / r.median, ratio, runs))
    lines += [
        f"seconds: median of {repeat}; ours/base: ours' rows/s over the baseline's (>1 = ours faster)",
        f"stale after the 10%-changed replay: baseline {stale['baseline']:,} of {stale['changed']:,} changed"
        f" rows (DO NOTHING cannot update them); ours {stale['ours']:,}",
    ]
    return "\n".join(lines)


async def measure(server_url: str, args: argparse.Namespace) -> str:
    """Run the bench in a database of its own on ``server_url``; returns the printed report."""
    name = f"cb_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        conn = await asyncpg.connect(urlunsplit(urlsplit(server_url)._replace(path=f"/{name}")))
        try:
            await migrate(conn)
            version = await conn.fetchval("SHOW server_version")
            # Printed because they move ingest numbers more than anything else in postgresql.conf.
            settings = await conn.fetch(
                "SELECT name, current_setting(name) AS value FROM unnest($1::text[]) AS name",
                ["shared_buffers", "synchronous_commit"],
            )
            results, stale = await run(conn, args.users, args.repeat)
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
    shown = ", ".join(f"{s['name']} {s['value']}" for s in settings)
    data = (
        f"data      {args.users} users x {METRICS} metrics x {DAYS} days;"
        f" baseline batches {SEED_BATCH}, ours {BATCH_SIZE} per user"
    )
    lines = [*machine(f"{version} ({shown})"), data, report(results, stale, args.repeat)]
    return "\n".join([*lines, result_line(results, stale, args, version)])


async def main(args: argparse.Namespace) -> None:
    with postgres(args.database_url) as url:
        text = await measure(url, args)
    print(text)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--database-url", help="an existing server (needs CREATE DATABASE); default: embedded")
    add("--users", type=int, help=f"default: about {FULL_ROWS:,} rows ({QUICK_ROWS:,} with --quick)")
    add("--repeat", type=int, help="repetitions per measurement, median reported (default 3, 1 with --quick)")
    add("--quick", action="store_true", help="a small run that checks the bench still works")
    args = parser.parse_args(argv)
    per_user = METRICS * DAYS
    args.users = args.users or math.ceil((QUICK_ROWS if args.quick else FULL_ROWS) / per_user)
    args.repeat = args.repeat or (1 if args.quick else 3)
    return args


def result_line(results: Results, stale: dict[str, int], args: argparse.Namespace, version: str) -> str:
    """The run as one ``RESULT {json}`` line, for bench/all.py to render into docs/benchmarks.md."""
    rows = []
    for scenario in SCENARIOS:
        base, ours_ = results[scenario, "baseline"], results[scenario, "ours"]
        rows.append(
            {
                "case": scenario,
                "baseline": f"{base.median:.2f} s ({base.rows / base.median / 1e3:.1f}k rows/s)",
                "ours": f"{ours_.median:.2f} s ({ours_.rows / ours_.median / 1e3:.1f}k rows/s)",
                "ratio": f"{base.median / ours_.median:.2f}x",
                "target": "none set",
                "result": "",
            }
        )
    rows.append(
        {
            "case": "stale rows after the 10%-changed replay",
            "baseline": f"{stale['baseline']:,}",
            "ours": f"{stale['ours']:,}",
            "ratio": "",
            "target": "0",
            "result": "PASS" if stale["ours"] == 0 else "MISS",
        }
    )
    described = machine(version)  # date, machine, software, postgres
    return "RESULT " + json.dumps(
        {
            "bench": "upsert",
            "title": "Idempotent metric upsert",
            "date": described[0].split(None, 1)[1],
            "machine": f"{described[1].split(None, 1)[1]}, load average {os.getloadavg()[0]:.2f}; PostgreSQL {version}",
            "size": f"{args.users * METRICS * DAYS:,} rows ({args.users} users × {METRICS} metrics × {DAYS} days),"
            f" median of {args.repeat}",
            "rows": rows,
        },
        ensure_ascii=False,
    )


if __name__ == "__main__":
    asyncio.run(main(parse()))
