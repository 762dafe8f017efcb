"""``carebeacon demo``: the whole flow once (sync → score → alert → delivery), then a summary."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import asyncpg
from dramatiq import Worker
from tqdm import tqdm

from bot.seed import Demo, seed_demo
from db.migrate import migrate
from pipeline import runtime

STAGES = ("migrate", "seed", "sync", "analytics", "delivery")
POLL_SECONDS = 0.1


class DemoFailed(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Summary:
    seconds: float
    metric_rows: int
    session_rows: int
    run: asyncpg.Record
    scores: list[asyncpg.Record]
    alerts: list[asyncpg.Record]
    deliveries: list[asyncpg.Record]
    demo: Demo

    def render(self) -> str:
        lines = [
            f"Demo finished in {self.seconds:.1f} s",
            f"  sync run      #{self.run['id']}: {self.run['rows_received']} readings and sessions received, "
            f"{self.run['rows_written']} written, {self.run['rows_invalid']} invalid",
            f"  rows stored   {self.metric_rows} readings and {self.session_rows} sleep/workout sessions"
            " for the demo patient",
        ]
        if self.scores:
            day = self.scores[0]["day"]
            values = ", ".join(f"{s['domain']} {s['score']:g}" for s in self.scores)
            lines.append(f"  scores        {day}: {values}")
        lines += [f"  alert         #{a['id']} {a['severity']}: {a['title']}" for a in self.alerts]
        lines += [
            f"  delivery log  alert #{d['alert_id']} → {d['label']} (attempt {d['attempt']}): {d['status']}"
            for d in self.deliveries
        ]
        lines.append(f"  alert file    {self.demo.alert_file}")
        return "\n".join(lines)


async def run_demo(timeout: float = 60.0) -> Summary:
    """Raises DemoFailed when a stage fails or does not finish within ``timeout`` seconds."""
    rt = runtime.current()
    from pipeline import triggers

    started = time.monotonic()
    pool = await runtime.pool()
    worker = Worker(rt.broker, worker_threads=4)
    worker.start()
    try:
        with tqdm(total=len(STAGES), desc="demo", unit="stage", leave=False) as bar:
            async with pool.acquire() as conn:
                await migrate(conn)
            bar.update()
            demo = await seed_demo(pool, rt.keyring, rt.db.data_dir)
            bar.update()
            run_id = await triggers.request_sync(pool, demo.connection_id, "demo")
            await _wait(pool, "SELECT status IN ('completed', 'failed', 'skipped') FROM sync_runs WHERE id = $1",
                        run_id, started + timeout, "sync")  # fmt: skip
            async with pool.acquire() as conn:
                run = await conn.fetchrow("SELECT * FROM sync_runs WHERE id = $1", run_id)
            if run["status"] != "completed":
                raise DemoFailed(f"sync run {run_id} ended {run['status']}: {run['error']}")
            bar.update()
            await _wait(pool, "SELECT analysed_at IS NOT NULL FROM sync_runs WHERE id = $1", run_id,
                        started + timeout, "analytics")  # fmt: skip
            bar.update()
            await _wait(pool, "SELECT NOT EXISTS (SELECT 1 FROM alerts WHERE user_id = $1 AND routed_at IS NULL)"
                              " OR EXISTS (SELECT 1 FROM notification_logs l JOIN alerts a ON a.id = l.alert_id"
                              "            WHERE a.user_id = $1 AND l.status = 'failed')",
                        demo.user_id, started + timeout, "delivery")  # fmt: skip
            failure = await pool.fetchval(
                "SELECT l.detail FROM notification_logs l JOIN alerts a ON a.id = l.alert_id"
                " WHERE a.user_id = $1 AND l.status = 'failed' ORDER BY l.id LIMIT 1",
                demo.user_id,
            )
            if failure is not None:
                raise DemoFailed(f"an alert delivery failed: {failure}")
            bar.update()
        return await _summary(pool, demo, run, time.monotonic() - started)
    finally:
        await asyncio.to_thread(worker.stop)
        await runtime.close_pool()


async def _wait(pool: asyncpg.Pool, query: str, arg: int, deadline: float, stage: str) -> None:
    while time.monotonic() < deadline:
        if await pool.fetchval(query, arg):
            return
        await asyncio.sleep(POLL_SECONDS)
    raise DemoFailed(f"the {stage} stage did not finish in time; is a worker able to reach Redis?")


async def _summary(pool: asyncpg.Pool, demo: Demo, run: asyncpg.Record, seconds: float) -> Summary:
    async with pool.acquire() as conn:
        rows = await conn.fetchval("SELECT count(*) FROM metrics WHERE user_id = $1", demo.user_id)
        sessions = await conn.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", demo.user_id)
        scores = await conn.fetch(
            "SELECT domain, day, score FROM health_scores WHERE user_id = $1"
            " AND day = (SELECT max(day) FROM health_scores WHERE user_id = $1) ORDER BY domain",
            demo.user_id,
        )
        alerts = await conn.fetch("SELECT id, severity, title FROM alerts WHERE user_id = $1 ORDER BY id", demo.user_id)
        deliveries = await conn.fetch(
            "SELECT l.alert_id, c.label, l.attempt, l.status FROM notification_logs l"
            " JOIN notification_channels c ON c.id = l.channel_id JOIN alerts a ON a.id = l.alert_id"
            " WHERE a.user_id = $1 ORDER BY l.id",
            demo.user_id,
        )
    return Summary(seconds, rows, sessions, run, list(scores), list(alerts), list(deliveries), demo)
