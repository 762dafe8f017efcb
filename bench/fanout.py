"""Bench: notification fan-out through the real queue, against Apprise, same run, same sink.

    .venv/bin/python bench/fanout.py [--quick] [--deliveries N] [--channels K] [--processes 1,2,3]
        [--threads 8] [--cooldown MINUTES] [--repeat N] [--database-url URL] [--redis-url URL]

Ours: N alerts (1,000 patients × 10 metrics by default), one tenant-wide rule with its default
60-minute cooldown, each alert routed to K webhook channels (default 1: one Dramatiq message per
delivery, the case where nothing is amortised).  Real Dramatiq workers started as the Procfile
does (``dramatiq pipeline.worker --processes P --threads 8 --queues notifications``) route every
alert through ``pipeline.actors.notify``: rules, cooldown and silence checks, one
``notification_logs`` row per attempt, a Standard Webhooks-signed JSON POST to a local aiohttp
sink, then ``mark_routed``.  The clock runs from the first ``notify.send`` (enqueueing is timed: it
is part of the path) until every alert is routed and the sink has every message.  Lost: an alert
without a delivered log row, a message the sink never got, or one it got twice.

Baseline, in the same run: Apprise's ``json://`` plugin (a plain JSON POST, no signature, no log)
sends the same titles and bodies to the same sink, through ``Apprise.async_notify`` with all
messages in flight at once; Apprise runs each blocking ``requests`` send in its shared thread pool
(its default size: min(32, cores + 4)).  Our webhook channel is the like-for-like: both POST JSON
once per message; Apprise opens a new connection for each, ours keeps connections alive.
Apprise's ntfy plugin is not like-for-like: it waits 5.5 s between requests.

Worker CPU is printed twice: with the processes' boot and warm-up, and for the timed part alone.

Worker processes: 1, 2 and 3 by default, and the target is held against the best.  Two
processes leave a 2-core box about a fifth idle (each message waits on Redis, PostgreSQL and the
peer in turn, and a process's threads share one GIL); a third fills it.

The sink is its own process, so neither side pays for it in its own GIL.  PostgreSQL comes from
``--database-url`` or CAREBEACON_BENCH_DATABASE_URL, else the embedded server; Redis from
``--redis-url`` or CAREBEACON_BENCH_REDIS_URL (a database number of its own: the bench deletes the
``dramatiq:*`` keys there before and after), else an embedded Redis.  The work happens in a fresh
``cb_bench_<hex>`` database dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import platform
import re
import resource
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

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
    redis_server,
)

from db import notification_channels, notification_rules  # noqa: E402
from db.sealing import Keyring  # noqa: E402
from pipeline.vocabulary import UNITS  # noqa: E402

TARGET_PER_S = 1_000
METRICS_PER_PATIENT = 10
FULL, QUICK = 10_000, 300
WARMUP_PER_THREAD = 2
BENCH_APP = "fanout-bench"
TITLE = re.compile(rb"Bench alert #(\d+)")


# -- the sink: its own process, counting each message by the alert number in its title ----------


def sink_main(pipe: Connection) -> None:
    asyncio.run(_sink(pipe))


async def _sink(pipe: Connection) -> None:
    seen: dict[str, dict[int, int]] = {}

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        found = TITLE.search(body)
        counts = seen.setdefault(request.match_info["run"], {})
        number = int(found.group(1)) if found else -1
        counts[number] = counts.get(number, 0) + 1
        return web.Response(status=204)

    async def stats(request: web.Request) -> web.Response:
        counts = seen.get(request.match_info["run"], {})
        answer: dict[str, Any] = {"received": sum(counts.values()), "distinct": len(counts)}
        if request.query.get("ids"):
            answer["counts"] = sorted(counts.items())
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/hook/{run}", receive)
    app.router.add_get("/stats/{run}", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    pipe.send(runner.addresses[0][1])
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # until told to stop
    await runner.cleanup()


@dataclass(frozen=True)
class SinkStats:
    received: int
    distinct: int
    counts: dict[int, int] = field(default_factory=dict)  # alert id (-1: no title found) → messages


async def sink_stats(http: aiohttp.ClientSession, port: int, run: str, ids: bool = False) -> SinkStats:
    async with http.get(f"http://127.0.0.1:{port}/stats/{run}", params={"ids": "1"} if ids else {}) as resp:
        data = await resp.json()
    return SinkStats(data["received"], data["distinct"], {i: n for i, n in data.get("counts", ())})


# -- data ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """One tenant's alerts, all to be delivered to its channels (sink path ``run``)."""

    run: str
    tenant_id: int
    first_id: int
    last_id: int
    channels: int

    @property
    def alerts(self) -> int:
        return self.last_id - self.first_id + 1

    @property
    def deliveries(self) -> int:
        return self.alerts * self.channels


async def create_batch(
    conn: asyncpg.Connection, keyring: Keyring, run: str, alerts: int, channels: int, port: int, cooldown: int = 60
) -> Batch:
    """A tenant with ``channels`` webhook channels to the sink, one rule, and ``alerts`` open
    warning alerts, each for its own (patient, metric) so the cooldown lets every one through."""
    tenant_id = await conn.fetchval("INSERT INTO tenants (slug, name) VALUES ($1, $1) RETURNING id", run)
    channel_ids = []
    for k in range(channels):
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        config = {"url": f"http://127.0.0.1:{port}/hook/{run}", "secret": secret}
        channel_ids.append(
            await notification_channels.create_channel(
                conn, keyring, tenant_id=tenant_id, kind="webhook", label=f"{run}-{k}", config=config
            )
        )
    await notification_rules.create_rule(
        conn, tenant_id=tenant_id, name="all alerts", channel_ids=channel_ids, cooldown=timedelta(minutes=cooldown)
    )
    patients = -(-alerts // METRICS_PER_PATIENT)
    await conn.execute(
        "INSERT INTO users (tenant_id, external_id, display_name)"
        " SELECT $1, 'p' || g, 'Patient ' || g FROM generate_series(1, $2) g",
        tenant_id,
        patients,
    )
    ids = await conn.fetch(
        "INSERT INTO alerts (user_id, category, severity, metric, title, body, observed_value, threshold,"
        "  recorded_at, dedupe_key)"
        " SELECT u.id, 'vitals', 'warning', m.metric, 'pending', m.metric || ' is above its threshold.', 118, 100,"
        "   now(), $2 || '-' || u.id || '-' || m.metric"
        " FROM users u CROSS JOIN unnest($3::text[]) m(metric) WHERE u.tenant_id = $1"
        " ORDER BY u.id, m.metric LIMIT $4 RETURNING id",
        tenant_id,
        run,
        list(UNITS)[:METRICS_PER_PATIENT],
        alerts,
    )
    first, last = min(r["id"] for r in ids), max(r["id"] for r in ids)
    assert last - first + 1 == alerts, "alert ids of one batch must be contiguous"
    await conn.execute(
        "UPDATE alerts SET title = format('Bench alert #%s: %s high', id, metric) WHERE id BETWEEN $1 AND $2",
        first,
        last,
    )
    return Batch(run, tenant_id, first, last, channels)


# -- ours: real Dramatiq workers ----------------------------------------------------------------


@dataclass
class Ours:
    processes: int
    deliveries: int
    seconds: float
    enqueue_s: float
    undelivered: int  # alert-channel pairs without a 'delivered' log row
    missing: int
    duplicates: int
    log_rows: dict[str, int]
    worker_cpu_s: float  # the Dramatiq processes, boot and warm-up included
    run_cpu_s: float  # the Dramatiq processes during the timed part only
    postgres_cpu_s: float | None  # the database's backends during the timed part; None: not readable here
    load: float

    @property
    def per_s(self) -> float:
        return self.deliveries / self.seconds

    @property
    def lost(self) -> int:
        return self.undelivered + self.missing + self.duplicates


async def enqueue(first: int, last: int) -> float:
    """``notify.send`` for every alert, from a thread (the broker's client is synchronous)."""
    from pipeline.actors import notify

    def send_all() -> float:
        started = time.perf_counter()
        for alert_id in range(first, last + 1):
            notify.send(alert_id)
        return time.perf_counter() - started

    return await asyncio.to_thread(send_all)


async def wait_routed(pool: asyncpg.Pool, http: aiohttp.ClientSession, port: int, batch: Batch, timeout: float) -> bool:
    """Whether every alert of the batch was routed within ``timeout``.  The sink is asked first:
    the database is queried only once it has every message, so the polling costs PostgreSQL
    (the system under test) next to nothing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = await sink_stats(http, port, batch.run)
        if (
            got.distinct >= batch.alerts
            and got.received >= batch.deliveries
            and not await pool.fetchval(
                "SELECT count(*) FROM alerts WHERE routed_at IS NULL AND id BETWEEN $1 AND $2",
                batch.first_id,
                batch.last_id,
            )
        ):
            return True
        await asyncio.sleep(0.05)
    return False


async def run_ours(
    pool: asyncpg.Pool, http: aiohttp.ClientSession, port: int, env: dict[str, str], warmup: Batch, batch: Batch,
    processes: int, threads: int, scratch: Path,
) -> Ours:  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # The Procfile's notifications line, at the process and thread counts measured.
    counts = ["--processes", str(processes), "--threads", str(threads)]
    workers = Workers([ProcessType("notifications", [*counts, "--queues", "notifications"])], env, scratch / batch.run)
    try:
        await workers.ready()
        # Every thread opens its pool connections and imports on first use: not on the clock.
        await enqueue(warmup.first_id, warmup.last_id)
        if not await wait_routed(pool, http, port, warmup, 60):
            raise RuntimeError(f"warm-up did not finish:\n{workers.tails()}")
        load = os.getloadavg()[0]
        backends = await backend_cpu(pool)
        # Boot (imports) costs a second or more, so the timed part is read on its own too.
        run_cpu = workers.cpu()["notifications"]
        started = time.perf_counter()
        sending = asyncio.create_task(enqueue(batch.first_id, batch.last_id))
        done = await wait_routed(pool, http, port, batch, timeout=60 + batch.deliveries / 50)
        seconds = time.perf_counter() - started
        run_cpu = workers.cpu()["notifications"] - run_cpu
        enqueue_s = await sending
        postgres_cpu = await backend_cpu(pool)
    finally:
        workers.stop()
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu = (cpu.ru_utime + cpu.ru_stime) - (before.ru_utime + before.ru_stime)
    if not done:
        print(f"# ours -p {processes}: not all delivered in time\n{workers.tails()}", file=sys.stderr)
    undelivered = await pool.fetchval(
        "SELECT count(*) FROM alerts a CROSS JOIN notification_channels c"
        " WHERE a.id BETWEEN $1 AND $2 AND c.tenant_id = $3 AND NOT EXISTS (SELECT 1 FROM notification_logs l"
        "   WHERE l.alert_id = a.id AND l.channel_id = c.id AND l.status = 'delivered')",
        batch.first_id,
        batch.last_id,
        batch.tenant_id,
    )
    rows = await pool.fetch(
        "SELECT status, count(*) AS n FROM notification_logs WHERE alert_id BETWEEN $1 AND $2 GROUP BY status",
        batch.first_id,
        batch.last_id,
    )
    missing, duplicates = await check_sink(http, port, batch, per_id=batch.channels)
    return Ours(
        processes, batch.deliveries, seconds, enqueue_s, undelivered, missing, duplicates,
        {r["status"]: r["n"] for r in rows}, worker_cpu, run_cpu, cpu_spent(backends, postgres_cpu), load,
    )  # fmt: skip


async def backend_cpu(pool: asyncpg.Pool) -> dict[int, float]:
    """CPU seconds so far of each backend of the bench database, read from /proc: empty when
    the server is on another machine (or its processes are not readable)."""
    spent = {}
    for row in await pool.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name <> $1", BENCH_APP
    ):
        try:
            fields = Path(f"/proc/{row['pid']}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        spent[row["pid"]] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return spent


def cpu_spent(before: dict[int, float], after: dict[int, float]) -> float | None:
    # A backend that connected during the run counts whole; one that left is missed (pools keep theirs).
    return sum(t - before.get(pid, 0.0) for pid, t in after.items()) if after else None


async def check_sink(http: aiohttp.ClientSession, port: int, batch: Batch, per_id: int) -> tuple[int, int]:
    """(missing, duplicates) at the sink for the batch, ``per_id`` messages expected per alert."""
    got = await sink_stats(http, port, batch.run, ids=True)
    expected = range(batch.first_id, batch.last_id + 1)
    missing = sum(max(0, per_id - got.counts.get(i, 0)) for i in expected)
    extra = sum(max(0, n - per_id) if batch.first_id <= i <= batch.last_id else n for i, n in got.counts.items())
    return missing, extra


# -- the baseline: Apprise ----------------------------------------------------------------------


@dataclass
class Baseline:
    deliveries: int
    seconds: float
    failed: int
    missing: int
    duplicates: int
    threads: int
    load: float

    @property
    def per_s(self) -> float:
        return self.deliveries / self.seconds


async def run_apprise(pool: asyncpg.Pool, http: aiohttp.ClientSession, port: int, source: Batch, run: str) -> Baseline:
    import apprise
    from apprise.apprise import get_shared_executor

    messages = await pool.fetch(
        "SELECT title, body FROM alerts WHERE id BETWEEN $1 AND $2 ORDER BY id", source.first_id, source.last_id
    )
    notifier = apprise.Apprise()
    for _ in range(source.channels):  # one target per channel of ours: the same number of messages
        notifier.add(f"json://127.0.0.1:{port}/hook/{run}")
    executor = get_shared_executor()
    load = os.getloadavg()[0]
    started = time.perf_counter()
    results = await asyncio.gather(
        *(
            notifier.async_notify(body=m["body"], title=m["title"], notify_type=apprise.NotifyType.WARNING)
            for m in messages
        )
    )
    seconds = time.perf_counter() - started
    batch = Batch(run, source.tenant_id, source.first_id, source.last_id, source.channels)
    missing, duplicates = await check_sink(http, port, batch, per_id=source.channels)
    return Baseline(
        source.deliveries, seconds, sum(not r for r in results), missing, duplicates, executor._max_workers, load
    )


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Report:
    deliveries: int
    channels: int
    threads: int
    pg_version: str
    baselines: list[Baseline] = field(default_factory=list)
    ours: list[Ours] = field(default_factory=list)


async def measure(admin_url: str, redis_url: str, args: argparse.Namespace, scratch: Path) -> Report:
    deliveries = QUICK if args.quick else args.deliveries
    alerts = -(-deliveries // args.channels)
    keyring_entry = Keyring.new_entry("bench")
    keyring = Keyring.parse(keyring_entry)
    url = await create_database(admin_url)
    env = bench_env(url, redis_url, keyring_entry, scratch) | {"CAREBEACON_ALLOW_PRIVATE_DESTINATIONS": "true"}
    ctx = multiprocessing.get_context("spawn")
    ours_end, sink_end = ctx.Pipe()
    sink = ctx.Process(target=sink_main, args=(sink_end,), daemon=True)
    sink.start()
    port = ours_end.recv()
    clear_queues(redis_url)
    try:
        from pipeline import runtime

        runtime.start(env)  # this process sends the messages, on the workers' broker
        # Named, so that the CPU of its backends is not counted as ours.
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2, server_settings={"application_name": BENCH_APP})
        async with pool, aiohttp.ClientSession() as http:
            report = Report(
                alerts * args.channels, args.channels, args.threads, await pool.fetchval("SHOW server_version")
            )
            plan = []
            async with pool.acquire() as conn:
                for r in range(args.repeat):
                    for p in args.processes:
                        warm = await create_batch(
                            conn, keyring, f"warm-{r}-p{p}", WARMUP_PER_THREAD * args.threads * p, 1, port
                        )
                        plan.append(
                            (
                                p,
                                warm,
                                await create_batch(
                                    conn, keyring, f"ours-{r}-p{p}", alerts, args.channels, port, args.cooldown
                                ),
                            )
                        )
                await conn.execute("VACUUM ANALYZE")
            for r in range(args.repeat):
                runs = [step for step in plan if step[2].run.startswith(f"ours-{r}-")]
                report.baselines.append(await run_apprise(pool, http, port, runs[0][2], f"apprise-{r}"))
                for p, warm, batch in runs:
                    # Each run starts from a vacuumed database, as autovacuum leaves it between bursts,
                    # and checkpointed, so that no run pays for the dead rows, or the flushing of the
                    # dirty pages, of the one before it.
                    await pool.execute("VACUUM ANALYZE")
                    await pool.execute("CHECKPOINT")
                    report.ours.append(await run_ours(pool, http, port, env, warm, batch, p, args.threads, scratch))
                    clear_queues(redis_url)
        return report
    finally:
        from pipeline import runtime

        runtime.stop()
        ours_end.send("stop")
        sink.join(10)
        clear_queues(redis_url)
        await drop_database(admin_url, url)


def render(report: Report, args: argparse.Namespace) -> str:
    apprise_per_s = statistics.median(b.per_s for b in report.baselines)
    lines = [
        f"date      {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"machine   nproc {os.cpu_count()}, {platform.processor() or platform.machine()},"
        f" load average now {os.getloadavg()[0]:.2f}; PostgreSQL {report.pg_version}",
        f"versions  Python {platform.python_version()}, dramatiq {version('dramatiq')}, aiohttp {version('aiohttp')},"
        f" asyncpg {version('asyncpg')}, apprise {version('apprise')}, requests {version('requests')}",
        f"data      {report.deliveries:,} deliveries: {report.deliveries // report.channels:,} warning alerts"
        f" ({METRICS_PER_PATIENT} metrics per patient) × {report.channels} webhook channel(s), one rule"
        f" ({args.cooldown}-min cooldown); {args.repeat} repetition(s)",
    ]
    for b in report.baselines:
        lines.append(
            f"apprise   {b.deliveries:,} in {b.seconds:6.2f} s = {b.per_s:7,.0f}/s"
            f"  (json://, async_notify, {b.threads} executor threads; load {b.load:.2f});"
            f" failed {b.failed}, missing {b.missing}, duplicates {b.duplicates}"
        )
    for o in report.ours:
        rows = ", ".join(f"{k} {v:,}" for k, v in sorted(o.log_rows.items()))
        lines.append(
            f"ours -p {o.processes} {o.deliveries:,} in {o.seconds:6.2f} s = {o.per_s:7,.0f}/s"
            f"  {o.per_s / apprise_per_s:.2f}x Apprise  (-t {report.threads}; enqueue {o.enqueue_s:.2f} s;"
            f" CPU per delivery: workers {o.worker_cpu_s / o.deliveries * 1e3:.2f} ms (boot included),"
            f" {o.run_cpu_s / o.deliveries * 1e3:.2f} ms timed part,"
            f" PostgreSQL {'?' if o.postgres_cpu_s is None else f'{o.postgres_cpu_s / o.deliveries * 1e3:.2f}'} ms;"
            f" load {o.load:.2f})"
        )
        lines.append(
            f"          lost {o.lost}: no delivered row {o.undelivered}, missing at sink {o.missing},"
            f" duplicates {o.duplicates}; log rows: {rows}"
        )
    best = max(report.ours, key=lambda o: o.per_s)
    lost = sum(o.lost for o in report.ours)
    verdict = "PASS" if best.per_s >= TARGET_PER_S else "MISS"
    lines.append(
        f"target    {verdict} ours ≥ {TARGET_PER_S:,} deliveries/s (best: -p {best.processes}, {best.per_s:,.0f}/s)"
    )
    lines.append(f"target    {'PASS' if lost == 0 else 'MISS'} zero lost ({lost} across {len(report.ours)} run(s))")
    return "\n".join(lines)


def result_line(report: Report, args: argparse.Namespace) -> str:
    """The run as one ``RESULT {json}`` line, for bench/all.py to render into docs/benchmarks.md."""
    apprise_per_s = statistics.median(b.per_s for b in report.baselines)
    best = max(report.ours, key=lambda o: o.per_s)
    lost = sum(o.lost for o in report.ours)
    rows = [
        {
            "case": f"deliveries/s, workers -p {o.processes} -t {report.threads} (baseline: Apprise json://)",
            "baseline": f"{apprise_per_s:,.0f}",
            "ours": f"{o.per_s:,.0f}",
            "ratio": f"{o.per_s / apprise_per_s:.2f}x",
            "target": f"≥ {TARGET_PER_S:,}" if o is best else "",
            "result": ("PASS" if o.per_s >= TARGET_PER_S else "MISS") if o is best else "",
        }
        for o in report.ours
    ]
    rows.append(
        {
            "case": "lost: no delivered row, missing at the sink, duplicates",
            "baseline": f"{sum(b.failed + b.missing + b.duplicates for b in report.baselines)}",
            "ours": f"{lost}",
            "ratio": "",
            "target": "0",
            "result": "PASS" if lost == 0 else "MISS",
        }
    )
    return "RESULT " + json.dumps(
        {
            "bench": "fanout",
            "title": "Notification fan-out",
            "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            "machine": f"nproc {os.cpu_count()}, {platform.processor() or platform.machine()},"
            f" load average {os.getloadavg()[0]:.2f} at the end; PostgreSQL {report.pg_version}",
            "size": f"{report.deliveries:,} deliveries ({report.channels} webhook channel(s) per alert),"
            f" {args.repeat} repetition(s); the baseline is the median of its runs",
            "rows": rows,
        },
        ensure_ascii=False,
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=FULL)
    parser.add_argument("--channels", type=int, default=1, help="webhook channels per alert (default 1)")
    parser.add_argument("--processes", default=None, help="worker process counts to measure (default 1,2,3; quick: 1)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker process (the Procfile's 8)")
    parser.add_argument(
        "--cooldown", type=int, default=60, help="the rule's cooldown in minutes (default 60, as a new rule's)"
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK} deliveries, one worker process: a smoke test")
    parser.add_argument("--database-url", help="an existing server (needs CREATE DATABASE); default: embedded")
    parser.add_argument("--redis-url", help="a Redis database of the bench's own; default: embedded")
    args = parser.parse_args(argv)
    args.processes = [int(p) for p in (args.processes or ("1" if args.quick else "1,2,3")).split(",")]
    return args


def main() -> None:
    args = parse()
    with (
        tempfile.TemporaryDirectory(prefix="cb-fanout-") as tmp,
        postgres(args.database_url) as admin_url,
    ):
        scratch = Path(tmp)
        scratch.chmod(0o755)
        with redis_server(args.redis_url, scratch) as redis_url:
            report = asyncio.run(measure(admin_url, redis_url, args, scratch))
    print(render(report, args))
    print(result_line(report, args))


if __name__ == "__main__":
    main()
