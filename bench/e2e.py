"""Bench: end to end, sync → analytics → alert delivered, through the Procfile's real workers.

    .venv/bin/python bench/e2e.py [--quick] [--users N] [--seconds S] [--database-url URL] [--redis-url URL]

N simulated users (default 5,000) each have a simulator connection with 90 days of history (the
simulator's 8 daily metrics, seeded with COPY) and an injected anomaly for today (resting heart
rate 118).  A round creates one ``scheduled`` sync run per user, as a sweep does, and sends every
``sync`` message at once: a backlog of N.  Each message then runs the real chain: ``sync`` (the
simulator's readings and sessions for today, upserted), ``analyse`` (the runs the sync worker
completed within 50 ms, with other runs waiting, as one batch: the users' 90 days; aggregates,
correlations, scores, clinical and baseline anomalies; alerts), ``notify`` (routing through a
tenant-wide rule to a console channel that appends JSON lines to a file) and, when an event waits
for a webhook endpoint, ``dispatch_events`` (this tenant has none, so its events are stored
dispatched and no such message is sent).
The workers are the Procfile's ``dramatiq pipeline.worker`` lines, one process per queue group with
its thread count (METRICS_PORT dropped, so no port is taken).

A round ends when every run is analysed and every alert routed; then the bench deletes the
round's alerts (their delivery rows go with them), since an alert is raised once per condition
and day, and starts the next round.  The pipeline's rounds and the ceiling's (below) alternate,
so that load from elsewhere on a shared box falls on both alike, until each has ``--seconds``
(default 300) of rounds.  Users/min is users over the rounds' time, each round timed from its first enqueue to its
last delivery (database timestamps); the reset between rounds is not on the clock.  The latency
of a user is from the enqueue of its sync message to its last alert delivered (to analysis, for a
user without an alert); with a backlog of N sent at once it is mostly queueing.

The ceiling, in the same run and worker processes, on the same users: ``bench/e2e_actor.py``, the
same chain and database round trips with a trivial scorer instead of the analytics.  PostgreSQL
comes from ``--database-url`` or CAREBEACON_BENCH_DATABASE_URL, else the embedded server; Redis
from ``--redis-url`` or CAREBEACON_BENCH_REDIS_URL (a database number of the bench's own: its
``dramatiq:*`` keys are deleted before and after), else an embedded Redis.  The work happens in a
fresh ``cb_bench_<hex>`` database dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from servers import (  # noqa: E402
    ProcessType,
    Workers,
    bench_env,
    clear_queues,
    create_database,
    drop_database,
    postgres,
    procfile_workers,
    redis_server,
)

from db import notification_channels, notification_rules  # noqa: E402
from db.sealing import Keyring  # noqa: E402
from pipeline.providers.simulator import PROFILES, READING_TIME, issue_tokens, latest_summary  # noqa: E402

TARGET_PER_MIN = 15_000
TARGET_OF_CEILING = 0.60
HISTORY_DAYS = 90
FULL_USERS, QUICK_USERS = 5_000, 50
FULL_SECONDS, QUICK_SECONDS = 300.0, 3.0
WARMUP_USERS = 100
ANOMALY = {"metric": "resting_heart_rate", "value": 118}
BENCH_APP = "e2e-bench"


# -- data ---------------------------------------------------------------------------------------


def history(user_ids: range, day: date) -> Iterator[tuple[object, ...]]:
    """The simulator's metrics for the 90 days before ``day``, at its reading time."""
    rng = np.random.default_rng(7)
    days = [datetime.combine(day - timedelta(days=d), READING_TIME) for d in range(HISTORY_DAYS, 0, -1)]
    names = list(PROFILES)
    means = np.array([PROFILES[n].mean for n in names])
    spreads = np.array([PROFILES[n].spread for n in names])
    lows, highs = np.array([PROFILES[n].low for n in names]), np.array([PROFILES[n].high for n in names])
    for user_id in user_ids:
        values = np.clip(rng.normal(means, spreads, size=(len(days), len(names))), lows, highs)
        for d, at in enumerate(days):
            for m, name in enumerate(names):
                p = PROFILES[name]
                yield (user_id, "simulator", name, at, round(float(values[d, m]), p.digits), p.unit, user_id)


@dataclass(frozen=True)
class Seeded:
    url: str
    users: int
    rows: int
    seconds: float
    alert_file: Path
    synced: datetime  # the connections' last sync: each round's window starts at that UTC midnight


async def seed(admin_url: str, keyring: Keyring, users: int, alert_file: Path) -> Seeded:
    """A fresh database: one tenant, its users and simulator connections, their history, and a
    tenant-wide rule (defaults: warnings and up, 60-minute cooldown) to a console channel."""
    began = time.perf_counter()
    url = await create_database(admin_url)
    now = datetime.now(UTC)
    # The day whose summary a sync now returns: today once the simulator's 07:00 UTC summary
    # exists, else yesterday (a sync window starts at the UTC midnight before it).
    day = latest_summary(now)
    # Synced an hour into the day: the next sync's window (less the hour of overlap, from the
    # UTC midnight) is that day, so each sync brings the day's readings and sessions.
    synced = datetime.combine(day, READING_TIME) - timedelta(hours=6)
    anomaly = {**ANOMALY, "days_ago": 0}  # on that day's summary
    # Valid all run long: the bench measures syncs, not the hourly token refresh.
    tokens = issue_tokens(now + timedelta(days=1))
    conn = await asyncpg.connect(url)
    try:
        tenant_id = await conn.fetchval("INSERT INTO tenants (slug, name) VALUES ('bench', 'Bench') RETURNING id")
        await conn.copy_records_to_table(
            "users",
            records=[(u, tenant_id, f"p{u}", f"Patient {u}") for u in range(1, users + 1)],
            columns=["id", "tenant_id", "external_id", "display_name"],
        )
        await conn.copy_records_to_table(
            "connections",
            records=[
                (
                    u, u, "simulator",
                    keyring.seal_json(tokens, table="connections", column="tokens_sealed", row_id=u),
                    json.dumps({"seed": f"p{u}", "anomalies": [anomaly]}), synced,
                )
                for u in range(1, users + 1)
            ],
            columns=["id", "user_id", "provider", "tokens_sealed", "settings", "last_synced_at"],
        )  # fmt: skip
        for table in ("users", "connections"):
            await conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {users})")
        await conn.copy_records_to_table(
            "metrics",
            records=history(range(1, users + 1), day),
            columns=["user_id", "provider", "metric", "recorded_at", "value", "unit", "connection_id"],
        )
        channel_id = await notification_channels.create_channel(
            conn, keyring, tenant_id=tenant_id, kind="console", label="bench file",
            config={"path": str(alert_file), "stdout": False},
        )  # fmt: skip
        await notification_rules.create_rule(conn, tenant_id=tenant_id, name="warnings and up", channel_id=channel_id)
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    rows = users * len(PROFILES) * HISTORY_DAYS
    return Seeded(url, users, rows, time.perf_counter() - began, alert_file, synced)


# -- rounds -------------------------------------------------------------------------------------


@dataclass
class Round:
    users: int
    seconds: float  # first enqueue to last done
    enqueue_s: float
    latency: list[float]  # per user: enqueue → last alert delivered (or analysed)
    in_pipeline: list[float]  # per user: sync claimed → last alert delivered
    stages: dict[str, list[float]]
    alerts: int
    delivered_ids: list[int]
    failed_runs: int
    info: int  # alerts below the rule's severity: routed to no channel
    undelivered: int  # warnings and up without a delivered (or suppressed) log row
    duplicates: int  # (alert, channel) pairs delivered twice
    statements: int  # the bench's own, each a transaction in pg_stat_database


@dataclass
class Phase:
    name: str
    rounds: list[Round] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    postgres_cpu: float | None = None
    commits: int = 0
    loads: list[float] = field(default_factory=list)  # 1-minute load average as each round began

    @property
    def load(self) -> str:
        return f"{min(self.loads):.2f}–{max(self.loads):.2f}" if self.loads else "?"

    @property
    def users(self) -> int:
        return sum(r.users for r in self.rounds)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.rounds)

    @property
    def per_min(self) -> float:
        return self.users / self.seconds * 60

    def all(self, attr: str) -> list[float]:
        return [x for r in self.rounds for x in getattr(r, attr)]

    @property
    def lost(self) -> int:
        return sum(r.undelivered + r.duplicates + r.failed_runs for r in self.rounds)


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95)) if values else float("nan")


async def send_all(actor_name: str, run_ids: list[int]) -> list[float]:
    """Send each run's message from a thread (the broker's client is synchronous); returns the
    time each was sent."""
    from bench.e2e_actor import ceiling_sync
    from pipeline.actors import sync

    actor = {"pipeline": sync, "ceiling": ceiling_sync}[actor_name]

    def run() -> list[float]:
        sent = []
        for run_id in run_ids:
            sent.append(time.time())
            actor.send(run_id)
        return sent

    return await asyncio.to_thread(run)


ROUND_STATS = """
SELECT r.id, r.status,
       extract(epoch FROM r.started_at) AS started, extract(epoch FROM r.finished_at) AS finished,
       extract(epoch FROM r.analysed_at) AS analysed,
       (SELECT extract(epoch FROM max(l.finished_at)) FROM alerts a JOIN notification_logs l ON l.alert_id = a.id
         WHERE a.user_id = c.user_id AND l.status = 'delivered') AS delivered
  FROM sync_runs r JOIN connections c ON c.id = r.connection_id
 WHERE r.id BETWEEN $1 AND $2 ORDER BY r.id
"""


async def one_round(pool: asyncpg.Pool, actor: str, connection_ids: list[int], synced: datetime) -> Round:
    # Every round syncs the same day's summary: a sync moves last_synced_at to now, and after
    # midnight UTC the next window would start past that summary (not on the clock).
    await pool.execute(
        "UPDATE connections SET last_synced_at = $1 WHERE id = ANY($2::bigint[])", synced, connection_ids
    )
    rows = await pool.fetch(
        "INSERT INTO sync_runs (connection_id, trigger) SELECT unnest($1::bigint[]), 'scheduled' RETURNING id",
        connection_ids,
    )
    run_ids = sorted(r["id"] for r in rows)
    first, last = run_ids[0], run_ids[-1]
    sending = asyncio.create_task(send_all(actor, run_ids))
    deadline = time.monotonic() + 60 + len(run_ids) / 10
    polls = 0
    while True:
        await asyncio.sleep(0.1)
        if not sending.done():
            continue
        polls += 1
        state = await pool.fetchrow(
            "SELECT count(*) FILTER (WHERE analysed_at IS NOT NULL OR status IN ('failed', 'skipped')) AS done,"
            " (SELECT count(*) FROM alerts WHERE routed_at IS NULL) AS unrouted"
            " FROM sync_runs WHERE id BETWEEN $1 AND $2",
            first,
            last,
        )
        if state["done"] == len(run_ids) and state["unrouted"] == 0:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{actor} round not done in time: {dict(state)} of {len(run_ids)} runs")
    sent = dict(zip(run_ids, await sending, strict=True))
    stats = await pool.fetch(ROUND_STATS, first, last)
    latency, in_pipeline, done_at = [], [], []
    stages: dict[str, list[float]] = {"queue for sync": [], "sync": [], "to analysed": [], "to delivered": []}
    for s in stats:
        if s["analysed"] is None:
            continue
        done = float(s["delivered"] or s["analysed"])
        done_at.append(done)
        latency.append(done - sent[s["id"]])
        in_pipeline.append(done - float(s["started"]))
        stages["queue for sync"].append(float(s["started"]) - sent[s["id"]])
        stages["sync"].append(float(s["finished"] - s["started"]))
        stages["to analysed"].append(float(s["analysed"] - s["finished"]))
        if s["delivered"] is not None:
            stages["to delivered"].append(float(s["delivered"] - s["analysed"]))
    checks = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM alerts) AS alerts,"
        " (SELECT array_agg(DISTINCT alert_id) FROM notification_logs WHERE status = 'delivered') AS delivered,"
        " (SELECT count(*) FROM alerts WHERE severity = 'info') AS info,"
        # The rule takes warnings and up: an info alert is routed to no channel.
        " (SELECT count(*) FROM alerts a WHERE a.severity <> 'info' AND NOT EXISTS (SELECT 1 FROM notification_logs l"
        "    WHERE l.alert_id = a.id AND l.status IN ('delivered', 'suppressed'))) AS undelivered,"
        " (SELECT count(*) FROM (SELECT 1 FROM notification_logs WHERE status = 'delivered'"
        "    GROUP BY alert_id, channel_id, purpose HAVING count(*) > 1) d) AS duplicates"
    )
    # An alert is raised once per (rule, user, metric, day): the next round may raise it again.
    await pool.execute("DELETE FROM alerts")
    first_sent = min(sent.values())
    return Round(
        users=len(run_ids),
        seconds=max(done_at) - first_sent if done_at else float("nan"),
        enqueue_s=max(sent.values()) - first_sent,
        latency=latency,
        in_pipeline=in_pipeline,
        stages=stages,
        alerts=checks["alerts"],
        delivered_ids=list(checks["delivered"] or []),
        failed_runs=sum(1 for s in stats if s["status"] != "completed"),
        info=checks["info"],
        undelivered=checks["undelivered"],
        duplicates=checks["duplicates"],
        # The bench's own: the UPDATE, the INSERT, the polls, the stats, the checks, the DELETE.
        statements=polls + 5,
    )


async def backend_cpu(pool: asyncpg.Pool) -> dict[int, float]:
    """CPU seconds so far of each backend of the bench database but the bench's own, from /proc
    (empty when the server runs elsewhere)."""
    spent = {}
    for row in await pool.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name <> $1", BENCH_APP
    ):
        try:
            fields = Path(f"/proc/{row['pid']}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        spent[row["pid"]] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return spent


async def commits_so_far(pool: asyncpg.Pool) -> int:
    """Transactions committed in the bench database.  Busy backends report them every second or
    so, idle ones within 10 s: over rounds of a minute or more the lag is a rounding error."""
    found: int = await pool.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
    return found


PHASES = ("pipeline", "ceiling")


async def run_phases(pool: asyncpg.Pool, workers: Workers, users: int, seconds: float, synced: datetime) -> list[Phase]:
    """Rounds of the pipeline and of the ceiling, alternating until each has ``seconds`` of them:
    load from elsewhere on a shared box then falls on both alike."""
    ids = list(range(1, users + 1))
    for name in PHASES:
        # Imports, pool connections and first-call costs of every thread: not on the clock.
        await one_round(pool, name, ids[: min(users, WARMUP_USERS)], synced)
    phases = [Phase(name) for name in PHASES]
    while any(p.seconds < seconds for p in phases):
        for phase in phases:
            if phase.seconds >= seconds:
                continue
            phase.loads.append(os.getloadavg()[0])
            cpu, pg, commits = workers.cpu(), await backend_cpu(pool), await commits_so_far(pool)
            phase.rounds.append(await one_round(pool, phase.name, ids, synced))
            cpu_after, pg_after = workers.cpu(), await backend_cpu(pool)
            # The bench's own statements are transactions too: its round's and these three.
            phase.commits += await commits_so_far(pool) - commits - phase.rounds[-1].statements - 3
            for k, v in cpu_after.items():
                phase.cpu[k] = phase.cpu.get(k, 0.0) + v - cpu[k]
            if pg_after:
                # A backend that connected during the round counts whole; pools keep theirs.
                spent = sum(t - pg.get(pid, 0.0) for pid, t in pg_after.items())
                phase.postgres_cpu = (phase.postgres_cpu or 0.0) + spent
    return phases


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Report:
    seeded: Seeded
    types: list[ProcessType]
    pg_version: str
    redis_version: str
    load_start: float
    phases: list[Phase]
    file_missing: int
    file_duplicates: int


def file_check(path: Path, delivered: list[int]) -> tuple[int, int]:
    """(missing, duplicates): delivered alerts without a line in the console file, and extra lines."""
    seen = Counter(json.loads(line)["alert_id"] for line in path.read_text().splitlines()) if path.exists() else {}
    missing = sum(1 for alert_id in delivered if not seen.get(alert_id))
    return missing, sum(n - 1 for n in seen.values() if n > 1)


async def measure(admin_url: str, redis_url: str, args: argparse.Namespace, scratch: Path) -> Report:
    load_start = os.getloadavg()[0]
    entry = Keyring.new_entry("bench")
    seeded = await seed(admin_url, Keyring.parse(entry), args.users, scratch / "alerts.jsonl")
    env = bench_env(seeded.url, redis_url, entry, scratch)
    clear_queues(redis_url)
    types = procfile_workers()
    workers = Workers(types, env, scratch, modules=("bench.e2e_actor",))
    try:
        from pipeline import runtime

        runtime.start(env)  # this process sends the messages, on the workers' broker
        import bench.e2e_actor  # noqa: F401  (declares the ceiling's actors here too)

        await workers.ready()
        pool = await asyncpg.create_pool(
            seeded.url, min_size=1, max_size=2, server_settings={"application_name": BENCH_APP}
        )
        async with pool:
            pg_version = await pool.fetchval("SHOW server_version")
            phases = await run_phases(pool, workers, args.users, args.seconds, seeded.synced)
        delivered = [i for p in phases for r in p.rounds for i in r.delivered_ids]
        missing, duplicates = file_check(seeded.alert_file, delivered)
        redis_version = redis.Redis.from_url(redis_url).info("server")["redis_version"]
        return Report(seeded, types, pg_version, redis_version, load_start, phases, missing, duplicates)
    except BaseException:
        print(workers.tails(), file=sys.stderr)  # what the workers said, before the scratch directory goes
        raise
    finally:
        workers.stop()
        from pipeline import runtime

        runtime.stop()
        clear_queues(redis_url)
        await drop_database(admin_url, seeded.url)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def render(report: Report) -> tuple[str, dict[str, Any]]:
    pipe, ceiling = report.phases
    ratio = pipe.per_min / ceiling.per_min
    machine = (
        f"nproc {os.cpu_count()}, {cpu_model()}; PostgreSQL {report.pg_version}, Redis {report.redis_version};"
        f" load average {report.load_start:.2f} at the start"
    )
    layout = ", ".join(f"{t.name} -t {t.threads}" for t in report.types)
    s = report.seeded
    lines = [
        f"date      {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"machine   {machine}",
        f"versions  Python {platform.python_version()}, dramatiq {version('dramatiq')}, asyncpg {version('asyncpg')},"
        f" numpy {np.__version__}; OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}",
        f"layout    Procfile, one process each: {layout}",
        f"data      {s.users:,} users × {len(PROFILES)} simulator metrics × {HISTORY_DAYS} days"
        f" ({s.rows:,} rows, seeded in {s.seconds:.1f} s); a sync brings the day's {len(PROFILES)} metrics"
        f" and sessions, with resting heart rate {ANOMALY['value']} injected",
    ]
    for p in report.phases:
        lat, inp = p.all("latency"), p.all("in_pipeline")
        alerts = sum(r.alerts for r in p.rounds)
        delivered = sum(len(r.delivered_ids) for r in p.rounds)
        lines.append(
            f"{p.name:<9} {p.users:,} users in {len(p.rounds)} round(s) of {p.rounds[0].users:,},"
            f" {p.seconds:.1f} s = {p.per_min:,.0f} users/min; enqueue→alert delivered p50"
            f" {statistics.median(lat):.1f} s, p95 {p95(lat):.1f} s, max {max(lat):.1f} s;"
            f" claimed→delivered p95 {p95(inp):.2f} s (load {p.load} as rounds began)"
        )
        stages = ", ".join(
            f"{k} {statistics.median(v):.2f} s" for k, v in _merge(p.rounds).items() if v
        )  # fmt: skip
        cpu = ", ".join(f"{k} {v / p.users * 1e3:.1f}" for k, v in p.cpu.items())
        pg = "?" if p.postgres_cpu is None else f"{p.postgres_cpu / p.users * 1e3:.1f}"
        lines += [
            f"          medians: {stages}; enqueue of a round {statistics.median(r.enqueue_s for r in p.rounds):.2f} s",
            f"          CPU ms/user: {cpu}; PostgreSQL backends {pg}; commits/user {p.commits / p.users:.1f}",
            f"          alerts {alerts:,} ({sum(r.info for r in p.rounds):,} info: no rule),"
            f" delivered {delivered:,}; lost {p.lost}: failed runs"
            f" {sum(r.failed_runs for r in p.rounds)}, undelivered {sum(r.undelivered for r in p.rounds)},"
            f" duplicates {sum(r.duplicates for r in p.rounds)}",
        ]
    lines.append(
        f"sink      console file: {report.file_missing} delivered alert(s) missing,"
        f" {report.file_duplicates} duplicate line(s)"
    )
    lines.append(f"ratio     pipeline / ceiling = {ratio:.2f}")
    ok_rate, ok_ratio = pipe.per_min >= TARGET_PER_MIN, ratio >= TARGET_OF_CEILING
    lines.append(f"target    {'PASS' if ok_rate else 'MISS'} ≥ {TARGET_PER_MIN:,} users/min ({pipe.per_min:,.0f})")
    lines.append(f"target    {'PASS' if ok_ratio else 'MISS'} ≥ {TARGET_OF_CEILING:.0%} of the ceiling ({ratio:.0%})")
    lat, ceiling_lat = pipe.all("latency"), ceiling.all("latency")
    cpu = ", ".join(f"{k} {v / pipe.users * 1e3:.1f}" for k, v in pipe.cpu.items())
    result = {
        "bench": "e2e",
        "title": "E2E throughput",
        "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "machine": machine,
        "size": f"{s.users:,} users a round, {pipe.seconds:.0f} s of rounds (pipeline) and {ceiling.seconds:.0f} s"
        f" (ceiling), in alternating rounds; 1-minute load average {pipe.load} as its rounds began",
        "rows": [
            {
                "case": "users/min, sync → analyse → alert delivered (baseline: the ceiling)",
                "baseline": f"{ceiling.per_min:,.0f}",
                "ours": f"{pipe.per_min:,.0f}",
                "ratio": f"{ratio:.2f}",
                "target": f"≥ {TARGET_PER_MIN:,}",
                "result": "PASS" if ok_rate else "MISS",
            },
            {
                "case": "share of the ceiling",
                "baseline": "",
                "ours": f"{ratio:.0%}",
                "ratio": "",
                "target": f"≥ {TARGET_OF_CEILING:.0%}",
                "result": "PASS" if ok_ratio else "MISS",
            },
            {
                "case": f"enqueue → alert delivered, backlog of {s.users:,}: p50 / p95",
                "baseline": f"{statistics.median(ceiling_lat):.1f} s / {p95(ceiling_lat):.1f} s",
                "ours": f"{statistics.median(lat):.1f} s / {p95(lat):.1f} s",
                "ratio": f"{p95(lat) / p95(ceiling_lat):.2f}",
                "target": "reported",
                "result": "",
            },
            {
                "case": "lost: failed runs, undelivered alerts, duplicates, missing file lines",
                "baseline": f"{ceiling.lost}",
                "ours": f"{pipe.lost + report.file_missing + report.file_duplicates}",
                "ratio": "",
                "target": "0",
                "result": "PASS"
                if pipe.lost + ceiling.lost + report.file_missing + report.file_duplicates == 0
                else "MISS",
            },
        ],
        "notes": [
            f"CPU per user, pipeline (ms): {cpu}; PostgreSQL backends"
            f" {'?' if pipe.postgres_cpu is None else f'{pipe.postgres_cpu / pipe.users * 1e3:.1f}'};"
            f" {pipe.commits / pipe.users:.1f} transactions per user",
        ],
    }
    return "\n".join(lines), result


def _merge(rounds: list[Round]) -> dict[str, list[float]]:
    merged: dict[str, list[float]] = {}
    for r in rounds:
        for k, v in r.stages.items():
            merged.setdefault(k, []).extend(v)
    return merged


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, help=f"users per round (default {FULL_USERS:,}; {QUICK_USERS} quick)")
    parser.add_argument("--seconds", type=float, help=f"seconds of rounds per phase (default {FULL_SECONDS:g})")
    parser.add_argument("--quick", action="store_true", help="a small run that checks the bench still works")
    parser.add_argument("--database-url", help="an existing server (needs CREATE DATABASE); default: embedded")
    parser.add_argument("--redis-url", help="a Redis database of the bench's own; default: embedded")
    args = parser.parse_args(argv)
    args.users = args.users or (QUICK_USERS if args.quick else FULL_USERS)
    args.seconds = args.seconds or (QUICK_SECONDS if args.quick else FULL_SECONDS)
    return args


def main() -> None:
    args = parse()
    # The workers run in sessions of their own: on SIGTERM, unwind (stop them, drop the database).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with tempfile.TemporaryDirectory(prefix="cb-e2e-") as tmp, postgres(args.database_url) as admin_url:
        scratch = Path(tmp)
        scratch.chmod(0o755)
        with redis_server(args.redis_url, scratch) as redis_url:
            report = asyncio.run(measure(admin_url, redis_url, args, scratch))
    text, result = render(report)
    print(text)
    print("RESULT " + json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
